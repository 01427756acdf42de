"""rollback.yml, for real: refusals when there is nothing to roll back to, a
named group, and check mode (the plan, and nothing changed)."""
from __future__ import annotations

from conftest import (RELEASE, ROLLBACK, endpoint_version, free_port, group_names, instance_names, live_weights_only,
                      release_vars, traffic)

CHOOSE = "Move traffic back to the group that carried it before"


def test_nothing_to_roll_back_to_changes_nothing(ansible, registry, release_images, apps, env):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    instances, weights = instance_names(app), live_weights_only(env, app)
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod"})
    assert run.rc != 0 and run.changed == 0
    msg = run.result(CHOOSE)["msg"]
    assert "%s/prod has no other group to roll back to; traffic stays on %s-prod-v001" % (app, app) in msg
    v1 = "%s-prod-v001" % app
    named = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod", "rollback_group": v1})
    assert named.rc != 0 and "%s already carries the traffic" % v1 in named.result("Move traffic back to %s" % v1)["msg"]
    missing = "%s-prod-v007" % app
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod", "rollback_group": missing})
    assert run.rc != 0 and "%s of %s/prod is not running and the router recorded no image" % (missing, app) in \
        run.result("Move traffic back to %s" % missing)["msg"]
    assert instance_names(app) == instances and live_weights_only(env, app) == weights
    assert endpoint_version(port)["message"] == "r1"


def test_rollback_to_a_named_group(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    for image in ("relweb:1", "relweb:2", "relweb:3"):
        assert ansible.playbook(RELEASE, release_vars(registry, app, image, port, release_keep=3)).rc == 0
    v1, v3 = "%s-prod-v001" % app, "%s-prod-v003" % app
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod", "rollback_group": v1})
    assert run.rc == 0, run.stderr
    assert "rolled back to %s" % v1 in run.result("Report the rollback")["msg"]
    assert endpoint_version(port)["message"] == "r1" and traffic(ansible, app)["enabled"] == [v1]
    # Without a name, the rollback goes to the group that carried traffic just before: v003.
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod"})
    assert run.rc == 0 and "rolled back to %s" % v3 in run.result("Report the rollback")["msg"]
    assert endpoint_version(port)["message"] == "r3"


def test_rollback_check_mode_says_what_it_would_do(ansible, registry, release_images, apps, env):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2")).rc == 0
    v1, v2 = "%s-prod-v001" % app, "%s-prod-v002" % app
    instances, weights, groups = instance_names(app), live_weights_only(env, app), group_names(ansible, app)
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod"}, check=True, diff=True)
    assert run.rc == 0, run.stderr
    msg = run.result("Report the rollback")["msg"]
    assert "would roll back to %s" % v1 in msg and "nothing changed" in msg and "rolled back" not in msg
    assert run.result(CHOOSE)["diff"]["after"]["groups"] == {v1: 100, v2: 0}
    assert instance_names(app) == instances and live_weights_only(env, app) == weights
    assert group_names(ansible, app) == groups and endpoint_version(port)["message"] == "r2"

    # A destroyed group: check mode says it would be recreated, and creates nothing.
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:3", release_highlander=True)).rc == 0
    instances, weights = instance_names(app), live_weights_only(env, app)
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod", "catalog_registry": registry["address"]},
                           check=True, diff=True)
    assert run.rc == 0, run.stderr
    msg = run.result("Report the rollback")["msg"]
    assert "would roll back to %s (would be recreated from" % v2 in msg
    assert instance_names(app) == instances and live_weights_only(env, app) == weights
    assert endpoint_version(port)["message"] == "r3"
