# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM lane's main job: the web recipe's golden VM image released as libvirt
domains by the same playbooks as containers (red/black under load, rollback to
the warm old group, decommission), and a VM that never becomes healthy."""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess

from conftest import LIBVIRT_URI, RELEASE, bake_web_vm, free_port, platform_groups, platform_scenario, release_vars, traffic

# TCG boots take ~15-30 s on 2 busy cores; a release waits for two at once.
VM_RELEASE = {"release_wait_timeout": 300}


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _golden_disks(env):
    """The cached golden disks under this session's HOME (the libvirt platform's default cache)."""
    return sorted(glob.glob(os.path.join(env["HOME"], ".cache", "immutable-infra", "vm-images", "*", "disk.qcow2")))


def _domains(app):
    out = subprocess.run(["virsh", "-c", LIBVIRT_URI, "list", "--all", "--name"],
                         capture_output=True, text=True, check=True)
    return sorted(d for d in out.stdout.split() if d.startswith(app + "-"))


def _overlays(env, app):
    return sorted(p for p in glob.glob(os.path.join(env["HOME"], "**", "*.qcow2"), recursive=True)
                  if os.path.basename(p).startswith(app + "-"))


def test_the_platform_scenario_on_libvirt(ansible, registry, env, web_vm_image, apps, workdir):
    """Two VM image versions; the scenario every real platform passes; nothing left behind; golden disks unwritten."""
    v2 = bake_web_vm(ansible, registry, web_message="vmweb2")
    assert v2["changed"] and v2["image"]["format"] == "vm" and v2["image"]["digest"] != web_vm_image["image"]["digest"]
    app = apps()
    took = platform_scenario(ansible, registry, workdir, app,
                             [(web_vm_image["image"]["reference"], "vmweb"), (v2["image"]["reference"], "vmweb2")],
                             platform="libvirt", **VM_RELEASE)
    print("libvirt scenario seconds: %s" % took)
    disks = _golden_disks(env)
    assert len(disks) >= 2, disks       # both versions were booted from the cache
    for disk in disks:                   # read-only, and their content is what the catalog's digest names
        assert not os.access(disk, os.W_OK) or os.stat(disk).st_mode & 0o222 == 0, disk
    assert _domains(app) == [] and _overlays(env, app) == []


def test_a_vm_that_never_becomes_healthy_leaves_nothing(ansible, registry, env, web_vm_image, apps):
    """A first release whose VMs never answer the health check fails naming them; no domain,
    overlay or endpoint is left, and the golden disk is unchanged."""
    app, port = apps(), free_port()
    disks_before = {d: _sha256(d) for d in _golden_disks(env)}
    extra = release_vars(registry, app, web_vm_image["image"]["reference"], port, release_count=1,
                         release_wait_timeout=60, platform="libvirt")
    extra["release_health_check"] = dict(extra["release_health_check"], path="/never-there")
    run = ansible.playbook(RELEASE, extra)
    assert run.rc != 0
    reason = " ".join(str(r.get("msg")) for r in run.results("Fail with the reason"))
    assert "not healthy" in reason and "/never-there" in reason, reason
    assert platform_groups(ansible, app, "libvirt") == {} and traffic(ansible, app) is None
    assert _domains(app) == [] and _overlays(env, app) == []
    assert {d: _sha256(d) for d in disks_before} == disks_before
