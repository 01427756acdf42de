"""Pure logic of the lifecycle storage: the tag scheme, the index of a tags
list, channel history and targets, the out-of-date decision, image_info filters."""
from __future__ import annotations

import os

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _lifecycle as lc
from ansible_collections.immutable.infra.plugins.module_utils._catalog import validate_version
from ansible_collections.immutable.infra.plugins.module_utils._channel_lock import ChannelLock, channel_lock_path
from ansible_collections.immutable.infra.plugins.module_utils._image_info import select
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

A, B, C = ("sha256:" + c * 64 for c in "abc")


def test_record_tags_round_trip():
    assert lc.record_tag(A, lc.TEST_SUFFIX) == "sha256-" + "a" * 64 + ".test"
    assert lc.parse_record_tag(lc.record_tag(A, lc.TEST_SUFFIX)) == ("test", A)
    assert lc.parse_record_tag(lc.record_tag(B, lc.REVOKED_SUFFIX)) == ("revoked", B)
    assert lc.parse_record_tag(lc.channel_tag("production")) == ("channel", "production")
    assert lc.parse_record_tag("12") is None
    assert all(lc.is_record_tag(t) for t in ("channel.dev", lc.record_tag(A, ".test"), "sha256-junk"))
    assert not any(lc.is_record_tag(t) for t in ("1", "v2", "latest", "sha256", "channel"))


@pytest.mark.parametrize("tag", ["channel.dev", "sha256-" + "a" * 64 + ".test", "sha256-x"])
def test_record_tags_are_never_versions(tag):
    with pytest.raises(ImmutableInfraError, match="reserved for lifecycle records"):
        validate_version(tag)


@pytest.mark.parametrize("name", ["Prod", "", "-dev", "a" * 64, "dev.x", None, 3])
def test_bad_channel_names(name):
    with pytest.raises(ImmutableInfraError, match="invalid channel name"):
        lc.channel_tag(name)


def test_split_tags():
    tags = ["10", "2", "channel.prod", lc.record_tag(A, ".test"), lc.record_tag(B, ".revoked"), "1", "channel.dev",
            "sha256-orphan", lc.record_tag(A, ".sbom"), lc.record_tag(B, ".scan")]
    assert lc.split_tags(tags) == {"versions": ["1", "2", "10"], "channels": ["dev", "prod"],
                                   "tested": {A: lc.record_tag(A, ".test")}, "revoked": {B: lc.record_tag(B, ".revoked")},
                                   "sbom": {A: lc.record_tag(A, ".sbom")}, "scanned": {B: lc.record_tag(B, ".scan")}}


def facts(digest, tag, **labels):
    return {"digest": digest, "tag": tag, "labels": labels, "parent_digest": labels.pop("parent", None),
            "parent_name": "r/base"}


def test_channel_history_appends_and_targets_are_head_first():
    moment = ("2026-11-30T10:00:00Z", 1.0)
    first = lc.channel_entry(None, "prod", "web", facts(A, "1"), "a", "promote", None, None, moment)
    second = lc.channel_entry(first, "prod", "web", facts(B, "2"), "b", "promote", "why", "boss", moment)
    third = lc.channel_entry(second, "prod", "web", facts(A, "1"), "c", "rollback", None, None, moment)
    assert [(h["seq"], h["from"], h["to"]) for h in third["history"]] == [(1, None, A), (2, A, B), (3, B, A)]
    assert third["digest"] == A and third["version"] == "1" and first["history"] == third["history"][:1]
    assert second["history"][1]["approved_by"] == "boss" and second["history"][1]["from_version"] == "1"
    assert lc.channel_targets(third) == [A, B] and lc.channel_targets(None) == []


def parent_record(head, head_version, history):
    return {"digest": head, "version": head_version,
            "history": [{"to": d, "to_version": v} for d, v in history]}


def test_out_of_date_decision():
    child = facts(C, "5", parent=A, **{lc.LABEL_PARENT_CHANNEL: "prod"})
    assert lc.stale_parent(child, parent_record(A, "1", [(A, "1")]), "r/base") is None          # still the target
    assert lc.stale_parent(child, None, "r/base") is None                                      # channel gone
    moved = lc.stale_parent(child, parent_record(B, "2", [(A, "1"), (B, "2")]), "r/base")
    assert moved == {"parent_name": "r/base", "parent_channel": "prod", "parent_digest": A, "parent_version": "1",
                     "channel_digest": B, "channel_version": "2", "newer": True}
    back = lc.stale_parent(child, parent_record(B, "1", [(A, "10"), (B, "1")]), "r/base")
    assert back["newer"] is False                                                               # moved back
    assert lc.stale_parent(facts(C, "5", parent=A), parent_record(B, "2", []), "r/base") is None  # no parent channel


def test_revoked_message_names_reason_who_and_when():
    msg = lc.revoked_message("web", {"tag": "3", "digest": A},
                             {"version": "3", "subject": A, "reason": "CVE", "by": "sec", "time": "T", "cascade_from": B})
    assert msg == "image version web:3 (%s) is revoked: CVE (revoked by sec at T, with its ancestor %s)" % (A, B)


def test_actor():
    assert lc.actor("awx-admin") == "awx-admin"
    assert "@" in lc.actor() and lc.actor(None) == lc.actor("")


def test_check_digest():
    assert lc.check_digest(A) == A
    with pytest.raises(ImmutableInfraError, match="invalid digest 'sha256:abc'"):
        lc.check_digest("sha256:abc")


def test_image_info_select():
    versions = [{"tag": "1", "digest": A, "fingerprint": "f", "revoked": None},
                {"tag": "2", "digest": B, "fingerprint": "g", "revoked": {"reason": "x"}}]
    assert select(versions) == versions
    assert select(versions, revoked=True) == versions[1:] and select(versions, revoked=False) == versions[:1]
    assert select(versions, target=A) == versions[:1] and select(versions, digest=B, fingerprint="f") == []


def test_channel_lock_times_out_naming_the_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("IMMUTABLE_INFRA_STATE_DIR", str(tmp_path))
    path = channel_lock_path("127.0.0.1:5000", "team/web", "prod")
    assert path == os.path.join(str(tmp_path), "channels", "127.0.0.1:5000", "team/web", "prod.lock")
    with ChannelLock("127.0.0.1:5000", "team/web", "prod"):
        # flock locks belong to the open file: a second open in this process conflicts like another process.
        with pytest.raises(ImmutableInfraError, match=r"is being moved by another run \(pid %d" % os.getpid()):
            with ChannelLock("127.0.0.1:5000", "team/web", "prod", timeout=0.2):
                pass
        with ChannelLock("127.0.0.1:5000", "team/web", "dev", timeout=0.2):
            pass
    with ChannelLock("127.0.0.1:5000", "team/web", "prod", timeout=0.2):
        pass
