"""The base VM: built from Debian packages once per input set, recorded in the
catalog as a VM image (OCI, containerDisk layout), fetched into a read-only
cache, and booting under plain qemu with the identity the guest contract gives it."""
from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from conftest import TOP, QemuVM, _collection_import_path, fetch_vm_image, tags, vm_accelerator, vm_cache_dir

BASE = os.path.join(TOP, "playbooks", "base.yml")


def sha256(path):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._packer import _file_digest
    return _file_digest(path)


def test_base_vm_is_a_vm_image_in_the_catalog(base_vm_image, registry):
    image = base_vm_image["image"]
    assert base_vm_image["name"] == "immutable/base-vm"
    assert image["labels"]["infra.immutable.format"] == "vm"
    assert "root=/dev/vda" in image["labels"]["infra.immutable.kernel-args"]
    assert image["digest"].startswith("sha256:") and image["fingerprint"] == base_vm_image["fingerprint"]
    assert image["version"] in tags(registry, "immutable/base-vm")


def test_base_vm_is_built_once(base_vm_image, ansible, registry):
    before = tags(registry, "immutable/base-vm")
    started = time.monotonic()
    run = ansible.playbook(BASE, {"catalog_registry": registry["address"], "base_format": "vm"})
    seconds = time.monotonic() - started
    assert run.rc == 0, run.stderr
    res = run.result("Build the base image")
    assert res["changed"] is False and "commands" not in res, res      # no mmdebstrap ran
    assert res["image"]["digest"] == base_vm_image["image"]["digest"]
    assert tags(registry, "immutable/base-vm") == before
    print("base VM no-op: %.1fs (build took %.1fs)" % (seconds, base_vm_image["duration"]))


def test_base_vm_format_is_a_fingerprint_input(base_vm_image, ansible, registry):
    rc, res = ansible.task("immutable.infra.base_image", {"format": "container", "name": "immutable/base-vm",
                                                          "registry": registry["address"]}, check=True)
    assert rc == 0, res
    assert res["changed"] is True and res["fingerprint"] != base_vm_image["fingerprint"], res


def test_fetch_caches_read_only_and_answers_again_without_the_network(base_vm_image, env, monkeypatch):
    ref = "%s:%s" % (base_vm_image["image"]["repository"], base_vm_image["image"]["version"])
    image = fetch_vm_image(env, ref)
    assert image["digest"] == base_vm_image["image"]["digest"]
    for key in ("disk", "kernel", "initrd"):
        assert image[key].startswith(vm_cache_dir(env)) and os.stat(image[key]).st_mode & 0o222 == 0
    assert not [n for n in os.listdir(vm_cache_dir(env)) if n.startswith(".fetch-")]
    monkeypatch.setenv("PATH", "/nonexistent")        # no skopeo, no qemu-img: only the cache can answer
    again = fetch_vm_image(env, ref)
    assert again == image


def test_base_vm_boots_with_its_identity_and_environment(base_vm_image, env, workdir):
    image = fetch_vm_image(env, base_vm_image["image"]["reference"])
    golden = sha256(image["disk"])
    key = os.path.join(workdir, "vm-key-%s" % uuid.uuid4().hex[:6])
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    name, iid = "basevm%s" % uuid.uuid4().hex[:4], "i-%s" % uuid.uuid4().hex[:8]
    with QemuVM(image, workdir, vm_accelerator(env), name, iid, env={"ZONE": "z1", "GREETING": "hi there"},
                authorized_keys=key + ".pub") as vm:
        def identity():
            rc, printed = vm.ssh(key, "hostname; cat /run/immutable/env")
            return printed if rc == 0 else None
        out = vm.wait(identity, 300, "SSH into the base VM")
        seconds = time.monotonic() - vm.started
        lines = out.split("\n")
        assert lines[0] == name
        assert {"ZONE=z1", "GREETING=hi there", "INSTANCE_ID=%s" % iid} <= set(lines), out
        assert "immutable-identity: hostname=%s instance-id=%s" % (name, iid) in vm.serial()
        rc, keys = vm.ssh(key, "ls /etc/ssh | grep host_ | sort")
        assert rc == 0 and keys.split() == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"], keys
    assert sha256(image["disk"]) == golden, "the golden disk was written"
    print("base VM: SSH %.1fs after qemu started" % seconds)


def test_fetch_refuses_a_container_image(base, env):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
    before = os.listdir(vm_cache_dir(env)) if os.path.isdir(vm_cache_dir(env)) else []
    with pytest.raises(ImmutableInfraError, match="is a container image.*not a VM image"):
        fetch_vm_image(env, base["image"]["reference"])
    assert (os.listdir(vm_cache_dir(env)) if os.path.isdir(vm_cache_dir(env)) else []) == before
