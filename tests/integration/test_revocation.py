"""Revocation for real (registry, podman server groups, haproxy, Packer): revoke a
parent version with cascade, then try to release its child, promote it, bake on
the parent and roll back onto the child's warm group - each refused naming the
version, the reason, who and when, with production, the router, the channels
and the catalog exactly as they were."""
from __future__ import annotations

import json
import os

import pytest

from conftest import (RELEASE, ROLLBACK, TOP, bake_containers, derived_image, endpoint_version, free_port, group_names,
                      live_weights, release_vars, tags, traffic)

REVOKE = os.path.join(TOP, "playbooks", "revoke.yml")
BAKE = os.path.join(TOP, "playbooks", "bake.yml")
REASON = "CVE-2026-0001 in the base's openssl"


@pytest.fixture(scope="module")
def doomed(ansible, registry, base, apps):
    """A parent `revbase<id>:1` and the web recipe baked on it as `revweb<id>:1`, released to a fresh app
    as its v001, then the session's lineage child released over it (v002 serves, v001 is warm)."""
    uid = apps("rev")
    parent, child = "revbase%s" % uid[3:], "revweb%s" % uid[3:]
    p1 = derived_image(registry, base, parent, "1")
    run = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": child,
                                  "recipe_parent": "%s:1" % parent, "recipe_variables": {"web_message": "doomed"}})
    assert run.rc == 0, run.stderr[-3000:]
    return {"app": uid, "parent": parent, "child": child, "p1": p1, "c1": run.result("Bake the recipe")["image"]}


def revocations(registry, name):
    return [t for t in tags(registry, name) if t.endswith(".revoked")]


def test_revoke_with_cascade_then_release_promote_bake_and_rollback_are_refused(ansible, registry, doomed, lineage):
    app, port, parent, child = doomed["app"], free_port(), doomed["parent"], doomed["child"]
    for image, message in (("%s:1" % child, "doomed"), (lineage["c1"]["reference"], "lin1")):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, port))
        assert run.rc == 0 and endpoint_version(port)["message"] == message, run.stderr[-3000:]
    v1, v2 = "%s-prod-v001" % app, "%s-prod-v002" % app

    revoke = {"image": parent, "version": "1", "revoke_reason": REASON, "revoke_cascade": True,
              "catalog_registry": registry["address"]}
    planned = ansible.playbook(REVOKE, revoke, check=True, diff=True)
    assert planned.rc == 0, planned.stderr[-3000:]
    would = planned.result("Revoke the version")
    assert [(r["name"], r["version"]) for r in would["revoked"]] == [(parent, "1"), (child, "1")]
    assert revocations(registry, parent) == [] and revocations(registry, child) == []       # check mode wrote nothing
    run = ansible.playbook(REVOKE, dict(revoke, awx_user_name="alice"))
    done = run.result("Revoke the version")
    assert run.rc == 0 and done["changed"] and [r["name"] for r in done["revoked"]] == [parent, child]
    record = done["revoked"][1]["record"]
    assert record["cascade_from"] == doomed["p1"] and record["by"] == "alice" and record["reason"] == REASON
    assert len(revocations(registry, parent)) == 1 and len(revocations(registry, child)) == 1
    again = ansible.playbook(REVOKE, revoke)
    assert again.rc == 0 and again.changed == 0 and again.result("Revoke the version")["revoked"] == []

    def unchanged():
        ep = traffic(ansible, app)
        assert ep["enabled"] == [v2] and sorted(ep["groups"]) == [v1, v2], ep
        assert group_names(ansible, app) == [v1, v2] and endpoint_version(port)["message"] == "lin1"
        return live_weights(ansible.env, app)

    def names_the_revocation(msg):
        assert "image version %s:1 (%s) is revoked: %s (revoked by alice at 20" % (child, doomed["c1"]["digest"], REASON) \
            in msg and doomed["p1"] in msg, msg

    weights = unchanged()
    # Release it again: refused before any instance starts.
    run = ansible.playbook(RELEASE, release_vars(registry, app, "%s:1" % child))
    assert run.rc != 0
    names_the_revocation(run.result("Fail with the reason")["msg"])
    assert unchanged() == weights

    # Roll back onto its warm group: refused, traffic stays.
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod", "catalog_registry": registry["address"]})
    assert run.rc != 0
    msg = run.result("Move traffic back to the group that carried it before")["msg"]
    assert msg.startswith("cannot roll %s/prod back to %s: " % (app, v1)), msg
    names_the_revocation(msg)
    assert unchanged() == weights

    # Bake on the revoked parent: refused before Packer runs, nothing pushed.
    child_tags = tags(registry, child)
    run = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": child,
                                  "recipe_parent": "%s:1" % parent, "recipe_variables": {"web_message": "again"}})
    assert run.rc != 0
    res = run.result("Bake the recipe")
    assert res["msg"].startswith("cannot bake on %s:1: image version %s:1 (%s) is revoked: %s (revoked by alice at "
                                 % (parent, parent, doomed["p1"], REASON)), res["msg"]
    assert "packer_seconds" not in res and "log_file" not in res and res.get("revocation", {}).get("reason") == REASON
    assert tags(registry, child) == child_tags
    assert not [c for c in bake_containers() if c.startswith("immutable-bake-%s-" % child)]     # none started

    # Promote it: refused by the promotion module, no channel written.
    if os.path.exists(os.path.join(TOP, "plugins", "modules", "image_channel.py")):
        rc, res = ansible.task("immutable.infra.image_channel", {"name": child, "channel": "dev", "version": "1",
                                                                 "registry": registry["address"]})
        assert rc != 0 and REASON in res["msg"] and "revoked" in res["msg"], res
        assert not [t for t in tags(registry, child) if t.startswith("channel.")]
    assert json.dumps(unchanged()) == json.dumps(weights)
