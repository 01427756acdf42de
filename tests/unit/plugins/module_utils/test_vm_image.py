"""VM images: what makes one (labels, members), what the cache answers without
the network, how the VM source's parent is found, and the KVM probe's blob."""
from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _vm_image as vm
from ansible_collections.immutable.infra.plugins.module_utils._bake import _manifest_labels, summary, vm_parent_reference
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

VM_LABELS = {"infra.immutable.format": "vm", "infra.immutable.kernel-args": "root=/dev/vda rw"}


def layer(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_vm_facts_accepts_a_vm_image_and_names_what_is_wrong_otherwise():
    assert vm.vm_facts({"labels": VM_LABELS}, "r/x-vm:1") == "root=/dev/vda rw"
    with pytest.raises(ImmutableInfraError, match=r"image r/web:1 is a container image \(label infra.immutable.format=absent\)"):
        vm.vm_facts({"labels": {}}, "r/web:1")
    with pytest.raises(ImmutableInfraError, match="has no infra.immutable.kernel-args label"):
        vm.vm_facts({"labels": {"infra.immutable.format": "vm"}}, "r/x-vm:1")


@pytest.mark.parametrize("members, missing", [
    ({"disk/disk.qcow2": b"d", "boot/vmlinuz": b"k"}, r"initrd \(/boot/initrd.img\)"),
    ({"disk/disk.qcow2": b"d", "boot/initrd.img": b"i"}, r"kernel \(/boot/vmlinuz\)"),
    ({"boot/vmlinuz": b"k", "boot/initrd.img": b""}, r"disk \(/disk/disk.qcow2\) and initrd"),
])
def test_extract_names_the_missing_members(tmp_path, members, missing):
    with pytest.raises(ImmutableInfraError, match="VM image r/x-vm:1 lacks its %s" % missing):
        vm._extract([layer(tmp_path / "l.tar.gz", members)], str(tmp_path), "r/x-vm:1")


def test_extract_takes_the_members_from_the_last_layer(tmp_path):
    first = layer(tmp_path / "1.tar.gz", {"disk/disk.qcow2": b"old", "boot/vmlinuz": b"k", "etc/x": b"-"})
    second = layer(tmp_path / "2.tar.gz", {"./disk/disk.qcow2": b"new", "boot/initrd.img": b"i"})
    out = str(tmp_path / "out")
    os.mkdir(out)
    found = vm._extract([first, second], out, "r")
    assert {k: open(v, "rb").read() for k, v in found.items()} == {"disk": b"new", "kernel": b"k", "initrd": b"i"}
    assert sorted(os.listdir(out)) == ["disk.qcow2", "initrd.img", "vmlinuz"]


def test_a_cached_reference_is_answered_without_the_network(tmp_path, monkeypatch):
    digest = "sha256:" + "a" * 64
    entry = tmp_path / ("sha256-" + "a" * 64)
    entry.mkdir()
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (entry / name).write_bytes(b"x")
    (entry / "image.json").write_text(json.dumps({"digest": digest, "kernel_args": "root=/dev/vda", "labels": VM_LABELS}))

    def no_network(*_a, **_k):
        raise AssertionError("the network was used")
    monkeypatch.setattr(vm, "_resolve", no_network)
    got = vm.fetch("127.0.0.1:5000/x-vm@" + digest, cache_dir=str(tmp_path))
    assert got["disk"] == str(entry / "disk.qcow2") and got["kernel_args"] == "root=/dev/vda"
    # A tag is known only once it was fetched (versions are immutable, so it stays known).
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / vm._ref_key("127.0.0.1:5000/x-vm:1")).write_text("127.0.0.1:5000/x-vm:1 %s\n" % digest)
    assert vm.fetch("127.0.0.1:5000/x-vm:1", cache_dir=str(tmp_path))["digest"] == digest
    with pytest.raises(AssertionError, match="the network was used"):
        vm.fetch("127.0.0.1:5000/x-vm:2", cache_dir=str(tmp_path))


def test_package_refuses_a_missing_kernel_or_initrd(tmp_path):
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"x")
    with pytest.raises(ImmutableInfraError, match=r"its kernel \(/boot/vmlinuz\) '.*nope' is missing or empty"):
        vm.package(str(disk), str(tmp_path / "nope"), str(disk), {})
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ImmutableInfraError, match=r"its initrd \(/boot/initrd.img\) .* is missing or empty"):
        vm.package(str(disk), str(disk), str(tmp_path / "empty"), {})


@pytest.mark.parametrize("params, parent", [
    ({"parent": "immutable/base"}, "127.0.0.1:5000/immutable/base-vm"),
    ({"parent": "reg.example:5000/team/base"}, "reg.example:5000/team/base-vm"),
    ({"parent": "immutable/base-vm:3"}, "immutable/base-vm:3"),
    ({"parent": "immutable/base:3", "vm_parent": "immutable/base-vm:7"}, "immutable/base-vm:7"),
    ({}, None),
])
def test_the_vm_sources_parent_is_the_parents_vm_repository(params, parent):
    assert vm_parent_reference(dict(params, registry="127.0.0.1:5000")) == parent


def test_a_pinned_container_parent_needs_vm_parent():
    with pytest.raises(ImmutableInfraError, match="give vm_parent .*immutable/base-vm:<version>"):
        vm_parent_reference({"parent": "immutable/base:3", "registry": "127.0.0.1:5000"})


def test_manifest_labels_come_from_the_last_builds_custom_data(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"builds": [{"custom_data": {"a": "1"}}, {"custom_data": {"infra.immutable.port": 8080}}]}))
    assert _manifest_labels(str(path)) == {"infra.immutable.port": "8080"}
    assert _manifest_labels(str(tmp_path / "none.json")) == {}


def test_summary_puts_the_first_output_on_top():
    outs = [{"source": "docker.container", "format": "container", "name": "web", "fingerprint": "f1", "parent": None,
             "image": {"version": "2"}, "changed": False},
            {"source": "qemu.vm", "format": "vm", "name": "web-vm", "fingerprint": "f2", "parent": None, "image": None,
             "version": "1", "changed": True, "labels": {}}]
    res = summary("/r", outs)
    assert res["name"] == "web" and res["format"] == "container" and res["changed"] is True
    assert [o["name"] for o in res["outputs"]] == ["web", "web-vm"] and "labels" not in res["outputs"][1]


def test_the_kvm_probe_blob_jumps_from_the_reset_vector_to_its_code():
    blob = vm._probe_blob()
    assert len(blob) == 65536                                  # qemu wants a multiple of 64 KiB
    assert blob[0xFFF0:0xFFF5] == bytes([0xEA, 0, 0, 0, 0xF0])  # ljmp $0xf000,$0 -> physical 0xF0000
    assert blob.startswith(vm._PROBE_CODE) and b"\xb0\x31\xe6\xf4" in vm._PROBE_CODE   # out 0x31 to 0xf4


def test_accelerator_is_remembered_per_boot(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(vm, "probe_kvm", lambda qemu="": calls.append(1) or False)
    monkeypatch.setattr(vm, "_boot_id", lambda: "boot-1")
    cache = str(tmp_path / "c" / "vm-images")
    assert vm.accelerator(cache) == "tcg" and vm.accelerator(cache) == "tcg" and len(calls) == 1
    monkeypatch.setattr(vm, "_boot_id", lambda: "boot-2")
    assert vm.accelerator(cache) == "tcg" and len(calls) == 2


def test_a_corrupt_disk_is_neither_packaged_nor_kept(tmp_path):
    disk, kernel = tmp_path / "disk.qcow2", tmp_path / "vmlinuz"
    disk.write_bytes(b"QFI\xfb" + b"\x00" * 4092)       # a qcow2 magic and nothing sane behind it
    kernel.write_bytes(b"k")
    with pytest.raises(ImmutableInfraError, match="disk .*disk.qcow2 is (not a qcow2 disk|a corrupt qcow2 disk)"):
        vm.package(str(disk), str(kernel), str(kernel), {"a": "b"}, podman="/nonexistent/podman")
    with pytest.raises(ImmutableInfraError, match="not a qcow2 disk .*qemu-img sees raw"):
        disk.write_bytes(b"just bytes")
        vm.check_disk(str(disk))
