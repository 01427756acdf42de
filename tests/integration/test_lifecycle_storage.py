"""Lifecycle storage against the real registry: records as OCI artifacts beside
the versions (read back through the API and with skopeo), channel history,
racing moves from two processes, refusals that write nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import TOP, _collection_import_path, push_test_image, tags

_collection_import_path()
from ansible_collections.immutable.infra.plugins.module_utils import _lifecycle as lc  # noqa: E402
from ansible_collections.immutable.infra.plugins.module_utils._catalog import Catalog  # noqa: E402
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError  # noqa: E402


@pytest.fixture
def state(env, monkeypatch):
    """This process's lock files under the session's state dir (as modules see it)."""
    monkeypatch.setenv("IMMUTABLE_INFRA_STATE_DIR", env["IMMUTABLE_INFRA_STATE_DIR"])
    return env["IMMUTABLE_INFRA_STATE_DIR"]


@pytest.fixture
def repo(registry):
    """A fresh repository with versions 1..3; {"name", "digests": {tag: digest}, "life"}."""
    name = "lc-%s" % uuid.uuid4().hex[:8]
    digests = {str(v): push_test_image(registry, name, v) for v in (1, 2, 3)}
    return {"name": name, "digests": digests, "life": lc.Lifecycle(registry["address"])}


def skopeo(registry, name, tag, *flags):
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false"] + list(flags)
                          + ["docker://%s/%s:%s" % (registry["address"], name, tag)],
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)


def test_records_round_trip_and_standard_tools_read_them(registry, repo, state):
    life, name, d = repo["life"], repo["name"], repo["digests"]
    assert skopeo(registry, name, "2")["Digest"] == d["2"]        # our digests are the registry's
    record = life.record_test(name, d["2"], {"status": "passed", "test_digest": "sha256:" + "1" * 64,
                                             "summary": {"passed": 3, "failed": 0}, "platform": "podman", "by": "ci"})
    again = life.record_test(name, d["2"], {"status": "failed", "summary": {"passed": 2, "failed": 1}})
    assert again["runs"][0]["status"] == "passed" and "runs" not in again["runs"][0]
    assert life.test_result(name, d["2"]) == again
    rev, changed = life.revoke(name, d["3"], "CVE-2026-1", "alice")
    assert changed and life.revocation(name, d["3"]) == rev
    assert life.revoke(name, d["3"], "other reason", "bob") == (rev, False)
    before, after = life.move_channel(name, "dev", d["1"], "alice", reason="first")
    assert before is None and after["digest"] == d["1"] and after["history"][0]["seq"] == 1

    idx = life.index(name)
    assert idx["versions"] == ["1", "2", "3"] and idx["channels"] == ["dev"]
    assert set(idx["tested"]) == {d["2"]} and set(idx["revoked"]) == {d["3"]}
    # The catalog's versions skip the record tags; they are tags all the same.
    assert [v["tag"] for v in Catalog(registry["address"]).versions(name)] == ["1", "2", "3"]
    assert lc.record_tag(d["2"], lc.TEST_SUFFIX) in tags(registry, name)

    # Standard tools: the manifest (artifactType, subject, annotations) and the record as the config.
    raw = skopeo(registry, name, "channel.dev", "--raw")
    assert raw["artifactType"] == lc.MEDIA_CHANNEL and raw["config"]["mediaType"] == lc.MEDIA_CHANNEL
    assert raw["subject"]["digest"] == d["1"] and raw["layers"][0]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert raw["annotations"]["org.opencontainers.image.created"] == after["history"][0]["time"]
    assert skopeo(registry, name, "channel.dev", "--config", "--raw") == after
    assert skopeo(registry, name, lc.record_tag(d["3"], lc.REVOKED_SUFFIX), "--config", "--raw")["reason"] == "CVE-2026-1"

    assert life.unrevoke(name, d["3"]) is True and life.revocation(name, d["3"]) is None
    assert life.unrevoke(name, d["3"]) is False


def test_channel_history_across_moves(repo, state):
    life, name, d = repo["life"], repo["name"], repo["digests"]
    life.move_channel(name, "prod", d["1"], "a")
    life.move_channel(name, "prod", d["2"], "b", reason="next", approved_by="boss")
    before, after = life.move_channel(name, "prod", d["1"], "c", action="rollback", expect=d["2"])
    same = life.move_channel(name, "prod", d["1"], "d")
    assert same == (after, after)                                       # no-op move writes nothing
    hist = life.channel(name, "prod")["history"]
    assert [(h["seq"], h["from"], h["to"], h["action"], h["by"]) for h in hist] == [
        (1, None, d["1"], "promote", "a"), (2, d["1"], d["2"], "promote", "b"), (3, d["2"], d["1"], "rollback", "c")]
    assert hist[1]["approved_by"] == "boss" and hist[1]["to_version"] == "2"
    assert lc.channel_targets(after) == [d["1"], d["2"]]
    assert life.resolve_channel(name, "prod")["tag"] == "1"


def test_expect_mismatch_writes_nothing(registry, repo, state):
    life, name, d = repo["life"], repo["name"], repo["digests"]
    _before, after = life.move_channel(name, "staging", d["1"], "a")
    head = life.client.head(name, "channel.staging")
    with pytest.raises(ImmutableInfraError, match="moved meanwhile.*%s" % d["2"]):
        life.move_channel(name, "staging", d["3"], "b", expect=d["2"])
    assert life.client.head(name, "channel.staging") == head and life.channel(name, "staging") == after
    # a move decided on "no channel yet" is refused once another run has created it
    with pytest.raises(ImmutableInfraError, match="moved meanwhile"):
        life.move_channel(name, "staging", d["3"], "b", expect=lc.NEW_CHANNEL)
    assert life.client.head(name, "channel.staging") == head
    _b, created = life.move_channel(name, "qa", d["3"], "b", expect=lc.NEW_CHANNEL)
    assert created["digest"] == d["3"] and len(created["history"]) == 1
    # check mode computes the move and writes nothing either
    _b, would = life.move_channel(name, "staging", d["2"], "b", expect=d["1"], check_mode=True)
    assert would["digest"] == d["2"] and life.client.head(name, "channel.staging") == head


RACER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
Lifecycle(sys.argv[2]).move_channel(sys.argv[3], "race", sys.argv[4], sys.argv[5])
"""


def test_two_racing_moves_from_two_processes_lose_nothing(registry, repo, state):
    name, d = repo["name"], repo["digests"]
    repo["life"].move_channel(name, "race", d["1"], "setup")
    argv = [sys.executable, "-c", RACER, os.path.join(TOP, ".cache", "collections"), registry["address"], name]
    procs = [subprocess.Popen(argv + [d[v], "racer-" + v], env=dict(os.environ), stderr=subprocess.PIPE, text=True)
             for v in ("2", "3")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    record = repo["life"].channel(name, "race")
    hist = record["history"]
    assert [h["seq"] for h in hist] == [1, 2, 3]
    assert sorted(h["by"] for h in hist[1:]) == ["racer-2", "racer-3"]
    assert hist[2]["from"] == hist[1]["to"]                               # the second saw the first
    assert record["digest"] == hist[2]["to"] and record["digest"] in (d["2"], d["3"])


def test_unknown_names_and_unreachable_registry(registry, repo, state):
    life, name, d = repo["life"], repo["name"], repo["digests"]
    with pytest.raises(ImmutableInfraError, match="unknown image version '9' of %s.*versions: 1, 2, 3" % name):
        life.version(name, "9")
    with pytest.raises(ImmutableInfraError, match="unknown image version sha256:0{64}"):
        life.move_channel(name, "dev", "sha256:" + "0" * 64, "a")
    with pytest.raises(ImmutableInfraError, match="unknown image repository 'nope-%s'" % name):
        life.version("nope-" + name, "1")
    life.move_channel(name, "dev", d["1"], "a")
    with pytest.raises(ImmutableInfraError, match="unknown channel 'prod' of image %s: existing channels: dev" % name):
        life.resolve_channel(name, "prod")
    with pytest.raises(ImmutableInfraError, match="invalid channel name 'Prod'"):
        life.move_channel(name, "Prod", d["1"], "a")
    with pytest.raises(ImmutableInfraError, match="reserved for lifecycle records"):
        life.version(name, "channel.dev")
    dead = lc.Lifecycle("127.0.0.1:1")
    with pytest.raises(ImmutableInfraError, match="image registry 127.0.0.1:1 is not reachable"):
        dead.index(name)


def test_revoked_channel_target_and_latest_good(repo, state):
    life, name, d = repo["life"], repo["name"], repo["digests"]
    for v in ("1", "2", "3"):
        life.move_channel(name, "prod", d[v], "a")
    life.revoke(name, d["3"], "broken TLS", "sec")
    with pytest.raises(ImmutableInfraError, match="points at a revoked version.*:3.*broken TLS.*revoked by sec"):
        life.resolve_channel(name, "prod")
    assert life.resolve_channel(name, "prod", allow_revoked=True)["revoked"]["reason"] == "broken TLS"
    assert life.latest_good(name, "prod")["tag"] == "2"
    life.revoke(name, d["2"], "also", "sec", cascade_from=d["3"])
    assert life.latest_good(name, "prod")["tag"] == "1"


def image_info(ansible, registry, **args):
    return ansible.task("immutable.infra.image_info", dict(args, registry=registry["address"]))


def test_image_info_channels_latest_good_and_filters(ansible, registry, repo, state):
    life, name, d = repo["life"], repo["name"], repo["digests"]
    for v in ("1", "2", "3"):
        life.move_channel(name, "prod", d[v], "a")
    life.move_channel(name, "dev", d["3"], "a")
    life.record_test(name, d["2"], {"status": "passed", "summary": {"passed": 1}})
    life.revoke(name, d["3"], "leaks memory", "sec")

    rc, res = image_info(ansible, registry, name=name)
    assert rc == 0, res
    by_tag = {v["tag"]: v for v in res["versions"]}
    assert list(by_tag) == ["1", "2", "3"]
    assert by_tag["3"]["channels"] == ["dev", "prod"] and by_tag["3"]["revoked"]["reason"] == "leaks memory"
    assert by_tag["2"]["test"]["status"] == "passed" and by_tag["2"]["revoked"] is None and by_tag["1"]["test"] is None
    assert by_tag["1"]["parent_channel"] is None and by_tag["1"]["out_of_date"] is None and res["out_of_date"] == []
    assert [h["to_version"] for h in res["channels"]["prod"]["history"]] == ["1", "2", "3"]
    assert res["channels"]["prod"]["revoked"]["by"] == "sec"
    assert any("channel prod of image %s points at revoked version 3" % name in w for w in res["warnings"]), res
    assert any("channel dev" in w for w in res["warnings"])

    rc, res = image_info(ansible, registry, name=name, channel="prod")
    assert rc == 0 and [v["tag"] for v in res["versions"]] == ["3"] and res["channel"]["version"] == "3"
    rc, res = image_info(ansible, registry, name=name, channel="prod", latest_good=True)
    assert rc == 0 and [v["tag"] for v in res["versions"]] == ["2"], res       # skips the revoked head
    rc, res = image_info(ansible, registry, name=name, channel="dev", latest_good=True)
    assert rc == 0 and res["versions"] == [] and "no version in its history" in " ".join(res["warnings"])
    rc, res = image_info(ansible, registry, name=name, revoked=False)
    assert [v["tag"] for v in res["versions"]] == ["1", "2"]
    rc, res = image_info(ansible, registry, name=name, revoked=True)
    assert [v["tag"] for v in res["versions"]] == ["3"]
    rc, res = image_info(ansible, registry, name=name, digest=d["2"])
    assert [v["tag"] for v in res["versions"]] == ["2"] and res["versions"][0]["channels"] == []
    rc, res = image_info(ansible, registry, name=name, version="9")
    assert rc == 0 and res["versions"] == []

    rc, res = image_info(ansible, registry, name=name, channel="production")
    assert rc != 0 and "unknown channel 'production' of image %s: existing channels: dev, prod" % name in res["msg"]
    rc, res = image_info(ansible, registry, name="nope-" + name, channel="prod")
    assert rc != 0 and "unknown image repository 'nope-%s'" % name in res["msg"]
    rc, res = image_info(ansible, registry, name=name, latest_good=True)
    assert rc != 0 and "latest_good needs a channel" in res["msg"]


def test_image_info_out_of_date_when_the_parent_channel_moves_on(ansible, registry, repo, state):
    life, parent, d = repo["life"], repo["name"], repo["digests"]
    life.move_channel(parent, "prod", d["1"], "a")
    child = "lc-child-%s" % uuid.uuid4().hex[:8]
    labels = {"org.opencontainers.image.base.digest": d["1"], lc.LABEL_PARENT_CHANNEL: "prod",
              "org.opencontainers.image.base.name": "%s/%s" % (registry["address"], parent)}
    push_test_image(registry, child, "1", labels)
    push_test_image(registry, child, "2", {})                      # no parent channel: never out of date
    rc, res = image_info(ansible, registry, name=child)
    assert rc == 0 and res["out_of_date"] == [] and res["versions"][0]["parent_channel"] == "prod"

    life.move_channel(parent, "prod", d["2"], "a")
    rc, res = image_info(ansible, registry, name=child)
    assert rc == 0 and [v["tag"] for v in res["out_of_date"]] == ["1"], res
    assert res["out_of_date"][0]["out_of_date"] == {
        "parent_name": "%s/%s" % (registry["address"], parent), "parent_channel": "prod", "parent_digest": d["1"],
        "parent_version": "1", "channel_digest": d["2"], "channel_version": "2", "newer": True}
    assert res["versions"][1]["out_of_date"] is None
    assert [c["tag"] for c in life.children(d["1"])] == ["1"] and life.descendants(d["3"]) == []

    life.move_channel(parent, "prod", d["1"], "a", action="rollback")
    rc, res = image_info(ansible, registry, name=child)
    assert rc == 0 and res["out_of_date"] == []


def test_delete_version_takes_its_records_and_spares_channel_heads(registry, repo, state):
    life, name, d = repo["life"], repo["name"], repo["digests"]
    life.move_channel(name, "prod", d["1"], "a")
    life.record_test(name, d["2"], {"status": "failed"})
    life.revoke(name, d["2"], "bad", "sec")
    with pytest.raises(ImmutableInfraError, match="is the target of channel prod; move the channel first"):
        life.delete_version(name, d["1"])
    expected = [lc.record_tag(d["2"], ".test"), lc.record_tag(d["2"], ".revoked"), "2"]
    assert life.delete_version(name, d["2"], check_mode=True) == expected
    assert sorted(tags(registry, name)) == sorted(["1", "2", "3", "channel.prod"] + expected[:2])
    assert life.delete_version(name, d["2"]) == expected
    assert sorted(tags(registry, name)) == ["1", "3", "channel.prod"]
    with pytest.raises(ImmutableInfraError, match="unknown image version"):
        life.version(name, digest=d["2"])


def test_descendants_across_repositories(registry, repo, state):
    life, base, d = repo["life"], repo["name"], repo["digests"]
    mid, leaf = "lc-mid-%s" % uuid.uuid4().hex[:8], "lc-leaf-%s" % uuid.uuid4().hex[:8]
    m1 = push_test_image(registry, mid, "1", {"org.opencontainers.image.base.digest": d["1"]})
    push_test_image(registry, leaf, "1", {"org.opencontainers.image.base.digest": m1})
    push_test_image(registry, leaf, "2", {"org.opencontainers.image.base.digest": d["2"]})
    assert [(v["repository"], v["tag"]) for v in life.children(d["1"])] == [("%s/%s" % (registry["address"], mid), "1")]
    assert sorted((v["repository"].split("/", 1)[1], v["tag"]) for v in life.descendants(d["1"])) == [(leaf, "1"), (mid, "1")]
