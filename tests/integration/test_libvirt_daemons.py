"""The project's libvirt daemons: started when the system socket does not answer,
once when two processes start them at the same moment, stopped by their pids.

It briefly stops the machine-wide libvirtd when the project started it, and only
while no domain runs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import TOP, _collection_import_path

PLAYBOOK = os.path.join(TOP, "playbooks", "libvirt.yml")
START = ("from ansible_collections.immutable.infra.plugins.module_utils import _libvirtd; "
         "print(_libvirtd.ensure_running('qemu:///system'))")


@pytest.fixture
def libvirtd():
    if os.geteuid() != 0:
        pytest.skip("only root runs the system libvirtd")
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _libvirtd as mod
    yield mod
    mod.ensure_running("qemu:///system")     # leave the machine as the next test expects it


def test_the_project_starts_its_daemons_once_and_stops_only_them(libvirtd, ansible):
    if libvirtd.answers(libvirtd.SYSTEM_SOCKET) and "libvirtd" not in libvirtd.started():
        # Someone else's libvirtd: the project must not touch it.
        assert libvirtd.stop() == [] and ansible.playbook(PLAYBOOK, {"libvirt_state": "stopped"}).rc == 0
        assert libvirtd.answers(libvirtd.SYSTEM_SOCKET)
        return
    running = subprocess.run(["virsh", "-q", "-c", "qemu:///system", "list", "--name"], capture_output=True,
                             text=True, check=False).stdout.split()
    if running:
        pytest.skip("domains are running (%s): their console logs go through virtlogd" % ", ".join(running))
    before = libvirtd.started()
    run = ansible.playbook(PLAYBOOK, {"libvirt_state": "stopped"}, check=True)
    assert run.rc == 0 and libvirtd.started() == before, run.stderr
    run = ansible.playbook(PLAYBOOK, {"libvirt_state": "stopped"})
    assert run.rc == 0 and [r["changed"] for r in run.results("Stop the daemons the project started, libvirtd first")
                            [0]["results"]] == [d in before for d in ("libvirtd", "virtlogd")], run.doc
    assert not libvirtd.answers(libvirtd.SYSTEM_SOCKET) and libvirtd.started() == {}
    run = ansible.playbook(PLAYBOOK, {"libvirt_state": "stopped"})      # again: nothing to do
    assert run.rc == 0 and not any(r["changed"] for r in run.results(
        "Stop the daemons the project started, libvirtd first")[0]["results"]), run.doc

    env = dict(os.environ, PYTHONPATH=os.path.join(TOP, ".cache", "collections"))
    procs = [subprocess.Popen([sys.executable, "-c", START], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _caller in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(o[0].strip() for o in outs) == ["False", "True"], "exactly one of two racing callers starts them"
    now = libvirtd.started()
    assert sorted(now) == ["libvirtd", "virtlogd"] and not set(now.values()) & set(before.values())
    assert libvirtd.answers(libvirtd.SYSTEM_SOCKET) and libvirtd.answers(libvirtd.VIRTLOGD_SOCKET)
    assert subprocess.run(["virsh", "-q", "-c", "qemu:///system", "version"], capture_output=True,
                          check=False).returncode == 0
    assert libvirtd.ensure_running("qemu:///system") is False      # answering: nothing more to start
