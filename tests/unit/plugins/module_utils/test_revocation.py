"""Revocation and ancestry policy (_revocation, _ancestry) over an in-memory
lifecycle, and the two places the release engine asks it: a server group's
image and a rollback's target (the failed-release revert never asks)."""
from __future__ import annotations

import pytest
from test_conformance import IMAGES, KEY, FakePlatform, FakeRouter, params, traffic_params

from ansible_collections.immutable.infra.plugins.module_utils import _ancestry, _revocation
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import LABEL_CHANNEL, LABEL_PARENT_CHANNEL
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._server_group import converge
from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import apply

REG = "127.0.0.1:5000"


def digest(n):
    return "sha256:" + ("%x" % n) * 64 if n < 16 else "sha256:" + ("%02x" % n) * 32


def facts(name, tag, d, parent=None, parent_name=None, labels=None, fmt="container"):
    return {"version": tag, "tag": tag, "digest": d, "reference": "%s/%s@%s" % (REG, name, d),
            "repository": "%s/%s" % (REG, name), "parent_digest": parent, "parent_name": parent_name,
            "labels": dict(labels or {}), "format": fmt, "recipe": name}


class FakeLifecycle:
    """The Lifecycle calls the policy makes, kept in memory; every write is logged."""

    registry = REG

    def __init__(self, versions, channels=None):
        self.versions = versions                     # {(name, digest): facts}
        self.revoked, self.writes = {}, []
        self.channel_targets = dict(channels or {})  # {(name, channel): digest}

    def version(self, name, version=None, digest=None):
        for (n, d), f in self.versions.items():
            if n == name and (d == digest or f["tag"] == version):
                return dict(f)
        raise ImmutableInfraError("unknown image version %s of %s" % (version or digest, name))

    def descendants(self, d):
        out, todo = [], [d]
        while todo:
            parent = todo.pop(0)
            for f in self.versions.values():
                if f["parent_digest"] == parent and f not in out:
                    out.append(f)
                    todo.append(f["digest"])
        return out

    def revocation(self, name, d):
        return self.revoked.get((name, d))

    def revoke(self, name, d, reason, by, cascade_from=None, check_mode=False):
        if (name, d) in self.revoked:
            return self.revoked[(name, d)], False
        record = {"subject": d, "repository": name, "version": self.version(name, digest=d)["tag"], "reason": reason,
                  "by": by, "time": "2026-11-30T10:00:00Z", "cascade_from": cascade_from}
        if not check_mode:
            self.revoked[(name, d)] = record
            self.writes.append(("revoke", name, d))
        return record, True

    def unrevoke(self, name, d, check_mode=False):
        if (name, d) not in self.revoked:
            return False
        if not check_mode:
            del self.revoked[(name, d)]
            self.writes.append(("unrevoke", name, d))
        return True

    def resolve_channel(self, name, channel, allow_revoked=False):
        assert allow_revoked        # the policy refuses itself, with its own message
        return dict(self.version(name, digest=self.channel_targets[(name, channel)]), channel=channel)

    # ancestry
    def repositories(self):
        return sorted({n for n, _d in self.versions})

    def index(self, name):
        return {"versions": [f["tag"] for (n, _d), f in self.versions.items() if n == name]}

    def facts(self, name, ref, tag=None):
        return self.version(name, version=ref)

    def out_of_date(self, f, cache=None):
        parent = _revocation.parse_reference(f["parent_name"])["name"]
        now = self.channel_targets.get((parent, f["labels"].get(LABEL_PARENT_CHANNEL)))
        return None if now in (None, f["parent_digest"]) else {
            "parent_channel": f["labels"][LABEL_PARENT_CHANNEL], "parent_digest": f["parent_digest"], "channel_digest": now}


@pytest.fixture
def lineage():
    """base:1 <- web:1 <- api:1 (another repository), and an unrelated web:2 on base:2."""
    versions = {}
    for name, tag, d, parent, parent_name in (("base", "1", digest(1), None, None), ("base", "2", digest(2), None, None),
                                              ("web", "1", digest(3), digest(1), "base"),
                                              ("web", "2", digest(4), digest(2), "base"),
                                              ("api", "1", digest(5), digest(3), "web")):
        versions[(name, d)] = facts(name, tag, d, parent, parent_name and "%s/%s" % (REG, parent_name))
    return FakeLifecycle(versions)


def revoke_params(**kw):
    return dict({"name": "base", "version": "1", "digest": None, "reason": "CVE-1", "cascade": True, "state": "present"}, **kw)


def test_a_cascade_revokes_every_descendant_once_and_check_mode_writes_nothing(lineage):
    planned = _revocation.revoke(lineage, revoke_params(), "alice", check_mode=True)
    assert [(e["name"], e["version"], e["cascade_from"]) for e in planned["revoked"]] == [
        ("base", "1", None), ("web", "1", digest(1)), ("api", "1", digest(1))]
    assert planned["changed"] and "web:1 %s" % digest(3) in planned["diff"]["after"] and lineage.writes == []
    done = _revocation.revoke(lineage, revoke_params(), "alice")
    assert [e["name"] for e in done["revoked"]] == ["base", "web", "api"] and len(lineage.writes) == 3
    again = _revocation.revoke(lineage, revoke_params(), "alice")
    assert not again["changed"] and again["revoked"] == [] and len(lineage.writes) == 3
    assert lineage.revocation("web", digest(4)) is None          # web:2 is on base:2


def test_without_cascade_only_the_version_and_a_reason_is_required(lineage):
    with pytest.raises(ImmutableInfraError, match="needs a reason"):
        _revocation.revoke(lineage, revoke_params(reason=" "), "alice")
    done = _revocation.revoke(lineage, revoke_params(cascade=False), "alice")
    assert [e["name"] for e in done["revoked"]] == ["base"] and lineage.writes == [("revoke", "base", digest(1))]


def test_lifting_a_cascade_keeps_a_descendant_revoked_for_its_own_reason(lineage):
    lineage.revoke("web", digest(3), "its own bug", "bob")
    _revocation.revoke(lineage, revoke_params(), "alice")
    lifted = _revocation.revoke(lineage, revoke_params(state="absent", reason=None), "alice")
    assert [e["name"] for e in lifted["unrevoked"]] == ["base", "api"]
    assert lineage.revocation("web", digest(3))["reason"] == "its own bug"


def test_a_refusal_names_the_version_the_reason_who_and_when(lineage):
    _revocation.revoke(lineage, revoke_params(), "alice")
    with pytest.raises(ImmutableInfraError) as exc:
        _revocation.check_reference("%s/web@%s" % (REG, digest(3)), "cannot run web:1", lambda r: lineage)
    msg = exc.value.msg
    assert msg.startswith("cannot run web:1: image version web:1 (%s) is revoked: CVE-1" % digest(3))
    assert "revoked by alice at 2026-11-30T10:00:00Z" in msg and digest(1) in msg and "nothing was changed" in msg
    assert exc.value.details["revocation"]["reason"] == "CVE-1"
    _revocation.check_reference("%s/web:2" % REG, "x", lambda r: lineage)      # no digest: nothing to check


def test_usable_image_refuses_revoked_versions_and_channels_but_not_a_removal(lineage):
    lineage.channel_targets[("web", "production")] = digest(3)
    _revocation.revoke(lineage, revoke_params(), "alice")
    resolve = lineage.versions.__getitem__

    def by_tag(ref):
        return resolve(("web", digest(3 if ref.endswith("1") else 4)))
    with pytest.raises(ImmutableInfraError, match="cannot start web:1: image version web:1"):
        _revocation.usable_image(by_tag, lambda r: lineage, REG, doing="cannot start")("web:1")
    assert _revocation.usable_image(by_tag, lambda r: lineage, REG)("web:2")["digest"] == digest(4)
    assert _revocation.usable_image(by_tag, lambda r: lineage, REG, enforce=False)("web:1")["digest"] == digest(3)
    with pytest.raises(ImmutableInfraError, match="channel production of web: it points at a revoked version: "
                                                  "image version web:1"):
        _revocation.usable_image(by_tag, lambda r: lineage, REG, "production")("web")
    with pytest.raises(ImmutableInfraError, match="names a version, but channel production chooses it"):
        _revocation.usable_image(by_tag, lambda r: lineage, REG, "production")("web:1")
    lineage.channel_targets[("web", "production")] = digest(4)
    got = _revocation.usable_image(by_tag, lambda r: lineage, REG, "production")("%s/web" % REG)
    assert got["digest"] == digest(4) and got["channel"] == "production"


class SpecPlatform(FakePlatform):
    def create_instances(self, specs):
        self.specs = specs
        return super().create_instances(specs)


def test_a_group_released_by_channel_labels_its_instances_and_reports_channel_and_digest():
    platform = SpecPlatform()
    try:
        images = {"shop": dict(IMAGES["shop:1"], channel="production")}
        res = converge(platform, images.__getitem__, params(image="shop"))
        assert {s["labels"][LABEL_CHANNEL] for s in platform.specs} == {"production"}
        assert res["group"]["channel"] == "production" and res["group"]["image_digest"] == "sha256:01"
        again = converge(platform, images.__getitem__, params(image="shop"))
        assert not again["changed"] and again["group"]["name"] == res["group"]["name"]
    finally:
        platform.close()


def test_a_rollback_onto_a_revoked_group_is_refused_and_the_failed_release_revert_is_not():
    platform, router = FakePlatform(), FakeRouter()
    try:
        images = IMAGES.__getitem__
        old = converge(platform, images, params(image="shop:1"))["group"]["name"]
        apply(router, platform, traffic_params({old: 100}))
        new = converge(platform, images, params(image="shop:2"))["group"]["name"]
        asked = []

        def revoked_one(reference, doing):
            asked.append(reference)
            if reference == "reg/shop@sha256:01":
                raise ImmutableInfraError("%s: revoked" % doing)
        # A release of shop:2 that fails its window goes back to shop:1's group, revoked or not.
        router.traffic[new] = (10, 1)
        with pytest.raises(ImmutableInfraError, match="traffic went back to %s" % old):
            apply(router, platform, traffic_params({new: 100}, verify_seconds=30), check_target=revoked_one)
        assert asked == [] and router.load_routes()["endpoints"][KEY]["groups"] == {old: 100}
        router.traffic.pop(new)
        apply(router, platform, traffic_params({new: 100}), check_target=revoked_one)
        weights = router.weights()
        with pytest.raises(ImmutableInfraError, match="cannot roll shop/prod back to %s: revoked" % old):
            apply(router, platform, traffic_params({}, rollback=True), check_target=revoked_one)
        assert router.weights() == weights and router.load_routes()["endpoints"][KEY]["groups"][new] == 100
        # Destroyed, it would be recreated from the image the router recorded: refused as well.
        platform.destroy_instances([i["name"] for i in platform.list_instances(group=old)])
        with pytest.raises(ImmutableInfraError, match="cannot roll shop/prod back to %s: revoked" % old):
            apply(router, platform, traffic_params({}, rollback=True), check_target=revoked_one)
        assert apply(router, platform, traffic_params({}, rollback=True))["rollback"]["recreate"]
    finally:
        platform.close()


# ------------------------------------------------------------------ ancestry
def test_children_are_the_newest_versions_baked_on_the_parent_and_out_of_date_ones_get_a_rebake():
    versions = {}
    for name, tag, d, parent, labels in (("base", "1", digest(1), None, {}), ("base", "2", digest(2), None, {}),
                                         ("web", "1", digest(3), digest(1), {LABEL_PARENT_CHANNEL: "production"}),
                                         ("pinned", "1", digest(4), digest(1), {}),
                                         ("api", "1", digest(5), digest(1), {LABEL_PARENT_CHANNEL: "production"}),
                                         ("api", "2", digest(6), digest(9), {}),      # moved to another parent
                                         ("web-vm", "1", digest(7), digest(8), {LABEL_PARENT_CHANNEL: "production"})):
        parent_name = "%s/%s" % (REG, {"web-vm": "base-vm", "api": "base" if tag == "1" else "other"}.get(name, "base"))
        versions[(name, d)] = facts(name, tag, d, parent, parent_name if parent else None, labels,
                                    "vm" if name == "web-vm" else "container")
    lc = FakeLifecycle(versions, {("base", "production"): digest(2), ("base-vm", "production"): digest(8)})
    found = _ancestry.children(lc, "base", recipes={"web": {"recipe": "/srv/web", "variables": {"m": 1}}})
    assert [(c["name"], c["tag"], bool(c["out_of_date"])) for c in found] == [("pinned", "1", False), ("web", "1", True)]
    assert found[1]["rebake"] == {"recipe": "/srv/web", "name": "web", "only": ["container"], "parent": "%s/base" % REG,
                                  "parent_channel": "production", "variables": {"m": 1}, "var_files": []}
    lc.channel_targets[("base-vm", "production")] = digest(10)
    vm = _ancestry.children(lc, "base-vm")
    assert vm[0]["rebake"]["name"] == "web" and vm[0]["rebake"]["only"] == ["vm"] and vm[0]["rebake"]["recipe"] == "web"
    with pytest.raises(ImmutableInfraError, match="give the parent repository only"):
        _ancestry.children(lc, "base:1")
    with pytest.raises(ImmutableInfraError, match=r"recipes\[web\]: unknown key\(s\) vars"):
        _ancestry.children(lc, "base", recipes={"web": {"vars": {}}})
