"""Channels and gated promotion (issue 8 items 2 and 3) through playbooks/promote.yml and
immutable.infra.image_channel against the session's real registry. Versions are tiny images
pushed by push_test_image; test results and revocations are written with the Lifecycle API
(image_test and image_revoke are tested on their own). Every refusal must name its gate and
leave the registry exactly as it was."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import TOP, _collection_import_path, push_test_image, tags

PROMOTE = os.path.join(TOP, "playbooks", "promote.yml")
SOAK = 15
POLICY = {"dev": {"tested": True}, "staging": {"tested": True, "after": "dev"},
          "production": {"tested": True, "after": "staging", "min_soak": SOAK, "approval": True}}


def lifecycle(registry):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
    return Lifecycle(registry["address"])


@pytest.fixture
def repo(registry):
    """A fresh repository with versions 1, 2, 3: (name, {version: digest})."""
    name = "promo%s" % uuid.uuid4().hex[:6]
    return name, {v: push_test_image(registry, name, v) for v in ("1", "2", "3")}


def passed(lc, name, digest):
    lc.record_test(name, digest, {"status": "passed", "test_digest": "sha256:" + "0" * 64, "platform": "podman",
                                  "by": "it", "summary": {"passed": 3, "failed": 0, "errors": 0, "skipped": 0,
                                                          "seconds": 1.0, "failures": []}})


TOOK = []


def promote(ansible, registry, name, channel, check=False, diff=False, **kw):
    v = {"image": name, "channel": channel, "catalog_registry": registry["address"], "promote_policy": POLICY}
    v.update(kw)
    started = time.monotonic()
    run = ansible.playbook(PROMOTE, v, check=check, diff=diff)
    TOOK.append(time.monotonic() - started)
    return run


def moved(run):
    """The image_channel task's result."""
    found = [t["hosts"]["localhost"] for p in run.doc["plays"] for t in p["tasks"]
             if t["task"]["name"].startswith("Move channel")]
    assert found, "the channel task did not run: %s %s" % (failure(run), run.stderr[-2000:])
    return found[-1]


def failure(run):
    """The message of the task that failed, or None."""
    for play in run.doc["plays"]:
        for task in play["tasks"]:
            res = task["hosts"].get("localhost", {})
            if res.get("failed"):
                return res.get("msg")
    return None


def state(registry, lc, name):
    """Everything promotion could change: the tags and every channel record."""
    return tags(registry, name), lc.channels(name)


def refused(run, *words):
    msg = failure(run)
    assert run.rc != 0 and msg, (run.rc, run.stderr[-2000:])
    for w in words:
        assert w in msg, "%r not in %r" % (w, msg)
    return msg


def test_promote_through_every_gate_each_refusing_once(ansible, registry, repo):
    lc = lifecycle(registry)
    name, d = repo
    start = state(registry, lc, name)
    run = promote(ansible, registry, name, "dev", version="1")
    refused(run, "refused by gate tested:", "version 1 was never tested")
    assert [(g["name"], g["passed"]) for g in moved(run)["gates"]] == [("revoked", True), ("tested", False)]
    assert state(registry, lc, name) == start

    passed(lc, name, d["1"])
    start = state(registry, lc, name)
    refused(promote(ansible, registry, name, "staging", version="1"), "refused by gate after:",
            "channel dev does not exist yet: promote version 1 to dev first")
    assert state(registry, lc, name) == start

    plan = promote(ansible, registry, name, "dev", version="1", check=True, diff=True)
    assert plan.rc == 0 and moved(plan)["changed"] and moved(plan)["diff"] == {
        "before": {}, "after": {"repository": name, "channel": "dev", "digest": d["1"], "version": "1"}}
    assert state(registry, lc, name) == start                      # check mode wrote nothing

    run = promote(ansible, registry, name, "dev", version="1", promote_actor="alice", promote_reason="first")
    assert run.rc == 0, failure(run)
    res = moved(run)
    assert res["changed"] and res["before"] is None and res["channel"]["digest"] == d["1"]
    assert {k: res["move"][k] for k in ("seq", "by", "action", "from", "to", "to_version", "reason")} == {
        "seq": 1, "by": "alice", "action": "promote", "from": None, "to": d["1"], "to_version": "1", "reason": "first"}
    assert lc.channel(name, "dev") == res["channel"]
    again = promote(ansible, registry, name, "dev", version="1")
    assert again.rc == 0 and again.changed == 0 and moved(again)["move"] is None
    assert lc.channel(name, "dev") == res["channel"]

    run = promote(ansible, registry, name, "staging", from_channel="dev")
    assert run.rc == 0 and moved(run)["channel"]["digest"] == d["1"], failure(run)
    staged = moved(run)["move"]["epoch"]
    start = state(registry, lc, name)
    run = promote(ansible, registry, name, "production", from_channel="staging", promote_approved_by="bob")
    refused(run, "refused by gate min_soak:", "as the head of staging, needs %d s: wait" % SOAK)
    assert [g["name"] for g in moved(run)["gates"] if not g["passed"]] == ["min_soak"]
    assert state(registry, lc, name) == start

    time.sleep(max(0.0, staged + SOAK + 0.5 - time.time()))
    run = promote(ansible, registry, name, "production", from_channel="staging")
    refused(run, "refused by gate approval:", "channel production needs an approval")
    assert state(registry, lc, name) == start

    run = promote(ansible, registry, name, "production", from_channel="staging", promote_approved_by="bob",
                  awx_user_name="carol")
    assert run.rc == 0, failure(run)
    res = moved(run)
    assert [(g["name"], g["passed"]) for g in res["gates"]] == [
        ("revoked", True), ("tested", True), ("after", True), ("min_soak", True), ("approval", True)]
    assert res["move"]["approved_by"] == "bob" and res["move"]["by"] == "carol"
    assert lc.channel(name, "production")["history"][-1]["approved_by"] == "bob"
    assert lc.resolve_channel(name, "production")["digest"] == d["1"]
    print("promote.yml: %d runs, median %.1f s, max %.1f s" % (len(TOOK), sorted(TOOK)[len(TOOK) // 2], max(TOOK)))


def test_restricted_channel_without_approval_then_with_it(ansible, registry, repo):
    lc = lifecycle(registry)
    name, d = repo
    passed(lc, name, d["2"])
    policy = {"acme": {"tested": True, "approval": True}}
    start = state(registry, lc, name)
    run = promote(ansible, registry, name, "acme", version="2", promote_policy=policy)
    refused(run, "refused by gate approval:")
    assert state(registry, lc, name) == start
    run = promote(ansible, registry, name, "acme", version="2", promote_policy=policy, promote_approved_by="dana")
    assert run.rc == 0 and moved(run)["move"]["approved_by"] == "dana", failure(run)
    assert [e["approved_by"] for e in lc.channel(name, "acme")["history"]] == ["dana"]


@pytest.mark.parametrize("head", ["3", None], ids=["existing-channel", "new-channel"])
def test_two_promotions_racing_on_one_channel(ansible, registry, repo, workdir, head):
    """Two ansible-playbook processes move one channel at once: each move either lands in the
    history (serialised, none lost) or is refused naming the concurrent move; never lost."""
    lc = lifecycle(registry)
    name, d = repo
    for v in ("1", "2", "3"):
        passed(lc, name, d[v])
    if head:
        lc.move_channel(name, "dev", d[head], by="it")
    procs = {}
    for v in ("1", "2"):
        path = os.path.join(workdir, "race-%s.json" % uuid.uuid4().hex[:8])
        with open(path, "w") as f:
            json.dump({"image": name, "channel": "dev", "version": v, "catalog_registry": registry["address"]}, f)
        procs[v] = subprocess.Popen(["ansible-playbook", PROMOTE, "-e", "@" + path], env=ansible.env, cwd=TOP,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outs = {}
    for v, p in procs.items():
        out = p.communicate(timeout=300)[0]
        outs[v] = (p.returncode, out)
    history = lc.channel(name, "dev")["history"]
    ours = history[1:] if head else history
    winners = [v for v, (rc, _out) in outs.items() if rc == 0]
    assert winners, outs
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert len(ours) == len(winners), (history, outs)       # one entry per successful run, none lost
    assert all(e["from"] == p["to"] for p, e in zip(history, history[1:]))
    for v in ("1", "2"):
        rc, out = outs[v]
        if rc == 0:
            assert d[v] in [e["to"] for e in ours], (v, out)
        else:
            assert "moved while this promotion was decided" in out and "re-run" in out, out
    assert lc.channel(name, "dev")["digest"] == history[-1]["to"]
    print("race (%s): %s succeeded, history %s; said: %s" % (
        "head %s" % head if head else "new channel", winners, [e["to_version"] for e in history],
        [line.strip()[:160] for _rc, out in outs.values() for line in out.splitlines()
         if "moved while" in line or "created by another run" in line]))


def test_bad_inputs_are_named_and_change_nothing(ansible, registry, repo):
    lc = lifecycle(registry)
    name, d = repo
    passed(lc, name, d["1"])
    passed(lc, name, d["3"])
    assert promote(ansible, registry, name, "dev", version=1).rc == 0      # a number, as an AWX survey gives
    lc.revoke(name, d["3"], "CVE-2026-0001 in openssl", by="erin")
    start = state(registry, lc, name)
    refused(promote(ansible, registry, name, "qa", version="1"),
            "unknown channel 'qa': promote_policy knows dev, production, staging")
    refused(promote(ansible, registry, name, "dev", version="9"), "unknown image version", "'9'")
    run = promote(ansible, registry, name, "dev", version="3")
    refused(run, "refused by gate revoked:", "image version %s:3" % name, "CVE-2026-0001 in openssl", "erin")
    assert [g["name"] for g in moved(run)["gates"] if not g["passed"]] == ["revoked"]
    refused(promote(ansible, registry, name, "staging", from_channel="qa"), "unknown channel 'qa'")
    refused(promote(ansible, registry, name, "dev", version="1", from_channel="dev"),
            "give exactly one of version", "from_channel")
    refused(promote(ansible, registry, name, "dev"), "give exactly one of version")
    rc, res = ansible.task("immutable.infra.image_channel", {
        "name": name, "channel": "Prod!", "version": "1", "registry": registry["address"]})
    assert rc != 0 and "invalid channel name 'Prod!'" in res["msg"], res
    rc, res = ansible.task("immutable.infra.image_channel", {
        "name": name, "channel": "staging", "version": "1", "registry": registry["address"],
        "gates": {"after": "dev", "min_soak": -5}})
    assert rc != 0 and "min_soak of channel staging must be a number of seconds >= 0" in res["msg"], res
    assert state(registry, lc, name) == start


def test_rollback_of_a_channel(ansible, registry, repo):
    lc = lifecycle(registry)
    name, d = repo
    for v in ("1", "2", "3"):
        passed(lc, name, d[v])
        assert promote(ansible, registry, name, "dev", version=v).rc == 0
    lc.revoke(name, d["2"], "leaks memory", by="erin")
    start = state(registry, lc, name)
    plan = promote(ansible, registry, name, "dev", promote_rollback=True, check=True, diff=True)
    assert plan.rc == 0 and moved(plan)["diff"]["after"]["version"] == "1", failure(plan)
    assert state(registry, lc, name) == start
    run = promote(ansible, registry, name, "dev", promote_rollback=True, promote_reason="errors in dev")
    assert run.rc == 0, failure(run)
    res = moved(run)
    assert res["passed_over"] == ["2"] and res["channel"]["digest"] == d["1"]
    assert {k: res["move"][k] for k in ("action", "from", "to", "reason")} == {
        "action": "rollback", "from": d["3"], "to": d["1"], "reason": "errors in dev"}
    start = state(registry, lc, name)
    refused(promote(ansible, registry, name, "dev", promote_rollback=True),
            "channel dev of %s has no earlier target to roll back to" % name)
    refused(promote(ansible, registry, name, "dev", version="2", promote_rollback=True), "leaks memory", "erin")
    assert state(registry, lc, name) == start
