"""The pure parts of the libvirt platform: domain XML, its metadata read back as
the documented instance record, the fw_cfg identity, virsh output, the daemon
bookkeeping. The real thing runs in tests/integration/test_libvirt.py."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _libvirtd
from ansible_collections.immutable.infra.plugins.module_utils._names import IDENTITY, LABEL_PREFIX
from ansible_collections.immutable.infra.plugins.module_utils._platforms import get_platform
from ansible_collections.immutable.infra.plugins.module_utils._platforms import _libvirt as lv
from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import Platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

SPEC = {
    "app": "shop", "stack": "prod", "group": "shop-prod-v007", "sequence": 7,
    "image": "127.0.0.1:5000/shop-vm@sha256:ab", "image_digest": "sha256:ab", "image_version": "20261130.1",
    "zone": "z2", "port": 8080, "extra_ports": [9000], "env": {"GREETING": "a, b & <c>"}, "stop_timeout": 5,
}
IMAGE = {"disk": "/cache/sha256-ab/disk.qcow2", "kernel": "/cache/sha256-ab/vmlinuz",
         "initrd": "/cache/sha256-ab/initrd.img", "kernel_args": "root=/dev/vda rw console=ttyS0"}
NAME = "shop-prod-v007-1a2b3c"
PORTS = {8080: 41000, 9000: 41001}
# The instance record _platforms/_base.py documents.
RECORD = {"name", "id", "app", "stack", "group", "sequence", "zone", "instance_id", "image", "image_digest",
          "image_version", "port", "host", "host_port", "ports", "endpoint", "state", "created", "labels"}


def xml(domain_type="qemu"):
    return lv.domain_xml(NAME, SPEC, IMAGE, "/state/%s.qcow2" % NAME, "/state/%s.console.log" % NAME, PORTS,
                         memory=768, vcpus=2, domain_type=domain_type, created="2026-11-30T08:00:00Z")


def test_the_domain_boots_the_image_kernel_from_an_overlay_under_tcg():
    dom = ET.fromstring(xml())
    assert dom.get("type") == "qemu" and dom.findtext("name") == NAME
    assert dom.find("memory").get("unit") == "MiB" and dom.findtext("memory") == "768" and dom.findtext("vcpu") == "2"
    assert [dom.findtext("os/" + k) for k in ("kernel", "initrd", "cmdline")] == [
        IMAGE["kernel"], IMAGE["initrd"], IMAGE["kernel_args"]]
    disks = dom.findall("devices/disk")
    assert len(disks) == 1 and disks[0].find("source").get("file") == "/state/%s.qcow2" % NAME
    assert disks[0].find("driver").get("type") == "qcow2" and disks[0].find("target").get("bus") == "virtio"
    assert dom.find("devices/serial").get("type") == "file"
    assert dom.find("devices/serial/source").get("path") == "/state/%s.console.log" % NAME
    assert dom.find("features/acpi") is not None, "ACPI: a graceful shutdown needs it"
    assert dom.find("seclabel").get("relabel") == "no", "the cached golden files are never relabelled"
    assert ET.fromstring(xml("kvm")).get("type") == "kvm"


def test_every_port_is_forwarded_on_loopback_only_with_no_way_out():
    dom = ET.fromstring(xml())
    args = [a.get("value") for a in dom.find("{%s}commandline" % lv.QEMU_XMLNS)]
    netdev = args[args.index("-netdev") + 1].split(",")
    assert netdev[:3] == ["user", "id=ii0", "restrict=on"]
    assert sorted(netdev[3:]) == ["hostfwd=tcp:127.0.0.1:41000-:8080", "hostfwd=tcp:127.0.0.1:41001-:9000"]
    assert args[args.index("-device") + 1].startswith("virtio-net-pci,netdev=ii0,")


def test_the_guest_learns_its_identity_and_env_through_fw_cfg():
    dom = ET.fromstring(xml())
    assert dom.find("sysinfo").get("type") == "fwcfg"
    entries = {e.get("name"): e.text for e in dom.findall("sysinfo/entry")}
    assert entries == {
        "opt/immutable/instance-id": NAME, "opt/immutable/hostname": NAME,
        "opt/immutable/env": "GREETING=a, b & <c>\nINSTANCE_ID=%s\nZONE=z2\n" % NAME,
    }


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0aVZ0example immutable-infra-image-test"


def test_a_spec_with_authorized_keys_gives_them_through_fw_cfg_and_ssh_is_forwarded_on_loopback():
    """image_test's throwaway VM: its key as fw_cfg opt/immutable/authorized_keys (the bake's
    contract, read by immutable-identity.service) and port 22 forwarded to 127.0.0.1 only."""
    spec = dict(SPEC, extra_ports=[9000, 22], authorized_keys=[KEY])
    ports = {8080: 41000, 9000: 41001, 22: 41002}
    dom = ET.fromstring(lv.domain_xml(NAME, spec, IMAGE, "/s/o.qcow2", "/s/c.log", ports))
    entries = {e.get("name"): e.text for e in dom.findall("sysinfo/entry")}
    assert entries["opt/immutable/authorized_keys"] == KEY + "\n"
    assert set(entries) == {"opt/immutable/" + k for k in ("instance-id", "hostname", "env", "authorized_keys")}
    args = [a.get("value") for a in dom.find("{%s}commandline" % lv.QEMU_XMLNS)]
    assert "hostfwd=tcp:127.0.0.1:41002-:22" in args[args.index("-netdev") + 1].split(",")
    inst = lv.parse_domain(ET.tostring(dom, encoding="unicode"), "running")
    assert inst["ports"] == ports and inst["host_port"] == 41000
    # Several keys, as a list or one text; the production spec (none) gives no entry at all.
    two = lv.fwcfg_entries(NAME, dict(SPEC, authorized_keys=KEY + "\n\n" + KEY.replace("IB0", "IB1") + "\n"))
    assert dict(two)["opt/immutable/authorized_keys"].splitlines() == [KEY, KEY.replace("IB0", "IB1")]
    assert "opt/immutable/authorized_keys" not in dict(lv.fwcfg_entries(NAME, SPEC))
    assert "opt/immutable/authorized_keys" not in dict(lv.fwcfg_entries(NAME, dict(SPEC, authorized_keys=None)))


def test_a_specs_labels_are_kept_in_the_metadata_and_never_over_the_identity():
    spec = dict(SPEC, labels={"infra.immutable.owner": '{"pid":7}', "infra.immutable.app": "other"})
    inst = lv.parse_domain(lv.domain_xml(NAME, spec, IMAGE, "/s/o.qcow2", "/s/c.log", PORTS), "running")
    assert inst["labels"]["infra.immutable.owner"] == '{"pid":7}'
    assert inst["app"] == "shop" and inst["labels"]["infra.immutable.app"] == "shop"


@pytest.mark.parametrize("keys", [["-----BEGIN OPENSSH PRIVATE KEY-----"], "not a key", [KEY, "x y"], "\n"])
def test_what_is_not_a_public_key_is_refused(keys):
    with pytest.raises(ImmutableInfraError, match="give OpenSSH public keys"):
        lv.fwcfg_entries(NAME, dict(SPEC, authorized_keys=keys))


@pytest.mark.parametrize("env", [{"A": "two\nlines"}, {"A=B": "x"}, {"": "x"}])
def test_env_that_cannot_be_a_line_of_an_env_file_is_refused(env):
    with pytest.raises(ImmutableInfraError, match="cannot be passed to a VM"):
        lv.fwcfg_entries(NAME, dict(SPEC, env=env))


def test_the_metadata_reads_back_as_the_documented_instance_record():
    inst = lv.parse_domain(xml().replace("<name>", "<uuid>0f0e</uuid><name>"), "running")
    assert set(inst) == RECORD
    assert inst == dict(inst, name=NAME, id="0f0e", app="shop", stack="prod", group="shop-prod-v007", sequence=7,
                        zone="z2", instance_id=NAME, image=SPEC["image"], image_digest="sha256:ab",
                        image_version="20261130.1", port=8080, host="127.0.0.1", host_port=41000,
                        ports=PORTS, endpoint="http://127.0.0.1:41000", state="running",
                        created="2026-11-30T08:00:00Z")
    assert {LABEL_PREFIX + k for k in IDENTITY} <= set(inst["labels"])


def test_a_domain_without_our_metadata_is_not_an_instance():
    assert lv.parse_domain("<domain type='qemu'><name>someone-else</name></domain>") is None
    assert lv.parse_domain("not xml") is None


def test_the_files_of_a_domain_are_its_overlay_and_console():
    assert lv.domain_files(xml()) == ["/state/%s.qcow2" % NAME, "/state/%s.console.log" % NAME]


def test_virsh_list_gives_each_domain_its_state():
    out = (" Id   Name          State\n-----------------------------\n 3    a-v001-1a     running\n"
           " -    a-v001-2b     shut off\n")
    assert lv.parse_list(out) == {"a-v001-1a": "running", "a-v001-2b": "shutoff"}
    assert lv.parse_list(" 3    a-v001-1a     running\n") == {"a-v001-1a": "running"}
    assert lv.parse_ports("22:40001,8080:40002,bad") == {22: 40001, 8080: 40002}


def test_free_ports_are_never_handed_out_twice():
    ports = lv.free_ports(5) + lv.free_ports(5)
    assert len(set(ports)) == 10


def test_options_are_checked_and_defaults_need_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    p = get_platform("libvirt")
    assert p.image_format == "vm" and p.boot_seconds >= 120
    assert p.state_dir == str(tmp_path / "immutable-infra" / "libvirt") and p.accelerator == "auto"
    assert p.uri == ("qemu:///system" if os.geteuid() == 0 else "qemu:///session")
    with pytest.raises(ImmutableInfraError, match="accelerator 'hvf'"):
        get_platform("libvirt", accelerator="hvf")
    with pytest.raises(ImmutableInfraError, match="has no option"):
        get_platform("libvirt", cpus=4)


def test_the_uri_names_the_socket_the_project_may_start_a_daemon_for():
    assert _libvirtd.uri_socket("qemu:///system") == _libvirtd.SYSTEM_SOCKET
    assert _libvirtd.uri_socket("qemu:///system?socket=/tmp/x.sock") == "/tmp/x.sock"
    assert _libvirtd.uri_socket("qemu:///session") is None
    assert _libvirtd.uri_socket("qemu+ssh://host/system") is None


def test_a_uri_whose_socket_nothing_serves_is_an_error_and_starts_nothing(tmp_path):
    uri = "qemu:///system?socket=%s" % (tmp_path / "nothing.sock")
    with pytest.raises(ImmutableInfraError, match="libvirt is not available at .*nothing answers"):
        _libvirtd.ensure_running(uri, run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_only_pids_that_still_are_the_daemon_count_as_started(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "libvirtd.pid").write_text("%d\n" % proc.pid)     # a live pid, but not libvirtd
        (tmp_path / "virtlogd.pid").write_text("999999999\n")         # no such process
        assert _libvirtd.started(str(tmp_path)) == {}
        assert _libvirtd.stop(str(tmp_path)) == []
        assert proc.poll() is None, "stop() must never signal a process that is not its daemon"
    finally:
        proc.kill()
        proc.wait()


def test_the_platform_implements_the_whole_interface():
    """What the conformance suite's first case checks of every platform, for the real class."""
    for method in ("list_instances", "instance", "pull", "create_instances", "destroy_instances", "logs"):
        assert getattr(lv.LibvirtPlatform, method) is not getattr(Platform, method), method
    assert lv.LibvirtPlatform.name == "libvirt" and lv.LibvirtPlatform.image_format == "vm"
    inst = lv.parse_domain(xml(), "running")
    assert lv.LibvirtPlatform().address(inst, 9000) == ("127.0.0.1", 41001)
    assert lv.LibvirtPlatform().address(inst, 1234) is None
