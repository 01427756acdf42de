# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An app/stack lives on one platform. A release, rollback or decommission that
names another platform would not see its groups there, and the router would
drop them (the warm one too): it is refused before anything is made."""

from __future__ import annotations

from conftest import DECOMMISSION, RELEASE, ROLLBACK, endpoint_version, free_port, group_names, release_vars, traffic


def test_another_platform_is_refused_before_anything_is_made(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    for image in ("relweb:1", "relweb:2"):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, port))
        assert run.rc == 0, run.stderr
    groups, ep = group_names(ansible, app), traffic(ansible, app)
    assert ep["platform"] == "podman" and ep["enabled"] == ["%s-prod-v002" % app]
    weights = {g: v["weight"] for g, v in ep["groups"].items()}

    wrong = {"platform": "libvirt"}
    for playbook, extra in ((RELEASE, release_vars(registry, app, "relweb:3", **wrong)),
                            (ROLLBACK, dict(app=app, stack="prod", catalog_registry=registry["address"], **wrong)),
                            (DECOMMISSION, dict(app=app, stack="prod", decommission_force=True, **wrong))):
        run = ansible.playbook(playbook, extra)
        assert run.rc != 0, playbook
        lock = run.result("Take the release lock of %s/prod" % app)
        assert lock.get("failed") and "runs on the podman platform, not libvirt: give platform=podman" in lock["msg"]
        after = traffic(ansible, app)
        assert group_names(ansible, app) == groups and {g: v["weight"] for g, v in after["groups"].items()} == weights
    assert endpoint_version(port)["message"] == "r2"

    # The traffic module itself refuses too (callers that skip the lock), naming the platform.
    rc, res = ansible.task("immutable.infra.traffic", {"app": app, "stack": "prod", "groups": {groups[0]: 100},
                                                       "platform": "libvirt"})
    assert rc != 0 and "runs on the podman platform, not libvirt" in res["msg"]
    assert traffic(ansible, app)["enabled"] == ["%s-prod-v002" % app]
