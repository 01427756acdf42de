"""decommission.yml for real: every refusal names why and changes nothing
(instances, recorded and live router weights), --check --diff shows the plan
and changes nothing, a removal is exact and a re-run is a no-op."""
from __future__ import annotations

import json
import os

import pytest

from conftest import DECOMMISSION, RELEASE, endpoint_version, free_port, group_names, instance_names, live_weights, release_vars


@pytest.fixture(scope="module")
def released(ansible, registry, release_images, apps):
    """One app with v001 (disabled, warm) and v002 (carrying all traffic), two instances each.
    The tests below share it: every one but the last must leave it as it is."""
    app, port = apps("decom"), free_port()
    for image in ("relweb:1", "relweb:2"):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, port))
        assert run.rc == 0, run.stderr
    return {"app": app, "port": port, "v1": "%s-prod-v001" % app, "v2": "%s-prod-v002" % app}


def recorded_weights(env, app, stack="prod"):
    with open(os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "router", "routes.json")) as f:
        ep = json.load(f)["endpoints"].get("%s/%s" % (app, stack))
    return ep and ep["groups"]


def snapshot(env, app):
    return {"instances": instance_names(app), "live": live_weights(env, app), "recorded": recorded_weights(env, app)}


def decommission(ansible, app, check=False, diff=False, **kw):
    return ansible.playbook(DECOMMISSION, dict({"app": app, "stack": "prod"}, **kw), check=check, diff=diff)


def test_the_shared_app_serves_v2_with_v1_warm(env, released):
    state = snapshot(env, released["app"])
    assert len(state["instances"]) == 4
    assert state["recorded"] == {released["v2"]: 100, released["v1"]: 0}
    assert len(state["live"]) == 4
    for server, (status, weight) in state["live"].items():
        if server.startswith(released["v2"] + "-"):
            assert status.startswith("UP") and weight > 0, (server, status, weight)
        else:
            assert server.startswith(released["v1"] + "-") and weight == 0, (server, status, weight)
    assert endpoint_version(released["port"])["message"] == "r2"


@pytest.mark.parametrize("case,extra,task,words", [
    ("a group never seen", {"decommission_group": "{app}-prod-v009"}, "Refuse a group never seen (one removed before is fine, nothing to do)",
     "{app}/prod has no server group {app}-prod-v009 and never had one"),
    ("another app's group", {"decommission_group": "other-prod-v001"}, "Refuse a group never seen (one removed before is fine, nothing to do)",
     "has no server group other-prod-v001"),
    ("the group carrying traffic", {"decommission_group": "{v2}"}, "Refuse to remove what carries traffic",
     "refusing to remove {v2}: it carries {app}/prod's traffic"),
    ("the only group carrying traffic, with force", {"decommission_group": "{v2}", "decommission_force": True},
     "Refuse to leave the endpoint without a group carrying traffic", "{v2} is the only group carrying {app}/prod's traffic"),
    ("the whole app/stack without force", {}, "Refuse to remove what carries traffic",
     "refusing to decommission all of {app}/prod: {v2} carries its traffic; pass decommission_force=true"),
])
def test_refusals_name_why_and_change_nothing(ansible, env, released, case, extra, task, words):
    app = released["app"]
    before = snapshot(env, app)
    extra = {k: v.format(**released) if isinstance(v, str) else v for k, v in extra.items()}
    run = decommission(ansible, app, **extra)
    assert run.rc != 0 and run.changed == 0, case
    assert words.format(**released) in run.result(task)["msg"], case
    assert not run.results("Remove the server groups")
    assert snapshot(env, app) == before, case
    assert endpoint_version(released["port"])["message"] == "r2"


def test_a_bad_name_fails_clearly_and_changes_nothing(ansible, env, released):
    before = snapshot(env, released["app"])
    run = ansible.playbook(DECOMMISSION, {"app": "Bad_App", "stack": "prod", "decommission_force": True})
    assert run.rc != 0 and run.changed == 0
    assert "invalid app 'Bad_App'" in run.result("Take the release lock of Bad_App/prod")["msg"]
    assert not run.results("Read the current traffic")
    assert snapshot(env, released["app"]) == before


@pytest.mark.parametrize("extra,plan", [
    ({"decommission_group": "{v1}"}, "would remove {v1} (2 instances)"),
    ({"decommission_force": True}, "would remove {v1}, {v2} (4 instances) and the router endpoint {app}/prod"),
])
def test_check_diff_shows_the_plan_and_changes_nothing(ansible, env, released, extra, plan):
    app = released["app"]
    before = snapshot(env, app)
    extra = {k: v.format(**released) if isinstance(v, str) else v for k, v in extra.items()}
    run = decommission(ansible, app, check=True, diff=True, **extra)
    assert run.rc == 0, run.stderr
    assert run.result("Report the decommission")["msg"] == plan.format(**released)
    removals = run.result("Remove the server groups")["results"]
    # The diff shows each group as it is now, and nothing after.
    for item in removals:
        assert item["diff"]["before"]["name"] == item["item"] and item["diff"]["after"] == {}
        assert len(item["removed"]) == 2
    assert snapshot(env, app) == before
    assert group_names(ansible, app) == [released["v1"], released["v2"]]


def test_removal_is_exact_and_a_rerun_is_a_no_op(ansible, env, released):
    """Last, as it changes the shared app."""
    app, v1, v2 = released["app"], released["v1"], released["v2"]
    before = snapshot(env, app)
    run = decommission(ansible, app, decommission_group=v1)
    assert run.rc == 0, run.stderr
    assert run.result("Report the decommission")["msg"] == "removed %s (2 instances)" % v1
    after = snapshot(env, app)
    assert after["instances"] == [n for n in before["instances"] if not n.startswith(v1 + "-")]
    assert after["live"] == {s: v for s, v in before["live"].items() if s.startswith(v2 + "-")}
    assert after["recorded"] == {v2: 100}
    assert endpoint_version(released["port"])["message"] == "r2"

    again = decommission(ansible, app, decommission_group=v1)
    assert again.rc == 0 and again.changed == 0, again.stderr
    assert again.result("Report the decommission")["msg"] == "nothing to remove: %s/prod has no %s" % (app, v1)
    assert snapshot(env, app) == after

    whole = decommission(ansible, app, decommission_force=True)
    assert whole.rc == 0, whole.stderr
    assert whole.result("Report the decommission")["msg"] == (
        "removed %s (2 instances) and the router endpoint %s/prod" % (v2, app))
    assert snapshot(env, app) == {"instances": [], "live": {}, "recorded": None}

    again = decommission(ansible, app, decommission_force=True)
    assert again.rc == 0 and again.changed == 0, again.stderr
    assert "nothing to remove" in again.result("Report the decommission")["msg"]
