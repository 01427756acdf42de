"""server_group on its own (check mode, idempotence, replacing a dead
instance, removal) and the router keeping runtime changes across reloads."""
from __future__ import annotations

import subprocess

from conftest import RELEASE, endpoint_version, free_port, instance_names, live_weights, release_vars


def sg(ansible, registry, app, check=False, diff=False, **kw):
    args = {"app": app, "stack": "prod", "count": 2, "zones": ["zone-a", "zone-b"],
            "registry": registry["address"], "health_check": {"interval": 0.2}}
    args.update(kw)
    return ansible.task("immutable.infra.server_group", args, check=check, diff=diff)


def test_server_group_lifecycle(ansible, registry, release_images, apps):
    app = apps()
    rc, res = sg(ansible, registry, app, check=True, diff=True, image="relweb:1")
    assert rc == 0 and res["changed"] and res["would_create"] == 2 and res["group"]["name"] == "%s-prod-v001" % app
    assert res["diff"]["before"] == {} and res["diff"]["after"]["instances"] == 2
    assert instance_names(app) == []

    rc, res = sg(ansible, registry, app, image="relweb:1")
    assert rc == 0 and res["changed"] and len(res["created"]) == 2
    assert sorted(i["zone"] for i in res["group"]["instances"]) == ["zone-a", "zone-b"]
    assert set(res["health"].values()) == {200}
    first = instance_names(app)

    rc, res = sg(ansible, registry, app, image="relweb:1")
    assert rc == 0 and not res["changed"] and instance_names(app) == first

    victim = first[0]
    subprocess.run(["podman", "kill", victim], check=True, capture_output=True)
    rc, res = sg(ansible, registry, app, image="relweb:1")
    assert rc == 0 and res["changed"] and res["replaced"] == [victim] and len(res["created"]) == 1
    now = instance_names(app)
    assert victim not in now and first[1] in now and len(now) == 2      # replaced, not repaired

    rc, res = sg(ansible, registry, app, image="relweb:2")
    assert rc == 0 and res["group"]["name"] == "%s-prod-v002" % app       # a new image, a new group
    assert res["groups"] == ["%s-prod-v001" % app, "%s-prod-v002" % app]

    for group in ("%s-prod-v001" % app, "%s-prod-v002" % app):
        rc, res = sg(ansible, registry, app, group=group, state="absent")
        assert rc == 0 and res["changed"]
        rc, res = sg(ansible, registry, app, group=group, state="absent")
        assert rc == 0 and not res["changed"]
    assert instance_names(app) == []


def test_server_group_bad_inputs(ansible, registry, release_images, apps):
    app = apps()
    rc, res = sg(ansible, registry, app, image="relweb:1", health_check={"path": "x"})
    assert rc != 0 and "path must start with '/'" in res["msg"]
    rc, res = sg(ansible, registry, "Bad_App", image="relweb:1")
    assert rc != 0 and "invalid app 'Bad_App'" in res["msg"]
    rc, res = sg(ansible, registry, app, group="%s-prod-v009" % app)
    assert rc != 0 and "does not exist" in res["msg"]
    # The platform is chosen by name and options; a wrong one is named and nothing starts.
    rc, res = sg(ansible, registry, app, image="relweb:1", platform="aws")
    assert rc != 0 and "platform" in res["msg"] and "aws" in res["msg"]
    rc, res = sg(ansible, registry, app, image="relweb:1", platform_options={"uri": "qemu:///session"})
    assert rc != 0 and "platform podman has no option(s) uri (known: podman, validate_certs)" in res["msg"]
    rc, res = ansible.task("immutable.infra.traffic", {"app": app, "stack": "prod", "groups": {"%s-prod-v001" % app: 100},
                                                       "port": free_port(), "platform_options": {"bogus": 1}})
    assert rc != 0 and "platform podman has no option(s) bogus" in res["msg"]
    assert instance_names(app) == []


def test_router_keeps_runtime_changes_across_reload_and_restart(ansible, registry, release_images, apps, env):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2")).rc == 0   # runtime API change
    before = live_weights(env, app)
    v1, v2 = "%s-prod-v001" % app, "%s-prod-v002" % app
    # The runtime API set these weights: v002 carries, v001 drained (weight 0) but still routed.
    assert {n.rsplit("-", 1)[0] for n, (_s, w) in before.items() if w > 0} == {v2}
    assert {n.rsplit("-", 1)[0] for n, (_s, w) in before.items() if w == 0} == {v1}
    for state in ("reloaded", "restarted"):
        rc, res = ansible.task("immutable.infra.router", {"state": state})
        assert rc == 0 and res["changed"] and "%s/prod" % app in res["endpoints"]
        assert endpoint_version(port)["message"] == "r2"
        after = live_weights(env, app)       # live from the new process, not routes.json
        assert {n: w for n, (_s, w) in after.items()} == {n: w for n, (_s, w) in before.items()}, (state, after)
    rc, res = ansible.task("immutable.infra.router", {"state": "started"})
    assert rc == 0 and not res["changed"]
