"""The registry role: start, start again (no-op), check mode, stop by pid, stop again."""
from __future__ import annotations

import os
import urllib.request

from conftest import TOP, free_port

PLAYBOOK = os.path.join(TOP, "playbooks", "registry.yml")


def answers(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/v2/" % port, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def pid_alive(pidfile):
    try:
        pid = int(open(pidfile).read())
    except OSError:
        return False
    return os.path.exists("/proc/%d" % pid)


def test_registry_lifecycle(ansible, workdir):
    port = free_port()
    rvars = {"registry_port": port, "registry_state_dir": os.path.join(workdir, "reg-life-%d" % port)}
    pidfile = os.path.join(rvars["registry_state_dir"], "registry.pid")
    try:
        check = ansible.playbook(PLAYBOOK, rvars, check=True)
        assert check.rc == 0 and check.changed > 0
        assert not answers(port) and not os.path.exists(pidfile)

        first = ansible.playbook(PLAYBOOK, rvars)
        assert first.rc == 0, first.stderr
        assert first.result("Converge the registry process")["changed"] is True
        assert answers(port) and pid_alive(pidfile)
        pid = open(pidfile).read()

        again = ansible.playbook(PLAYBOOK, rvars)
        assert again.rc == 0 and again.changed == 0
        assert open(pidfile).read() == pid

        stop = ansible.playbook(PLAYBOOK, dict(rvars, registry_state="stopped"))
        assert stop.rc == 0 and stop.changed == 1
        assert not answers(port) and not os.path.exists(pidfile)

        stop_again = ansible.playbook(PLAYBOOK, dict(rvars, registry_state="stopped"))
        assert stop_again.rc == 0 and stop_again.changed == 0
    finally:
        ansible.playbook(PLAYBOOK, dict(rvars, registry_state="stopped"))


def test_registry_refuses_a_taken_port(ansible, workdir, registry):
    rvars = {"registry_port": registry["port"], "registry_state_dir": os.path.join(workdir, "reg-taken")}
    run = ansible.playbook(PLAYBOOK, rvars)
    assert run.rc != 0
    msg = run.result("Converge the registry process")["msg"]
    assert "already taken" in msg and str(registry["port"]) in msg
    assert not os.path.exists(os.path.join(workdir, "reg-taken", "registry.pid"))


def test_registry_rejects_a_bad_state(ansible, workdir):
    run = ansible.playbook(PLAYBOOK, {"registry_state": "sideways", "registry_state_dir": os.path.join(workdir, "reg-bad")})
    assert run.rc != 0
    assert "sideways" in run.result("Check the inputs")["msg"]
