"""Releases on the embedded platform, for real: podman instances, the haproxy
router, load during switches. Every test uses its own app (and endpoint)."""
from __future__ import annotations

import time

from conftest import (RELEASE, ROLLBACK, Load, endpoint_version, free_port, group_names, platform_scenario,
                      instance_names, release_vars, traffic)


def test_release_then_same_image_is_a_no_op(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    first = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port))
    assert first.rc == 0, first.stderr
    assert endpoint_version(port)["message"] == "r1"
    groups = group_names(ansible, app)
    assert groups == ["%s-prod-v001" % app]
    before = instance_names(app)
    assert len(before) == 2

    again = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port))
    assert again.rc == 0 and again.changed == 0
    assert instance_names(app) == before


def test_release_under_load_drops_nothing_and_keeps_the_old_group_warm(
        ansible, registry, release_images, apps, workdir):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    old_instances = instance_names(app)
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        run = ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2"))
        time.sleep(0.5)
    assert run.rc == 0, run.stderr
    assert load.report["failed"] == 0, load.report
    assert set(load.report["versions"]) == {"1", "2"} and load.report["requests"] > 50
    assert endpoint_version(port)["message"] == "r2"
    ep = traffic(ansible, app)
    old, new = "%s-prod-v001" % app, "%s-prod-v002" % app
    assert ep["enabled"] == [new]
    assert ep["groups"][old]["weight"] == 0 and ep["groups"][old]["healthy"] == 2   # disabled, running, warm
    assert set(old_instances) < set(instance_names(app))


def test_rollback_is_quick_and_needs_no_new_instance(ansible, registry, release_images, apps, workdir):
    app, port = apps(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2")).rc == 0
    instances = instance_names(app)
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        started = time.monotonic()
        run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod"})
        took = time.monotonic() - started
    assert run.rc == 0, run.stderr
    assert load.report["failed"] == 0
    assert endpoint_version(port)["message"] == "r1"
    assert instance_names(app) == instances            # nothing started: the old group was warm
    print("rollback playbook took %.2fs" % took)

    # Rolling back again goes to the group that carried traffic before: version 2.
    assert ansible.playbook(ROLLBACK, {"app": app, "stack": "prod"}).rc == 0
    assert endpoint_version(port)["message"] == "r2"


def test_rollback_recreates_a_destroyed_group_from_its_recorded_image(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    for image, extra in (("relweb:1", {}), ("relweb:2", {"release_highlander": True})):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, port, **extra))
        assert run.rc == 0, [r.get("msg") for n in ("Fail with the reason",) for r in run.results(n)] or run.stderr
    assert group_names(ansible, app) == ["%s-prod-v002" % app]
    run = ansible.playbook(ROLLBACK, {"app": app, "stack": "prod", "catalog_registry": registry["address"]})
    assert run.rc == 0, run.stderr
    assert "(recreated from" in run.result("Report the rollback")["msg"]
    assert endpoint_version(port)["message"] == "r1"


def test_retention_keeps_the_newest_groups(ansible, registry, release_images, apps):
    app, port = apps(), free_port()
    for image in ("relweb:1", "relweb:2", "relweb:3"):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, port, release_keep=2))
        assert run.rc == 0, run.stderr
    assert group_names(ansible, app) == ["%s-prod-v002" % app, "%s-prod-v003" % app]
    ep = traffic(ansible, app)
    assert sorted(ep["groups"]) == ["%s-prod-v002" % app, "%s-prod-v003" % app]   # v001 left the router too
    assert endpoint_version(port)["message"] == "r3"


def test_two_stacks_side_by_side(ansible, registry, release_images, apps):
    app, p_prod, p_acme = apps(), free_port(), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", p_prod)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2", p_acme, stack="acme")).rc == 0
    assert endpoint_version(p_prod)["message"] == "r1" and endpoint_version(p_acme)["message"] == "r2"
    prod_instances = instance_names(app, "prod")

    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:3", stack="acme")).rc == 0
    assert ansible.playbook(ROLLBACK, {"app": app, "stack": "acme"}).rc == 0
    assert endpoint_version(p_acme)["message"] == "r2"
    assert endpoint_version(p_prod)["message"] == "r1"
    assert instance_names(app, "prod") == prod_instances


def test_the_platform_scenario_on_podman(ansible, registry, release_images, apps, workdir):
    """The scenario every real platform passes (conftest.platform_scenario), on podman."""
    took = platform_scenario(ansible, registry, workdir, apps(), [("relweb:1", "r1"), ("relweb:2", "r2")],
                             platform="podman")
    print("podman scenario: %s" % took)
