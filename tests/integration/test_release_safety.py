"""What must never break: a bad image never takes traffic, a second release
waits its turn, a killed release converges when run again, and bad input
changes nothing."""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

from conftest import (RELEASE, ROLLBACK, Load, assert_converged, endpoint_version, free_port, group_names,
                      instance_names, kill_release_when, lease_path, release_vars, start_release, traffic, wait_for)


def test_unhealthy_image_is_rolled_back_without_a_failed_request(ansible, registry, release_images, apps, workdir):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    before = instance_names(app)
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:4", release_wait_timeout=5))
    assert run.rc != 0
    msg = run.result("Fail with the reason")["msg"]
    assert "rolled back" in msg and "not healthy" in msg and "traffic stays on %s-prod-v001" % app in msg
    assert load.report["failed"] == 0 and load.report["versions"] == {"1": load.report["requests"]}
    assert instance_names(app) == before                          # the old group untouched, the new one gone
    assert group_names(ansible, app) == ["%s-prod-v001" % app]
    assert traffic(ansible, app)["enabled"] == ["%s-prod-v001" % app]


def test_a_second_release_fails_fast_and_changes_nothing(ansible, registry, release_images, apps, env, workdir):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    lock = lease_path(env, app)
    first = start_release(env, release_vars(registry, app, "relweb:2", release_verify_seconds=3), workdir)
    try:
        wait_for(lambda: os.path.exists(lock), 60, "the first release to take the lock")
        started = time.monotonic()
        second = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:3"))
        took = time.monotonic() - started
        assert second.rc != 0 and second.changed == 0
        msg = second.result("Take the release lock of %s/prod" % app)["msg"]
        assert "is locked" in msg and "pid %d" % first.pid in msg
        print("second release refused in %.2fs" % took)
    finally:
        out, _err = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    assert not os.path.exists(lock)
    assert endpoint_version(port)["message"] == "r2"


def _routes(env):
    with open(os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "router", "routes.json")) as f:
        return json.load(f)


KILL_POINTS = {
    "after taking the lock": lambda app, env: os.path.exists(lease_path(env, app)),
    "while the new group starts": lambda app, env: any(
        n.startswith("%s-prod-v002-" % app) for n in instance_names(app)),
    "after the traffic switch": lambda app, env: _routes(env)["endpoints"].get(
        "%s/prod" % app, {}).get("groups", {}).get("%s-prod-v002" % app, 0) > 0,
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_killed_release_converges_when_run_again(ansible, registry, release_images, apps, env, workdir, point):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    wanted = release_vars(registry, app, "relweb:2", release_verify_seconds=3)
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        kill_release_when(env, workdir, wanted, lambda: KILL_POINTS[point](app, env), point)
        rerun = ansible.playbook(RELEASE, wanted)
    assert rerun.rc == 0, rerun.stderr
    assert load.report["failed"] == 0, load.report
    assert_converged(ansible, app, port)


def test_unknown_image_changes_nothing(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    before = instance_names(app)
    for image in ("nosuchimage", "relweb:99"):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image))
        assert run.rc != 0
        assert "unknown image '%s'" % image in run.result("Fail with the reason")["msg"]
        assert instance_names(app) == before


def test_port_already_taken_changes_nothing(ansible, registry, release_images, apps):
    app = apps()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port))
    assert run.rc != 0
    assert "port %d is already taken" % port in run.result("Fail with the reason")["msg"]
    assert instance_names(app) == [] and traffic(ansible, app) is None


def test_bad_health_check_spec_changes_nothing(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port,
                                                 release_health_check={"path": "healthz", "interval": -1}))
    assert run.rc != 0
    msg = run.result("Fail with the reason")["msg"]
    assert "bad health_check" in msg and "path must start with '/'" in msg and "interval" in msg
    assert instance_names(app) == [] and traffic(ansible, app) is None


def test_unknown_stack_on_rollback(ansible, apps):
    run = ansible.playbook(ROLLBACK, {"app": apps(), "stack": "nostack"})
    assert run.rc != 0
    assert "has no router endpoint" in run.result("Move traffic back to the group that carried it before")["msg"]


def test_bad_release_inputs_are_named(ansible, registry, apps):
    run = ansible.playbook(RELEASE, {"app": "Bad App", "stack": "prod", "image": "",
                                     "catalog_registry": registry["address"]})
    assert run.rc != 0
    msg = run.result("Check the inputs")["msg"]
    assert "app=Bad App" in msg and "image=" in msg


def test_bad_app_name_is_named_by_the_lock_and_changes_nothing(ansible, registry, release_images, apps):
    for playbook in (RELEASE, ROLLBACK):
        run = ansible.playbook(playbook, release_vars(registry, "Bad App", "relweb:1", free_port()))
        assert run.rc != 0 and run.changed == 0
        msg = run.result("Take the release lock of Bad App/prod")["msg"]
        assert "invalid app 'Bad App'" in msg
        assert not run.results("Create the new server group (or find the one running this image)")


def test_release_service_port_is_checked_and_flows_to_the_server_group(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    bad = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port, release_service_port=70000))
    assert bad.rc != 0 and "release_service_port=70000" in bad.result("Check the inputs")["msg"]
    assert instance_names(app) == []
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port, release_service_port=8080))
    assert run.rc == 0, run.stderr
    group = run.result("Create the new server group (or find the one running this image)")
    assert group["port"] == 8080 and group["port_source"] == "option"
    assert endpoint_version(port)["message"] == "r1"


def test_a_bad_platform_is_named_and_changes_nothing(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    before, ep = instance_names(app), traffic(ansible, app)
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2", platform_options={"uri": "qemu:///x"}))
    assert run.rc != 0 and "platform podman has no option(s) uri" in run.result("Fail with the reason")["msg"]
    # The app runs on podman: another platform is refused by the lock, before anything is made.
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2", release_platform="aws"))
    assert run.rc != 0 and "runs on the podman platform, not aws" in run.result("Take the release lock of %s/prod" % app)["msg"]
    # A new app/stack on a platform that does not exist: named by the server group task.
    run = ansible.playbook(RELEASE, release_vars(registry, apps(), "relweb:2", free_port(), release_platform="vmware"))
    assert run.rc != 0 and "platform must be one of: aws, libvirt, podman, got: vmware" in run.result("Fail with the reason")["msg"]
    assert instance_names(app) == before and traffic(ansible, app)["groups"].keys() == ep["groups"].keys()
    assert endpoint_version(port)["message"] == "r1"
