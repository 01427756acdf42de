"""Releases in waves on the embedded default, for real: each wave is a region with its own haproxy
router (router_dir <state>/router-<wave>), its own endpoint port and its own podman store
(<state>/region-<wave>, through the launcher release_waves.yml writes). Every test uses its own app and
wave names, and decommissions every region at the end, even on failure."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

from conftest import DECOMMISSION, TOP, endpoint_version, free_port, release_vars, start_release, wait_for

WAVES = os.path.join(TOP, "playbooks", "release_waves.yml")


class Region:
    def __init__(self, env, app, name, port):
        self.name, self.port, self.app = name, port, app
        state = env["IMMUTABLE_INFRA_STATE_DIR"]
        self.router_dir = os.path.join(state, "router-" + name)
        self.podman = os.path.join(state, "region-" + name, "podman")

    def wave(self, **kw):
        return dict({"name": self.name, "port": self.port}, **kw)

    def instances(self):
        """{name: zone} of the app's instances in this region's podman store."""
        if not os.path.exists(self.podman):
            return {}
        proc = subprocess.run([self.podman, "ps", "-a", "--format", "json", "--filter",
                               "label=infra.immutable.app=%s" % self.app], capture_output=True, text=True, check=True)
        return {c["Names"][0]: c["Labels"]["infra.immutable.zone"] for c in json.loads(proc.stdout or "[]") or []}

    def traffic(self, ansible):
        args = {"app": self.app, "stack": "prod", "router_dir": self.router_dir}
        rc, res = ansible.task("immutable.infra.traffic_info", args)
        assert rc == 0, res
        return res["endpoint"]

    def groups(self, ansible):
        rc, res = ansible.task("immutable.infra.server_group_info", {
            "app": self.app, "stack": "prod", "platform_options": {"podman": self.podman}})
        assert rc == 0, res
        return [g["name"] for g in res["groups"]]

    def cleanup(self, ansible):
        if os.path.exists(self.podman):      # each step even when the one before failed
            ansible.playbook(DECOMMISSION, {"app": self.app, "stack": "prod", "decommission_force": True,
                                            "router_dir": self.router_dir, "platform_options": {"podman": self.podman}})
            try:
                left = list(self.instances())
            except subprocess.CalledProcessError:
                left = []
            if left:
                subprocess.run([self.podman, "rm", "-f", "-t", "0"] + left, capture_output=True, check=False)
            with open(self.podman) as f:          # the region's short run root, outside the state dir
                runroot = f.read().split("--runroot '", 1)[1].split("'", 1)[0]
            shutil.rmtree(runroot, ignore_errors=True)
        ansible.task("immutable.infra.router", {"state": "stopped", "router_dir": self.router_dir})


@pytest.fixture
def regions(ansible, env, apps):
    """Two regions of a new app: (app, [Region, Region]); decommissioned and their routers stopped at the end."""
    app = apps("wv")
    made = [Region(env, app, "%s-%s" % (app, suffix), free_port()) for suffix in ("eu", "us")]
    yield app, made
    for region in made:
        region.cleanup(ansible)


def waves_vars(registry, app, image, waves, **kw):
    return release_vars(registry, app, image, waves=waves, **kw)


def task_order(run):
    """(task name, result) in the order they ran."""
    return [(t["task"]["name"], t["hosts"]["localhost"]) for p in run.doc["plays"] for t in p["tasks"]]


def test_a_failing_wave_rolls_back_only_the_waves_done(ansible, registry, release_images, regions):
    app, (eu, us) = regions
    v1, v2 = "%s-prod-v001" % app, "%s-prod-v002" % app
    first = ansible.playbook(WAVES, waves_vars(registry, app, "relweb:1", [
        eu.wave(zones=["eu-a", "eu-b", "eu-c"], count=3), us.wave(zones=["us-a"])]))
    assert first.rc == 0, first.stderr + str(first.results("Fail with the reason"))
    for region in (eu, us):
        assert endpoint_version(region.port)["message"] == "r1"
        assert region.traffic(ansible)["enabled"] == [v1]
    # The zones are the wave's: instances spread over them, each record carries its zone.
    assert sorted(eu.instances().values()) == ["eu-a", "eu-b", "eu-c"]
    assert sorted(us.instances().values()) == ["us-a", "us-a"]
    before = {r.name: r.instances() for r in (eu, us)}

    # Check mode: every wave's plan, nothing changes.
    plan = ansible.playbook(WAVES, waves_vars(registry, app, "relweb:2", [eu.wave(), us.wave()]), check=True, diff=True)
    assert plan.rc == 0, plan.stderr
    reports = [r["msg"] for r in plan.results("Report the release")]
    assert len(reports) == 2 and all(m.startswith("would release relweb:2") and v2 in m for m in reports)
    assert "127.0.0.1:%d" % eu.port in reports[0] and "127.0.0.1:%d" % us.port in reports[1]
    assert "would release relweb:2" in plan.result("Report the waves")["msg"]
    assert {r.name: r.instances() for r in (eu, us)} == before
    assert all(r.traffic(ansible)["enabled"] == [v1] for r in (eu, us))

    # v2 in waves; the second wave's health check cannot pass (a path the image does not serve).
    run = ansible.playbook(WAVES, waves_vars(registry, app, "relweb:2", [
        eu.wave(), us.wave(health_check={"path": "/no-such-path"})], release_wait_timeout=8))
    assert run.rc != 0
    msg = run.result("Fail with the reason")["msg"]
    assert "failed in wave %s" % us.name in msg and "rolled back waves %s" % eu.name in msg, msg
    assert "%s: %s" % (eu.name, v1) in msg and "%s: %s" % (us.name, v1) in msg, msg
    # The done wave is back on v1, its v2 group removed; the failing wave never moved.
    for region in (eu, us):
        assert endpoint_version(region.port)["message"] == "r1"
        ep = region.traffic(ansible)
        assert ep["enabled"] == [v1] and list(ep["groups"]) == [v1], ep
        assert region.groups(ansible) == [v1]
    assert {r.name: r.instances() for r in (eu, us)} == before
    # The leases of both routers were dropped.
    assert not any(os.path.exists(os.path.join(r.router_dir, "leases", "%s-prod.json" % app)) for r in (eu, us))


def test_waves_run_in_order_each_verified_and_a_rerun_changes_nothing(ansible, registry, release_images, regions):
    app, (eu, us) = regions
    waves = [eu.wave(zones=["eu-a", "eu-b"]), us.wave(zones=["us-a", "us-b"])]
    run = ansible.playbook(WAVES, waves_vars(registry, app, "relweb:2", waves))
    assert run.rc == 0, run.stderr + str(run.results("Fail with the reason"))
    order = task_order(run)
    verified = [i for i, (name, res) in enumerate(order) if name.startswith("Move traffic to ")]
    created = [i for i, (name, res) in enumerate(order) if name == "Create the new server group (or find the one running this image)"]
    assert len(verified) == 2 and len(created) == 2
    assert verified[0] < created[1]                   # wave 2 starts after wave 1 is verified
    assert all(order[i][1]["verification"]["seconds"] >= 1 for i in verified)   # each wave's verify window ran
    assert "127.0.0.1:%d" % eu.port in order[verified[0]][1]["url"]
    assert "127.0.0.1:%d" % us.port in order[verified[1]][1]["url"]
    assert run.result("Report the waves")["msg"].startswith("released relweb:2 to %s/prod in 2 waves" % app)
    for region in (eu, us):
        assert endpoint_version(region.port)["message"] == "r2"
    assert sorted(us.instances().values()) == ["us-a", "us-b"]

    again = ansible.playbook(WAVES, waves_vars(registry, app, "relweb:2", waves))
    assert again.rc == 0 and again.changed == 0, [(n, r.get("changed")) for n, r in task_order(again) if r.get("changed")]


def test_bad_waves_are_named_and_change_nothing(ansible, registry, apps, env):
    app = apps("wv")
    for waves, expected in (([], "waves=[]"), ([{"name": "Bad Name"}], "Bad Name"),
                            ([{"name": "a-" + app}, {"name": "a-" + app}], "unique")):
        run = ansible.playbook(WAVES, waves_vars(registry, app, "relweb:1", waves))
        assert run.rc != 0
        assert expected in run.result("Check the inputs")["msg"]
    assert not os.path.exists(os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "region-a-" + app))


def test_a_killed_waves_release_leaves_no_lock_and_converges_when_run_again(
        ansible, registry, release_images, regions, env, workdir):
    """SIGKILL of the ansible-playbook process alone (its workers call setsid and live on) once the first
    wave serves: the next run takes over both routers' leases (their owner is dead) and converges."""
    app, (eu, us) = regions
    extra = waves_vars(registry, app, "relweb:1", [eu.wave(), us.wave()])
    proc = start_release(env, extra, workdir, playbook=WAVES)
    try:
        def first_wave_serves():
            try:
                return endpoint_version(eu.port)["message"] == "r1"
            except OSError:
                return False
        wait_for(first_wave_serves, 180, "the first wave to serve")
        assert all(os.path.exists(os.path.join(r.router_dir, "leases", "%s-prod.json" % app)) for r in (eu, us))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run = ansible.playbook(WAVES, extra)
    assert run.rc == 0, run.stderr + str(run.results("Fail with the reason"))
    v1 = "%s-prod-v001" % app
    for region in (eu, us):
        assert endpoint_version(region.port)["message"] == "r1"
        assert region.groups(ansible) == [v1] and len(region.instances()) == 2
        assert not os.path.exists(os.path.join(region.router_dir, "leases", "%s-prod.json" % app))
        with open(os.path.join(region.router_dir, "leases", "log.jsonl")) as f:
            taken = [e for e in map(json.loads, f) if e["key"] == "%s-prod" % app and e["event"] == "takeover"]
        assert taken and taken[-1]["previous"]["owner"]["pid"] == proc.pid
