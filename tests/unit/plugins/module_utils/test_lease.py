"""Release leases: owner identity on real processes, takeover rules, the file
store, orphaned workers and the renewer (real detached processes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _lease
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


@pytest.fixture
def store(tmp_path):
    return _lease.FileLeaseStore(str(tmp_path / "router" / "leases"))


@pytest.fixture
def sleeper():
    procs = []

    def start(seconds=60):
        procs.append(subprocess.Popen(["sleep", str(seconds)]))
        return procs[-1]

    yield start
    for p in procs:
        p.kill()
        p.wait()


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def log_lines(store):
    with open(store.log_file) as f:
        return [json.loads(line) for line in f]


def test_identity_names_a_live_process_by_pid_and_start_time():
    me = _lease.identity(os.getpid())
    with open("/proc/self/stat") as f:
        assert me["start"] == int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/self/cmdline", "rb") as f:
        assert me["cmdline"] == [a.decode() for a in f.read().split(b"\0")[:-1]]
    assert me["host"] and me["boot_id"] and me["pid_ns"].startswith("pid:")
    child = _lease.identity(subprocess.Popen(["sleep", "0.5"]).pid)
    assert 0 <= child["started"] - me["started"] and abs(child["started"] - time.time()) < 2
    assert _lease.owner_status(me) == "alive"
    assert _lease.owner_status(dict(me, start=me["start"] + 1)) == "reused"
    assert _lease.owner_status(dict(me, pid=dead_pid())) == "gone"
    assert _lease.identity(dead_pid()) is None


def test_a_free_lease_is_taken_and_the_same_owner_only_renews_it(store):
    me = _lease.identity(os.getpid())
    clock = [1000.0]
    leases = _lease.Leases(store, clock=lambda: clock[0])
    got = leases.acquire("web", "prod", "release of web/prod", me, ttl=60)
    assert got["changed"] and got["would"] == "take" and got["lease"]["expires"] == 1060.0
    assert store.get("web-prod")["owner"]["pid"] == os.getpid()
    clock[0] = 1030.0
    again = leases.acquire("web", "prod", "release of web/prod", me, ttl=60)
    assert not again["changed"] and again["would"] == "hold" and again["lease"]["token"] == got["lease"]["token"]
    assert store.get("web-prod")["expires"] == 1090.0
    assert not os.path.exists(store.log_file)                                # no takeover happened


def test_a_live_holder_on_this_host_is_never_taken_over_and_is_named(store, sleeper):
    holder = _lease.identity(sleeper().pid)
    leases = _lease.Leases(store, clock=lambda: 1000.0)
    leases.acquire("web", "prod", "release of web/prod", holder, ttl=60)
    before = open(store.location("web-prod")).read()
    me = _lease.identity(os.getpid())
    later = _lease.Leases(store, clock=lambda: 5000.0)                      # long expired: alive still wins here
    with pytest.raises(ImmutableInfraError) as err:
        later.acquire("web", "prod", "release of web/prod", me)
    msg = err.value.msg
    assert "release of web/prod is locked" in msg and "pid %d" % holder["pid"] in msg and holder["host"] in msg
    assert "since 1970-01-01 00:16:40 UTC" in msg and "expires 1970-01-01 00:17:40 UTC" in msg
    assert "immutable.infra.unlock -e app=web -e stack=prod" in msg and store.location("web-prod") in msg
    assert open(store.location("web-prod")).read() == before
    with pytest.raises(ImmutableInfraError, match="is locked"):             # check mode says the same, takes nothing
        later.acquire("web", "prod", "release of web/prod", me, check_mode=True)


@pytest.mark.parametrize("case", ["gone", "reused"])
def test_a_dead_owner_on_this_host_is_taken_over_at_once_and_logged(store, sleeper, case):
    if case == "gone":
        dead = dict(_lease.identity(os.getpid()), pid=dead_pid())
    else:                                                                    # a live pid, but not the process that took it
        live = _lease.identity(sleeper().pid)
        dead = dict(live, start=live["start"] - 1)
    _lease.Leases(store, clock=lambda: 1000.0).acquire("web", "prod", "release of web/prod", dead, ttl=600)
    me = _lease.identity(os.getpid())
    started = time.monotonic()
    got = _lease.Leases(store, clock=lambda: 1001.0).acquire("web", "prod", "release of web/prod", me)
    assert time.monotonic() - started < 1                                   # at once, long before expiry
    assert got["changed"] and got["would"] == "take over"
    reason = "is gone" if case == "gone" else "now belongs to another process"
    assert reason in got["takeover"]["reason"] and reason in got["note"] and "pid %d" % dead["pid"] in got["note"]
    assert store.get("web-prod")["owner"]["pid"] == os.getpid()
    entry, = log_lines(store)
    assert entry["event"] == "takeover" and entry["previous"]["owner"]["pid"] == dead["pid"]
    assert entry["by"]["pid"] == os.getpid() and reason in entry["reason"] and entry["key"] == "web-prod"


def test_another_hosts_lease_is_taken_over_only_once_expired(store):
    other = dict(_lease.identity(os.getpid()), host="elsewhere", boot_id="b", pid=1)
    _lease.Leases(store, clock=lambda: 1000.0).acquire("web", "prod", "release of web/prod", other, ttl=60)
    me = _lease.identity(os.getpid())
    with pytest.raises(ImmutableInfraError, match="pid 1 .* on elsewhere"):
        _lease.Leases(store, clock=lambda: 1059.0).acquire("web", "prod", "release of web/prod", me)
    assert store.get("web-prod")["owner"]["host"] == "elsewhere"
    plan = _lease.Leases(store, clock=lambda: 1061.0).acquire("web", "prod", "x", me, check_mode=True)
    assert plan["would"] == "take over" and plan["note"].startswith("would have taken over")
    assert store.get("web-prod")["owner"]["host"] == "elsewhere" and not os.path.exists(store.log_file)
    got = _lease.Leases(store, clock=lambda: 1061.0).acquire("web", "prod", "release of web/prod", me)
    assert got["takeover"]["previous"]["owner"]["host"] == "elsewhere" and "expired" in got["note"]
    assert log_lines(store)[0]["previous"]["owner"]["host"] == "elsewhere"


def test_check_mode_reports_a_free_lease_and_takes_nothing(store):
    got = _lease.Leases(store).acquire("web", "prod", "x", _lease.identity(os.getpid()), check_mode=True)
    assert got == {"changed": False, "free": True, "would": "take"}
    assert store.get("web-prod") is None


def test_busy_orphans_of_a_dead_run_are_waited_for_then_named(store):
    dead = dict(_lease.identity(os.getpid()), pid=dead_pid())
    _lease.Leases(store).acquire("web", "prod", "x", dead)
    me = _lease.identity(os.getpid())
    busy = [[{"pid": 41, "stuck": False}, {"pid": 42, "stuck": True}]] * 3 + [[{"pid": 42, "stuck": True}]]
    leases = _lease.Leases(store, sleep=lambda s: None, find_orphans=lambda owner, exclude: busy.pop(0))
    got = leases.acquire("web", "prod", "x", me)
    assert got["takeover"]["waited_for"] == [41] and got["takeover"]["stuck"] == [42]
    assert "waited for its orphaned worker(s) 41" in got["note"] and "kill 42" in got["note"]
    clock = iter(range(0, 1000, 10))
    leases = _lease.Leases(store, clock=lambda: float(next(clock)), sleep=lambda s: None,
                           find_orphans=lambda owner, exclude: [{"pid": 43, "stuck": False}])
    store.swap("web-prod", store.get("web-prod")["token"], dict(store.get("web-prod"), owner=dead))
    with pytest.raises(ImmutableInfraError, match=r"orphaned Ansible worker\(s\) 43 are still running after 30 s"):
        leases.acquire("web", "prod", "x", me, orphan_wait=30)
    assert store.get("web-prod")["owner"]["pid"] == dead["pid"]


_ORPHAN = r"""
import os, signal, sys, time
r, w = os.pipe()
me = os.getpid()
if os.fork():
    os._exit(0)                                  # the "ansible-playbook" dies at once
os.setsid()                                      # the worker, detached as Ansible detaches it
signal.alarm(30)                                 # never outlive the test for long, even if it is killed
null = os.open(os.devnull, os.O_RDWR)
for fd in range(3):
    os.dup2(null, fd)
while os.getppid() == me:
    time.sleep(0.01)
if sys.argv[1] == "stuck":
    os.write(w, b"x" * 200000)                   # a result nobody reads: blocks (until the alarm)
time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["busy", "stuck"])
def test_orphaned_workers_of_a_dead_run_are_found_and_told_apart(kind):
    # A unique argument: concurrent runs of this test must not see each other's orphans.
    tag = uuid.uuid4().hex
    owner_proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.5); exec(sys.argv[2])",
                                   kind, _ORPHAN, tag])
    assert _wait(lambda: tag in (_lease.cmdline(owner_proc.pid) or []), 5)  # exec'd: its own command line
    owner = _lease.identity(owner_proc.pid)
    owner_proc.wait()
    found = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = _lease.orphans(owner)
            if found and (kind == "busy" or found[0]["stuck"]):
                break
            time.sleep(0.1)
        assert len(found) == 1, found
        assert found[0]["stuck"] is (kind == "stuck")
        assert _lease.orphans(dict(owner, cmdline=owner["cmdline"] + ["other"])) == []
        assert _lease.orphans(owner, exclude=(found[0]["pid"],)) == []
    finally:
        for o in found:
            os.kill(o["pid"], 9)


def test_only_a_worker_of_a_live_parent_can_own_a_lease(tmp_path):
    with pytest.raises(ImmutableInfraError, match="orphaned Ansible worker"):
        _lease.playbook_owner()                                            # pytest's parent runs another program
    out = tmp_path / "owner.json"
    child = os.fork()
    if child == 0:                                                         # a fork, like an Ansible worker
        try:
            out.write_text(json.dumps(_lease.playbook_owner()))
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert json.loads(out.read_text())["pid"] == os.getpid()


def test_release_drops_only_the_owners_lease_and_break_logs_who_and_why(store, sleeper):
    holder = _lease.identity(sleeper().pid)
    me = _lease.identity(os.getpid())
    leases = _lease.Leases(store)
    leases.acquire("web", "prod", "release of web/prod", holder)
    dropped, note = leases.release("web", "prod", me)
    assert dropped is None and "not this run's" in note and store.get("web-prod")
    assert leases.break_lease("web", "prod", "ops ticket 7", me, check_mode=True)["owner"]["pid"] == holder["pid"]
    assert store.get("web-prod")
    broken = leases.break_lease("web", "prod", "ops ticket 7", me)
    assert broken["owner"]["pid"] == holder["pid"] and store.get("web-prod") is None
    entry, = log_lines(store)
    assert entry["event"] == "break" and entry["reason"] == "ops ticket 7" and entry["by"]["pid"] == os.getpid()
    assert entry["previous"]["owner"]["pid"] == holder["pid"]
    assert leases.break_lease("web", "prod", "again", me) is None           # nothing left to break
    leases.acquire("web", "prod", "release of web/prod", me)
    assert leases.release("web", "prod", me)[0]["owner"]["pid"] == os.getpid() and store.get("web-prod") is None


def test_the_store_creates_exclusively_and_names_an_unreadable_lease(store):
    assert store.create("a-b", {"token": "t1", "owner": {}}) is True
    assert store.create("a-b", {"token": "t2", "owner": {}}) is False
    assert store.swap("a-b", "t2", {"token": "t3", "owner": {}}) is False and store.get("a-b")["token"] == "t1"
    assert store.remove("a-b", "t2") is False and store.remove("a-b", "t1") is True
    with open(store.location("a-b"), "w") as f:
        f.write("{half")
    with pytest.raises(ImmutableInfraError, match="lease file .*a-b.json is unreadable; break it"):
        store.get("a-b")
    assert _lease.Leases(store).break_lease("a", "b", "corrupt", {"pid": 1}) is not None
    assert not os.path.exists(store.location("a-b"))
    assert sorted(os.listdir(store.directory)) == [".lock", "log.jsonl"]  # no temporary file left behind


def _alive(pid):
    return _lease.owner_status(_lease.identity(pid) or {"pid": pid}) == "alive"


def _wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_renewer_renews_while_its_owner_lives_and_dies_with_it(store, sleeper):
    owner_proc = sleeper()
    owner = _lease.identity(owner_proc.pid)
    got = _lease.Leases(store).acquire("web", "prod", "x", owner, ttl=3)
    renewer = _lease.start_renewer(store, "web-prod", got["lease"]["token"], owner, 3)
    try:
        assert _alive(renewer) and _lease.proc_stat(renewer)[1] != os.getpid()  # detached: not our child
        first = got["lease"]["expires"]
        assert _wait(lambda: store.get("web-prod")["expires"] > first, 5), "not renewed"
        owner_proc.kill()
        owner_proc.wait()
        assert _wait(lambda: not _alive(renewer), 1.0), "the renewer outlived its owner"
    finally:
        if _alive(renewer):
            os.kill(renewer, 9)


def test_the_renewer_never_renews_someone_elses_lease(store, sleeper):
    owner = _lease.identity(sleeper().pid)
    got = _lease.Leases(store).acquire("web", "prod", "x", owner, ttl=3)
    renewer = _lease.start_renewer(store, "web-prod", got["lease"]["token"], owner, 3)
    try:
        other = dict(got["lease"], token="someone-else", expires=123.0)
        assert store.swap("web-prod", got["lease"]["token"], other)
        assert _wait(lambda: not _alive(renewer), 3), "the renewer kept running"
        assert store.get("web-prod")["expires"] == 123.0
    finally:
        if _alive(renewer):
            os.kill(renewer, 9)
