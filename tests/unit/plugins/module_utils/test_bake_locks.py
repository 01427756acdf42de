"""Bake locks between real processes: a version held by a live bake is never
chosen again, a killed bake's locks vanish with it, and the same inputs wait."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import ansible_collections
from ansible_collections.immutable.infra.plugins.module_utils._bake_locks import BakeLocks
from ansible_collections.immutable.infra.plugins.module_utils._catalog import next_version
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# A bake in another process: takes the inputs lock, reserves a version
# (named, or the next number after argv's tags), prints it, then sleeps.
HOLDER = """
import sys, time
from ansible_collections.immutable.infra.plugins.module_utils._bake_locks import BakeLocks
from ansible_collections.immutable.infra.plugins.module_utils._catalog import next_version
base, fp, version, tags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
locks = BakeLocks(base, "127.0.0.1:5000", "team/web")
locks.hold_inputs(fp)
print(locks.reserve(lambda taken: version or next_version(tags + taken)), flush=True)
time.sleep(60)
"""


@pytest.fixture
def holders(tmp_path):
    procs = []
    paths = [os.path.dirname(list(ansible_collections.__path__)[0]), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))

    def start(fp, version="", tags=()):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), fp, version] + list(tags),
                                stdout=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        return proc, proc.stdout.readline().strip()

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def locks(tmp_path):
    return BakeLocks(str(tmp_path), "127.0.0.1:5000", "team/web")


def test_a_number_held_by_a_live_bake_is_not_chosen_again(tmp_path, holders):
    _proc, first = holders("sha256:aa", tags=["1", "2"])
    assert first == "3"
    with locks(tmp_path) as mine:
        # The registry still shows 1 and 2: the number in flight counts too.
        assert mine.reserve(lambda taken: next_version(["1", "2"] + taken)) == "4"


def test_a_killed_bake_frees_its_number_and_inputs(tmp_path, holders):
    proc, first = holders("sha256:aa", tags=["1"])
    assert first == "2"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with locks(tmp_path) as mine:
        assert mine.hold_inputs("sha256:aa", timeout=1) < 1
        assert mine.reserve(lambda taken: next_version(["1"] + taken)) == "2"
    assert sorted(os.listdir(mine.dir)) == ["inputs-aa.lock", "numbers.lock", "version-2.lock"]


def test_a_named_version_being_baked_is_refused(tmp_path, holders):
    holders("sha256:aa", version="2024.06.1")
    with locks(tmp_path) as mine:
        with pytest.raises(ImmutableInfraError, match="team/web:2024.06.1 is being baked by another run"):
            mine.reserve(lambda taken: "2024.06.1")


def test_the_same_inputs_wait_for_the_bake_that_holds_them(tmp_path, holders):
    proc, _v = holders("sha256:aa", tags=["1"])
    with locks(tmp_path) as mine:
        with pytest.raises(ImmutableInfraError, match="another bake of the same inputs of team/web"):
            mine.hold_inputs("sha256:aa", timeout=0.3, poll=0.05)
        assert mine.hold_inputs("sha256:bb", timeout=0.3) < 0.3     # other inputs do not wait
    started = time.monotonic()
    with locks(tmp_path) as mine:
        subprocess.Popen(["sh", "-c", "sleep 0.5; kill %d" % proc.pid])
        waited = mine.hold_inputs("sha256:aa", timeout=10, poll=0.05)
    assert 0.3 < waited < 10 and time.monotonic() - started < 10
