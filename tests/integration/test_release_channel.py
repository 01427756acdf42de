"""Release by channel and ancestry, for real: release.yml -e channel=production
resolves the channel in the registry and the group records channel and digest;
a channel pointing at a revoked version is refused naming the revocation and
production stays as it was; a child baked from its parent's channel is rebaked
once by rebake_children.yml when that channel moves, and never again."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

from conftest import (RELEASE, TOP, endpoint_version, free_port, group_names, instance_names, move_channel,
                      push_test_image, release_vars, tags, traffic)

REBAKE = os.path.join(TOP, "playbooks", "rebake_children.yml")
CREATE = "Create the new server group (or find the one running this image)"


def versions(registry, name):
    """The version tags of a repository (not its channel and record tags)."""
    return [t for t in tags(registry, name) if not t.startswith(("channel.", "sha256-"))]


def test_release_by_channel_records_channel_and_digest_and_refuses_a_revoked_target(ansible, registry, lineage, apps,
                                                                                    env):
    app, port, c1 = apps("rch"), free_port(), lineage["c1"]
    move_channel(env, registry, lineage["child"], "production", c1["digest"])
    by_channel = release_vars(registry, app, lineage["child"], port, channel="production")
    run = ansible.playbook(RELEASE, by_channel)
    assert run.rc == 0, run.stderr[-3000:]
    group = run.result(CREATE)["group"]
    assert group["channel"] == "production" and group["image_digest"] == c1["digest"] and group["image_version"] == "1"
    report = run.result("Report the release")["msg"]
    assert "channel production" in report and c1["digest"] in report
    assert endpoint_version(port)["message"] == "lin1"
    labels = json.loads(subprocess.run(["podman", "inspect", "--format", "{{json .Config.Labels}}", instance_names(app)[0]],
                                       capture_output=True, text=True, check=True).stdout)
    assert labels["infra.immutable.image-digest"] == c1["digest"]
    assert labels["infra.immutable.channel"] == "production"        # the instance itself says how it was released

    again = ansible.playbook(RELEASE, by_channel)                   # the same target again: nothing to do
    assert again.rc == 0 and again.changed == 0, again.doc["stats"]
    assert again.result(CREATE)["group"]["name"] == group["name"]

    # A channel whose target is revoked: refused before anything starts, naming the revocation.
    bad = "chanrev%s" % uuid.uuid4().hex[:6]
    digest = push_test_image(registry, bad, "1")
    move_channel(env, registry, bad, "production", digest)
    rc, res = ansible.task("immutable.infra.image_revoke", {"name": bad, "version": "1", "reason": "leaks the admin token",
                                                            "actor": "carol", "registry": registry["address"]})
    assert rc == 0 and res["changed"], res
    before, groups = traffic(ansible, app), group_names(ansible, app)
    run = ansible.playbook(RELEASE, release_vars(registry, app, bad, channel="production"))
    assert run.rc != 0
    msg = run.result("Fail with the reason")["msg"]
    assert "channel production of %s: it points at a revoked version: image version %s:1 (%s) is revoked: " \
           "leaks the admin token (revoked by carol at " % (bad, bad, digest) in msg, msg
    after = traffic(ansible, app)
    assert group_names(ansible, app) == groups and after["enabled"] == before["enabled"] == [group["name"]]
    assert endpoint_version(port)["message"] == "lin1"


def children(ansible, registry, parent):
    rc, res = ansible.task("immutable.infra.image_children_info", {"parent": parent, "registry": registry["address"]})
    assert rc == 0, res
    return {c["name"]: c for c in res["children"]}


def test_rebake_children_rebakes_an_out_of_date_child_once(ansible, registry, lineage, env):
    parent, child = lineage["parent"], lineage["child"]
    found = children(ansible, registry, parent)
    assert found[child]["digest"] == lineage["c1"]["digest"] and found[child]["out_of_date"] is None
    assert found[child]["parent_channel"] == "production"
    move_channel(env, registry, parent, "production", lineage["p2"])
    stale = children(ansible, registry, parent)[child]["out_of_date"]
    assert stale["parent_digest"] == lineage["p1"] and stale["channel_digest"] == lineage["p2"], stale

    rebake = {"parent": parent, "catalog_registry": registry["address"],
              "rebake_recipes": {child: {"recipe": "web", "variables": {"web_message": "lin1"}}}}
    planned = ansible.playbook(REBAKE, rebake, check=True)
    assert planned.rc == 0 and versions(registry, child) == ["1"], planned.stderr[-3000:]
    run = ansible.playbook(REBAKE, rebake)
    assert run.rc == 0, run.stderr[-3000:]
    baked = run.result("Bake the out-of-date children again")["results"]
    assert len(baked) == 1 and baked[0]["changed"] and baked[0]["version"] == "2", baked
    image = baked[0]["image"]
    assert image["parent_digest"] == lineage["p2"] and image["labels"]["infra.immutable.parent-channel"] == "production"
    assert versions(registry, child) == ["1", "2"] and children(ansible, registry, parent)[child]["out_of_date"] is None
    assert "baked %s:2" % child in run.result("Report the rebakes")["msg"]

    again = ansible.playbook(REBAKE, rebake)                        # bake once: nothing is out of date any more
    assert again.rc == 0 and again.changed == 0, again.doc["stats"]
    assert again.result("Bake the out-of-date children again")["results"] == []
    assert versions(registry, child) == ["1", "2"]
