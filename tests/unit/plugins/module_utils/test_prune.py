"""Pure logic of pruning: durations, references and the plan (which versions go, and why the others stay)."""
from __future__ import annotations

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _prune
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

NOW = 2_000_000_000.0
DAY = 86400


def d(n):
    return "sha256:" + ("%x" % n).rjust(64, "0")


def iso(epoch):
    import datetime
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def v(tag, digest, age_days=30, parent=None):
    return {"tag": tag, "digest": digest, "created": iso(NOW - age_days * DAY), "parent_digest": parent}


def by_version(entries):
    return {(e["repository"], e["version"]): e for e in entries}


@pytest.mark.parametrize("given,seconds", [
    (0, 0), (3600, 3600), ("604800", 604800), ("7d", 7 * DAY), ("12h", 43200), ("1d12h", 1.5 * DAY),
    ("90m", 5400), ("2w", 14 * DAY), ("45s", 45), (" 7D ", 7 * DAY), ("0.5h", 1800)])
def test_parse_age(given, seconds):
    assert _prune.parse_age(given) == seconds


@pytest.mark.parametrize("bad", ["7 days", "d", "7x", "-1", -5, "", None, True, "7d junk"])
def test_parse_age_refuses(bad):
    with pytest.raises(ImmutableInfraError, match="min_age"):
        _prune.parse_age(bad)


def test_parse_time():
    assert _prune.parse_time("2033-05-18T03:33:20Z") == NOW
    assert _prune.parse_time("2033-05-18T03:33:20.999999999Z") == pytest.approx(NOW + 0.999999)
    assert _prune.parse_time("2033-05-18T05:33:20+02:00") == NOW
    assert _prune.parse_time("yesterday") is None
    assert _prune.parse_time(None) is None


def test_human_age():
    assert _prune.human_age(3 * DAY + 4 * 3600 + 5) == "3d4h"
    assert _prune.human_age(40) == "40s"
    assert _prune.human_age(0) == "0s"


def test_channel_references_head_and_recent_history():
    channels = {"prod": {"digest": d(5), "history": [{"seq": i, "to": d(i)} for i in range(1, 6)]}}
    refs = _prune.channel_references("web", channels, 2)
    assert sorted(refs) == [d(4), d(5)]
    assert refs[d(5)] == ["channel prod of web (head)"]
    assert refs[d(4)] == ["channel prod of web (history move #4)"]
    assert sorted(_prune.channel_references("web", channels, 0)) == [d(5)]


def test_group_and_router_references():
    instances = [{"group": "web-prod-v001", "image_digest": d(1), "state": "running"},
                 {"group": "web-prod-v001", "image_digest": d(1), "state": "exited"},
                 {"group": "web-prod-v002", "image": "127.0.0.1:5000/web@" + d(2), "state": "running"},
                 {"group": None, "image_digest": d(9), "state": "running"}]
    refs = _prune.group_references("podman", instances)
    assert refs == {d(1): ["server group web-prod-v001 on podman (2 instance(s): exited, running)"],
                    d(2): ["server group web-prod-v002 on podman (1 instance(s): running)"]}
    routes = {"endpoints": {"web/prod": {"history": [
        {"groups": {"web-prod-v001": 100}, "images": {"web-prod-v001": "r/web@" + d(1)}},
        {"groups": {"web-prod-v002": 100}, "images": {"web-prod-v002": "r/web@" + d(2)}},
        {"groups": {"web-prod-v001": 100}, "images": {"web-prod-v001": "r/web@" + d(3)}}]}}}
    refs = _prune.router_references(routes)
    assert sorted(refs) == [d(1), d(2), d(3)]          # an older image of a group name counts too
    assert refs[d(2)] == ["router history of web/prod (rollback target web-prod-v002)"]


def test_plan_keeps_newest_and_young_and_deletes_the_rest():
    selected = {"web": [v(str(i), d(i), age_days=40 - i) for i in range(1, 11)]}
    entries = by_version(_prune.plan(selected, {}, {}, keep=3, min_age=20 * DAY, now=NOW))
    going = sorted(int(t) for (_r, t), e in entries.items() if e["delete"])
    assert going == [1, 2, 3, 4, 5, 6, 7]
    assert entries[("web", "10")]["reasons"] == ["keep-N: one of the 3 newest versions of web"]
    assert entries[("web", "1")]["reasons"] == []
    # keep=0 and min_age=0: only references keep anything.
    entries = _prune.plan(selected, {}, {d(4): ["channel x of web (head)"]}, keep=0, min_age=0, now=NOW)
    assert [e["version"] for e in entries if not e["delete"]] == ["4"]
    # Young ones stay, with their age in the reason.
    entries = by_version(_prune.plan(selected, {}, {}, keep=0, min_age=31.5 * DAY, now=NOW))
    assert not entries[("web", "9")]["delete"]
    assert entries[("web", "9")]["reasons"] == ["age: 30d23h old, younger than min_age 31d12h"]
    assert entries[("web", "8")]["delete"]


def test_unknown_creation_time_stays():
    selected = {"web": [dict(v("1", d(1)), created=None), dict(v("2", d(2)), created="garbage")]}
    entries = _prune.plan(selected, {}, {}, keep=0, min_age=0, now=NOW)
    assert not any(e["delete"] for e in entries)
    assert entries[0]["reasons"] == ["age: creation time unknown (None)"]


def test_parents_stay_transitively_across_repositories():
    base = [v("1", d(1)), v("2", d(2)), v("3", d(3))]
    mid = [v("1", d(11), parent=d(1)), v("2", d(12), parent=d(2))]
    app = [v("1", d(21), parent=d(11)), v("2", d(22), parent=d(12))]
    refs = {d(21): ["server group app-prod-v001 on podman (1 instance(s): running)"]}
    entries = by_version(_prune.plan({"base": base, "mid": mid, "app": app}, {}, refs, keep=0, min_age=0, now=NOW))
    assert not entries[("app", "1")]["delete"]
    assert entries[("mid", "1")]["reasons"] == ["parent of app:1"]
    assert entries[("base", "1")]["reasons"] == ["parent of mid:1"]
    assert all(entries[k]["delete"] for k in (("base", "2"), ("base", "3"), ("mid", "2"), ("app", "2")))


def test_versions_of_repositories_not_pruned_keep_their_parents():
    base = [v("1", d(1)), v("2", d(2))]
    others = {"app": [v("7", d(21), parent=d(1))]}
    entries = by_version(_prune.plan({"base": base}, others, {}, keep=0, min_age=0, now=NOW))
    assert entries[("base", "1")]["reasons"] == ["parent of app:7"]
    assert entries[("base", "2")]["delete"]


def test_a_kept_parent_chain_is_not_broken_by_keep_n_or_age_of_the_child():
    base = [v("1", d(1)), v("2", d(2))]
    app = [v("1", d(21), parent=d(1), age_days=1)]
    entries = by_version(_prune.plan({"base": base, "app": app}, {}, {}, keep=0, min_age=7 * DAY, now=NOW))
    assert entries[("base", "1")]["reasons"] == ["parent of app:1"]
    assert entries[("base", "2")]["delete"]


def test_tags_sharing_a_digest_are_one_version():
    selected = {"web": [v("1", d(1)), v("latest", d(1)), v("2", d(2)), v("3", d(3))]}
    entries = _prune.plan(selected, {}, {}, keep=1, min_age=0, now=NOW)
    assert [(e["version"], e["tags"], e["delete"]) for e in entries] == [
        ("2", ["2"], True), ("3", ["3"], True), ("latest", ["1", "latest"], False)]


def test_a_digest_kept_in_one_repository_stays_in_the_other():
    selected = {"a": [v("1", d(1))], "b": [v("1", d(1)), v("2", d(2))]}
    entries = by_version(_prune.plan(selected, {}, {}, keep=1, min_age=0, now=NOW))
    assert not entries[("b", "1")]["delete"] or not entries[("a", "1")]["delete"]
    assert not entries[("a", "1")]["delete"] and not entries[("b", "1")]["delete"]


class FakeLifecycle:
    """Stands in for the registry (the thing under test is the plan and its order of reads and deletes)."""

    registry = "127.0.0.1:5000"

    def __init__(self, repos, channels=None):
        self.repos, self.channels_ = repos, channels or {}
        self.deleted = []

    def repositories(self):
        return sorted(self.repos)

    def describe_all(self, name):
        return {"versions": self.repos[name], "channels": self.channels_.get(name, {})}

    def delete_version(self, name, digest, check_mode=False):
        if not check_mode:
            self.deleted.append((name, digest))


class FakePlatform:
    def __init__(self, instances=None, error=None):
        self.instances, self.error = instances or [], error

    def list_instances(self):
        if self.error:
            raise ImmutableInfraError(self.error)
        return self.instances


def test_prune_check_mode_deletes_nothing_and_apply_deletes():
    lc = FakeLifecycle({"web": [v(str(i), d(i)) for i in range(1, 5)]}, {"web": {"prod": {"digest": d(2), "history": []}}})
    res = _prune.prune(lc, [("podman", FakePlatform())], None, keep=1, min_age=0, check_mode=True, now=NOW)
    assert lc.deleted == [] and res["changed"]
    assert [e["action"] for e in res["versions"]] == ["would_delete", "kept", "would_delete", "kept"]
    res = _prune.prune(lc, [("podman", FakePlatform())], None, keep=1, min_age=0, now=NOW)
    assert lc.deleted == [("web", d(1)), ("web", d(3))]
    assert res["summary"] == {"versions": 4, "deleted": 2, "kept": 2}


def test_unreadable_platform_refuses():
    lc = FakeLifecycle({"web": [v("1", d(1)), v("2", d(2))]})
    with pytest.raises(ImmutableInfraError, match="cannot read the server groups on platform libvirt"):
        _prune.prune(lc, [("podman", FakePlatform()), ("libvirt", FakePlatform(error="virsh failed"))], None,
                     keep=0, min_age=0, now=NOW)
    assert lc.deleted == []


def test_unknown_repository_and_bad_numbers():
    lc = FakeLifecycle({"web": []})
    with pytest.raises(ImmutableInfraError, match="unknown repository nope"):
        _prune.prune(lc, [], None, repositories=["nope"], now=NOW)
    with pytest.raises(ImmutableInfraError, match="keep"):
        _prune.prune(lc, [], None, keep=-1, now=NOW)


def test_platform_options_are_checked():
    with pytest.raises(ImmutableInfraError, match="platform_options"):
        _prune.platforms_from(["podman"], {"vmware": {}})
    assert [n for n, _p in _prune.platforms_from(["podman"], {"podman": {"podman": "podman"}})] == ["podman"]
