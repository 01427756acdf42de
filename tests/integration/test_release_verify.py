"""The verify window after a switch, for real: an image that passes /healthz
but fails a share of real requests is released under load; the traffic task
sees the errors, puts the old group back at once, and the release removes (or
keeps) the failed group. Also check mode: the plan, and nothing changed."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import (RELEASE, TOP, Load, endpoint_version, free_port, group_names, instance_names, live_weights,
                      live_weights_only, move_channel, release_vars, traffic)

WINDOW = 60      # seconds; the window must end long before, at the first errors


@pytest.fixture(scope="module")
def failing_image(ansible, registry, release_images):
    """relweb:fail50 answers /healthz 200 but 500 on every other /version request."""
    run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
        "catalog_registry": registry["address"], "recipe": "web", "recipe_name": "relweb", "recipe_version": "fail50",
        "recipe_variables": {"web_message": "rf", "web_fail_requests": 50}})
    assert run.rc == 0, run.stderr
    return "relweb:fail50"


def switch_result(run, app, group_seq="v002", seconds=WINDOW):
    return run.result("Move traffic to %s-prod-%s, verify it for %ss" % (app, group_seq, seconds))


def release_failing_under_load(ansible, registry, app, port, image, workdir, **kw):
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        started = time.monotonic()
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, release_verify_seconds=WINDOW, **kw))
        took = time.monotonic() - started
        time.sleep(0.5)
    return run, load.report, took


def assert_back_on_v001(ansible, env, app, port):
    old = "%s-prod-v001" % app
    assert traffic(ansible, app)["enabled"] == [old]
    live = live_weights(env, app)
    carrying = {n for n, (status, weight) in live.items() if weight > 0}
    assert carrying and all(n.startswith(old + "-") for n in carrying), live
    assert all(live[n][0].startswith("UP") for n in carrying), live
    for _i in range(10):
        assert endpoint_version(port)["message"] == "r1"


def test_failing_image_is_pulled_back_at_the_first_errors(ansible, registry, failing_image, apps, env, workdir):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    before = instance_names(app)
    run, report, took = release_failing_under_load(ansible, registry, app, port, failing_image, workdir)
    assert run.rc != 0
    v = switch_result(run, app)["verification"]
    msg = run.result("Fail with the reason")["msg"]
    print("verify window: %s; load: %d requests, %d failed (%s); playbook %.1fs"
          % (v, report["requests"], report["failed"], report["statuses"], took))
    assert not v["passed"] and v["http_5xx"] > 0 and v["errors"] > 0 and v["seconds"] < WINDOW
    assert took < WINDOW                                   # bounded by the errors, not by the window
    assert "failed and was rolled back" in msg and "traffic stays on %s-prod-v001" % app in msg
    assert "failed verification" in msg and "5xx %d" % v["http_5xx"] in msg and "%d requests" % v["requests"] in msg
    assert "traffic went back to %s-prod-v001" % app in msg
    # The errors clients saw are the window's 500s only, and few.
    assert set(report["statuses"]) <= {"200", "500"}, report
    assert 0 < report["failed"] <= 60, report
    assert instance_names(app) == before                   # old group untouched, the failed one removed
    assert group_names(ansible, app) == ["%s-prod-v001" % app]
    assert sorted(traffic(ansible, app)["groups"]) == ["%s-prod-v001" % app]
    assert_back_on_v001(ansible, env, app, port)


def test_release_keep_failed_keeps_the_failed_group_out_of_traffic(ansible, registry, failing_image, apps, env, workdir):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    run, report, _took = release_failing_under_load(ansible, registry, app, port, failing_image, workdir,
                                                    release_keep_failed=True)
    assert run.rc != 0
    assert "kept at weight 0" in run.result("Fail with the reason")["msg"]
    print("keep_failed: load %d requests, %d failed" % (report["requests"], report["failed"]))
    assert 0 < report["failed"] <= 60, report
    failed = "%s-prod-v002" % app
    assert group_names(ansible, app) == ["%s-prod-v001" % app, failed]
    ep = traffic(ansible, app)
    assert ep["groups"][failed]["weight"] == 0 and ep["groups"][failed]["healthy"] == 2
    assert_back_on_v001(ansible, env, app, port)


def test_failed_first_release_removes_its_endpoint(ansible, registry, failing_image, apps, workdir):
    app, port = apps(), free_port()
    # Clients knock before the endpoint exists (refused), then meet the failing group.
    with Load(workdir, "http://127.0.0.1:%d/version" % port):
        run = ansible.playbook(RELEASE, release_vars(registry, app, failing_image, port, release_verify_seconds=WINDOW))
    assert run.rc != 0
    msg = run.result("Fail with the reason")["msg"]
    assert "failed verification" in msg and "no traffic before" in msg and "removed again" in msg
    assert traffic(ansible, app) is None
    assert instance_names(app) == []


def test_release_check_mode_shows_the_plan_and_changes_nothing(ansible, registry, release_images, apps, env):
    app, port = apps(), free_port()
    # A first release in check mode: nothing is created, not even the endpoint.
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port), check=True, diff=True)
    assert run.rc == 0, run.stderr
    msg = run.result("Report the release")["msg"]
    assert msg.startswith("would release relweb:1 to %s/prod" % app) and "would create 2 instances" in msg
    assert "127.0.0.1:%d" % port in msg and "nothing changed" in msg
    assert instance_names(app) == [] and traffic(ansible, app) is None

    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2")).rc == 0
    instances, weights, ep = instance_names(app), live_weights_only(env, app), traffic(ansible, app)
    run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:3", release_keep=2), check=True, diff=True)
    assert run.rc == 0, run.stderr
    msg = run.result("Report the release")["msg"]
    v1, v2, v3 = ("%s-prod-v00%d" % (app, i) for i in (1, 2, 3))
    assert "would release relweb:3" in msg and v3 in msg and "previous: %s" % v2 in msg and "would remove %s" % v1 in msg
    switch = run.results("Move traffic to %s, verify it for 1s" % v3)[-1]
    assert switch["changed"] and switch["diff"]["after"]["groups"] == {v2: 0, v3: 100}
    assert instance_names(app) == instances and live_weights_only(env, app) == weights
    assert traffic(ansible, app)["groups"].keys() == ep["groups"].keys() and endpoint_version(port)["message"] == "r2"


def test_failing_release_by_channel_names_the_channel_to_move_back(ansible, registry, failing_image, apps, env, workdir):
    """The failure after the switch, released by channel: traffic goes back, and the error says the
    channel still points at the failing version and how to move it back (the next release by channel
    would bring it again)."""
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    digest = json.loads(subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "docker://%s/%s" % (registry["address"], failing_image)],
        capture_output=True, text=True, check=True).stdout)["Digest"]
    move_channel(env, registry, "relweb", app, digest)
    run, _report, _took = release_failing_under_load(ansible, registry, app, port, "relweb", workdir, channel=app)
    assert run.rc != 0
    msg = run.result("Fail with the reason")["msg"]
    assert "failed and was rolled back (traffic stays on %s-prod-v001)" % app in msg, msg
    assert "Channel %s of relweb still points at the version that failed (%s)" % (app, digest) in msg, msg
    assert "promote.yml -e image=relweb -e channel=%s -e promote_rollback=true" % app in msg, msg
    assert_back_on_v001(ansible, env, app, port)
