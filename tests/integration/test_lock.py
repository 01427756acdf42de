"""The release lease for real: ansible-playbook killed alone (its workers live
on), a lease naming a reused pid, leases from another host, the lease between
release, rollback and decommission, and the unlock playbook."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

from conftest import (DECOMMISSION, RELEASE, ROLLBACK, TOP, Load, alive, assert_converged, children, free_port,
                      instance_names, kill_release_when, lease_log, lease_path, proc_stat, read_lease, release_vars,
                      start_release, wait_for)
from test_release_safety import KILL_POINTS

UNLOCK = os.path.join(TOP, "playbooks", "unlock.yml")
TAKE = "Take the release lock of %s/prod"


def processes_with(text):
    """Live processes with this text on their command line (a renewer carries its lease token)."""
    found = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if text.encode() in f.read() and alive(int(d)):
                    found.append(int(d))
        except OSError:
            pass
    return found


def this_machine(pid, start):
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    return {"host": socket.gethostname(), "boot_id": boot, "pid_ns": os.readlink("/proc/self/ns/pid"), "pid": pid,
            "start": start, "started": time.time(), "cmdline": ["ansible-playbook", "release.yml"], "user": "someone"}


def plant(env, app, owner, expires_in):
    """Write a lease as another run would have left it."""
    now = time.time()
    lease = {"app": app, "stack": "prod", "what": "release of %s/prod" % app, "owner": owner,
             "token": uuid.uuid4().hex, "since": now - 30, "renewed": now - 30, "expires": now + expires_in, "ttl": 60}
    os.makedirs(os.path.dirname(lease_path(env, app)), exist_ok=True)
    with open(lease_path(env, app), "w") as f:
        json.dump(lease, f)
    return lease


@pytest.fixture
def kept():
    """Processes a test must not leave behind: killed (by pid) at the end if still alive."""
    pids = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("point", ["after taking the lock", "while the new group starts"])
def test_killing_only_ansible_playbook_leaves_a_lease_the_rerun_takes_over(
        ansible, registry, release_images, apps, env, workdir, kept, point):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    wanted = release_vars(registry, app, "relweb:2", release_verify_seconds=3)
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        dead, workers = kill_release_when(env, workdir, wanted, lambda: KILL_POINTS[point](app, env), point,
                                          group=False)         # the main process only: its workers live on
        kept.extend(workers)
        lease = read_lease(env, app)
        assert lease["owner"]["pid"] == dead                    # the owner: ansible-playbook, never pid 1 or a worker
        wait_for(lambda: not processes_with(lease["token"]), 5, "the renewer to die with its owner")
        started = time.monotonic()
        rerun = ansible.playbook(RELEASE, wanted)
        took = time.monotonic() - started
    assert rerun.rc == 0, rerun.stderr
    take = rerun.result(TAKE % app)
    assert take["takeover"]["previous"]["owner"]["pid"] == dead and "is gone" in take["takeover"]["reason"]
    assert "took over the release lease of %s/prod" % app in take["note"]
    assert "took over the release lease of %s/prod" % app in " ".join(take.get("warnings", []))
    entry = [e for e in lease_log(env) if e["key"] == "%s-prod" % app][-1]
    assert entry["event"] == "takeover" and entry["previous"]["owner"]["pid"] == dead
    assert load.report["failed"] == 0, load.report
    assert_converged(ansible, app, port)
    assert not [w for w in workers if alive(w)], "orphaned workers of the killed run are still running"
    assert read_lease(env, app) is None
    print("killed %s: workers %s, re-run %.1fs, waited for %s, stuck %s" % (
        point, workers, took, take["takeover"]["waited_for"], take["takeover"]["stuck"]))


def test_a_lease_naming_a_reused_pid_is_taken_over(ansible, registry, release_images, apps, env, kept):
    app, port = apps(), free_port()
    squatter = subprocess.Popen(["sleep", "120"])               # a live process now holds the recorded pid...
    kept.append(squatter.pid)
    start = proc_stat(squatter.pid)[1]
    lease = plant(env, app, this_machine(squatter.pid, start - 7), expires_in=600)  # ...but started later
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port))
    assert run.rc == 0, run.stderr
    takeover = run.result(TAKE % app)["takeover"]
    assert takeover["previous"]["token"] == lease["token"] and "now belongs to another process" in takeover["reason"]
    assert alive(squatter.pid)                                  # nobody touched the process behind the reused pid
    assert read_lease(env, app) is None and len(instance_names(app)) == 2


def test_another_hosts_lease_blocks_until_it_expires(ansible, registry, release_images, apps, env):
    app, port = apps(), free_port()
    other = dict(this_machine(4242, 1), host="controller-b", boot_id="elsewhere")
    lease = plant(env, app, other, expires_in=300)
    plan_rc, plan = ansible.task("immutable.infra.release_lock", {"app": app, "stack": "prod"}, check=True)
    assert plan_rc != 0 and "pid 4242" in plan["msg"] and "controller-b" in plan["msg"]
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port))
    assert run.rc != 0 and run.changed == 0
    msg = run.result(TAKE % app)["msg"]
    assert "is locked" in msg and "pid 4242" in msg and "on controller-b, user someone" in msg and "expires" in msg
    assert "immutable.infra.unlock -e app=%s -e stack=prod" % app in msg
    assert read_lease(env, app) == lease and instance_names(app) == []
    plant(env, app, other, expires_in=-1)
    plan_rc, plan = ansible.task("immutable.infra.release_lock", {"app": app, "stack": "prod"}, check=True)
    assert plan_rc == 0 and plan["would"] == "take over" and "expired" in plan["note"]
    assert read_lease(env, app)["owner"]["host"] == "controller-b"  # check mode took nothing
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port))
    assert run.rc == 0, run.stderr
    take = run.result(TAKE % app)
    assert "expired" in take["takeover"]["reason"] and take["takeover"]["previous"]["owner"]["host"] == "controller-b"
    assert [e for e in lease_log(env) if e["key"] == "%s-prod" % app][-1]["previous"]["owner"]["host"] == "controller-b"
    plan_rc, plan = ansible.task("immutable.infra.release_lock", {"app": app, "stack": "prod"}, check=True)
    assert plan_rc == 0 and plan["free"] is True and read_lease(env, app) is None


def _hold(env, workdir, app, playbook, extra_vars, kept):
    """Start a playbook and freeze its ansible-playbook process as soon as it holds the lease."""
    proc = start_release(env, extra_vars, workdir, playbook=playbook)
    kept.append(proc.pid)
    wait_for(lambda: (read_lease(env, app) or {}).get("owner", {}).get("pid") == proc.pid, 60,
             "%s to take the lease" % os.path.basename(playbook))
    os.kill(proc.pid, signal.SIGSTOP)
    return proc


def _finish(proc):
    os.kill(proc.pid, signal.SIGCONT)
    out, _err = proc.communicate(timeout=300)
    return proc.returncode, out


def test_release_rollback_and_decommission_exclude_each_other(ansible, registry, release_images, apps, env, workdir,
                                                              kept):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2")).rc == 0
    rollback = _hold(env, workdir, app, ROLLBACK, {"app": app, "stack": "prod"}, kept)
    try:
        refused = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:3"))
        assert refused.rc != 0 and refused.changed == 0
        assert "pid %d" % rollback.pid in refused.result(TAKE % app)["msg"]
    finally:
        rc, out = _finish(rollback)
    assert rc == 0, out[-3000:]
    release = _hold(env, workdir, app, RELEASE, release_vars(registry, app, "relweb:2", release_verify_seconds=3), kept)
    try:
        before = instance_names(app)
        for playbook, extra in ((ROLLBACK, {}), (DECOMMISSION, {"decommission_group": "%s-prod-v001" % app})):
            refused = ansible.playbook(playbook, dict({"app": app, "stack": "prod"}, **extra))
            assert refused.rc != 0 and refused.changed == 0
            assert "pid %d" % release.pid in refused.result(TAKE % app)["msg"]
        assert instance_names(app) == before
    finally:
        rc, out = _finish(release)
    assert rc == 0, out[-3000:]
    assert read_lease(env, app) is None


def test_unlock_breaks_a_held_lease_and_logs_it(ansible, registry, release_images, apps, env, workdir, kept):
    app, port = apps(), free_port()
    bad = ansible.playbook(UNLOCK, {"app": app, "stack": "prod"})
    assert bad.rc != 0 and "a reason is required" in bad.result("Check the inputs")["msg"]
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    holder = _hold(env, workdir, app, RELEASE, release_vars(registry, app, "relweb:2", release_verify_seconds=3), kept)
    try:
        token = read_lease(env, app)["token"]
        assert processes_with(token)
        plan = ansible.playbook(UNLOCK, {"app": app, "stack": "prod", "unlock_reason": "drill"}, check=True)
        assert plan.rc == 0 and read_lease(env, app)["token"] == token
        run = ansible.playbook(UNLOCK, {"app": app, "stack": "prod", "unlock_reason": "drill: holder frozen"})
        assert run.rc == 0, run.stderr
        msg = run.result("Report the unlock")["msg"]
        assert "broke the lease of %s/prod held by pid %d" % (app, holder.pid) in msg and "drill: holder frozen" in msg
        assert read_lease(env, app) is None
        entry = lease_log(env)[-1]
        assert entry["event"] == "break" and entry["reason"] == "drill: holder frozen" and entry["key"] == "%s-prod" % app
        assert entry["previous"]["owner"]["pid"] == holder.pid and entry["by"]["pid"] != holder.pid
        wait_for(lambda: not processes_with(token), 25, "the holder's renewer to stop renewing a broken lease")
        rc, taken = ansible.task("immutable.infra.release_lock", {"app": app, "stack": "prod"})
        assert rc == 0 and taken["would"] == "take"
    finally:
        rc, out = _finish(holder)
    assert rc == 0, out[-3000:]
    assert "is not this run's" in out                           # the broken holder leaves the new lease alone
    assert read_lease(env, app)["token"] == taken["lease"]["token"]


_WORK = """
- name: Hold the lease, then work
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Take the release lock
      immutable.infra.release_lock: {app: "%s", stack: prod}
    - name: Work
      ansible.builtin.command:
        argv: ["python3", "-c", "import sys, time; time.sleep(%d); sys.stdout.write('a' * %d)  # %s"]
      changed_when: false
"""


def _kill_while_working(env, workdir, app, seconds, output_bytes, kept):
    """Run a play that takes the lease then works in a worker; SIGKILL ansible-playbook while it works.
    Returns (dead main pid, orphaned worker pid)."""
    marker = uuid.uuid4().hex[:12]
    path = os.path.join(workdir, "work-%s.yml" % uuid.uuid4().hex[:8])
    with open(path, "w") as f:
        f.write(_WORK % (app, seconds, output_bytes, marker))
    proc = start_release(env, {}, workdir, playbook=path)
    kept.append(proc.pid)
    wait_for(lambda: processes_with(marker), 60, "the work to start")   # the module's command line carries the marker
    worker, = children(proc.pid)
    kept.append(worker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.pid, worker


def test_orphaned_workers_of_a_killed_run_are_waited_for_or_named(ansible, apps, env, workdir, kept):
    app = apps()
    dead, worker = _kill_while_working(env, workdir, app, 8, 10, kept)
    rc, res = ansible.task("immutable.infra.release_lock", {"app": app, "stack": "prod", "orphan_timeout": 1})
    assert rc != 0 and "orphaned Ansible worker(s) %d are still running after 1 s" % worker in res["msg"]
    assert read_lease(env, app)["owner"]["pid"] == dead
    started = time.monotonic()
    rc, res = ansible.task("immutable.infra.release_lock", {"app": app, "stack": "prod"})
    assert rc == 0 and res["takeover"]["waited_for"] == [worker] and "is gone" in res["takeover"]["reason"]
    assert not alive(worker)                                    # its module done, the worker exited on its own
    print("waited %.1fs for orphaned worker %d" % (time.monotonic() - started, worker))


def test_an_orphaned_worker_stuck_delivering_its_result_is_named_not_waited_for(ansible, apps, env, workdir, kept):
    app = apps()
    _dead, worker = _kill_while_working(env, workdir, app, 1, 200000, kept)   # a result over the 64 KiB pipe buffer
    wait_for(lambda: not children(worker), 30, "the module to finish")
    time.sleep(0.5)
    assert alive(worker)                                        # measured: it blocks for ever writing to the dead run
    started = time.monotonic()
    rc, res = ansible.task("immutable.infra.release_lock", {"app": app, "stack": "prod"})
    assert rc == 0 and res["takeover"]["stuck"] == [worker] and "kill %d" % worker in res["note"]
    assert time.monotonic() - started < 30
