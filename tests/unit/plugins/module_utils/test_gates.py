"""Promotion gates (pure logic) and the promote/rollback policy over an
in-memory fake of the Lifecycle interface (the real one is tested against a
registry in tests/integration/test_promote.py)."""
from __future__ import annotations

import copy
import time

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _gates as gates
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

D = {n: "sha256:" + str(n) * 64 for n in range(1, 6)}
POLICY = {"dev": {"tested": True}, "staging": {"tested": True, "after": "dev"},
          "production": {"tested": True, "after": "staging", "min_soak": 60, "approval": True}}


def facts(n):
    return {"version": str(n), "tag": str(n), "digest": D[n], "reference": "r/web@" + D[n]}


def move(to, epoch, action="promote", frm=None):
    return {"to": D[to], "to_version": str(to), "from": D[frm] if frm else None, "epoch": epoch,
            "time": "t%d" % epoch, "by": "alice", "action": action}


def record(*moves):
    return {"kind": "channel", "digest": moves[-1]["to"], "version": moves[-1]["to_version"], "history": list(moves)}


class FakeLifecycle:
    """The Lifecycle API over dicts: versions 1..5 of repository web."""

    def __init__(self):
        self.channels, self.tests, self.revoked, self.moves = {}, {}, {}, []
        self.interloper = None      # (digest): another run moves the channel right before our write

    def index(self, name):
        return {"versions": [str(n) for n in D], "channels": sorted(self.channels), "tested": {},
                "revoked": dict.fromkeys(self.revoked)}

    def channel(self, name, channel):
        return copy.deepcopy(self.channels.get(channel))

    def test_result(self, name, digest):
        return self.tests.get(digest)

    def revocation(self, name, digest):
        return self.revoked.get(digest)

    def version(self, name, version=None, digest=None):
        for n in D:
            if str(n) == version or D[n] == digest:
                return facts(n)
        raise ImmutableInfraError("unknown image version %s of %s" % (version or digest, name))

    def resolve_channel(self, name, channel, allow_revoked=False):
        rec = self.channels.get(channel)
        if rec is None:
            raise ImmutableInfraError("unknown channel %s of %s" % (channel, name))
        return dict(self.version(name, digest=rec["digest"]), channel=channel)

    def move_channel(self, name, channel, digest, by, reason=None, action="promote", approved_by=None,
                     expect=None, check_mode=False):
        if self.interloper:
            self._write(channel, self.interloper, "bob", "promote", None)
            self.interloper = None
        before = self.channel(name, channel)
        head = (before or {}).get("digest")
        if head == digest:
            return before, before
        if expect is not None and (head or "") != expect:      # as the real one: "" = no channel yet
            raise ImmutableInfraError("channel %s moved meanwhile" % channel)
        after = self._write(channel, digest, by, action, approved_by, dry=check_mode)
        return before, after

    def _write(self, channel, digest, by, action, approved_by, dry=False):
        rec = copy.deepcopy(self.channels.get(channel)) or {"kind": "channel", "channel": channel, "history": []}
        n = [k for k in D if D[k] == digest][0]
        rec["history"].append({"seq": len(rec["history"]) + 1, "epoch": time.time(), "time": "t",
                               "by": by, "action": action, "from": rec.get("digest"), "from_version": rec.get("version"),
                               "to": digest, "to_version": str(n), "approved_by": approved_by})
        rec.update(digest=digest, version=str(n))
        if not dry:
            self.channels[channel] = rec
            self.moves.append((channel, digest))
        return copy.deepcopy(rec)


def params(channel, version=None, **kw):
    p = {"name": "web", "channel": channel, "version": str(version) if version else None, "digest": None,
         "from_channel": None, "state": "present", "gates": POLICY.get(channel, {}), "approved_by": None,
         "reason": None, "actor": "tester"}
    p.update(kw)
    return p


# ------------------------------------------------------------------ pure logic
def test_soak_sums_every_stint_and_counts_the_current_one_to_now():
    rec = record(move(1, 100), move(2, 130), move(1, 200), move(3, 260), move(1, 300))
    assert gates.soak_seconds(rec, D[1], now=310) == 30 + 60 + 10
    assert gates.soak_seconds(rec, D[2], now=310) == 70
    assert gates.soak_seconds(rec, D[4], now=310) == 0
    assert gates.soak_seconds(None, D[1], now=310) == 0


@pytest.mark.parametrize("given,msg", [
    ({"tested": "maybe"}, "gate tested of channel x must be true or false"),
    ({"after": "x"}, "names the channel itself"),
    ({"after": "Dev!"}, "invalid channel name 'Dev!'"),
    ({"min_soak": 5}, "min_soak of channel x needs gate after"),
    ({"after": "dev", "min_soak": -1}, "must be a number of seconds >= 0, not -1"),
    ({"after": "dev", "min_soak": "soon"}, "not 'soon'"),
    ({"soak": 5}, "unknown gate(s) soak for channel x"),
])
def test_bad_gates_are_named(given, msg):
    with pytest.raises(ImmutableInfraError) as err:
        gates.normalize_gates(given, "x")
    assert msg in err.value.msg


def test_normalize_fills_the_gates_that_do_not_apply():
    assert gates.normalize_gates({"tested": "yes", "after": "dev", "min_soak": "0"}, "staging") == {
        "tested": True, "approval": False, "after": "dev", "min_soak": 0.0, "scan": None}
    assert gates.normalize_gates(None, "dev") == {"tested": False, "approval": False, "after": None, "min_soak": None, "scan": None}


def test_every_gate_is_evaluated_and_every_refusal_named():
    g = gates.normalize_gates(POLICY["production"], "production")
    results = gates.evaluate("web", "production", g, facts(2), test={"status": "failed", "time": "t", "summary": {
        "failures": ["test_port"]}}, after_record=record(move(1, 100)), approved_by=None, now=200)
    assert [(r["name"], r["passed"]) for r in results] == [
        ("revoked", True), ("tested", False), ("after", False), ("min_soak", False), ("approval", False)]
    msg = gates.refusal("web", "production", facts(2), results)
    assert msg.startswith("promotion of web:2 to channel production refused by gates tested, after, min_soak, approval: ")
    assert "failed its tests at t (test_port)" in msg and "never promoted to staging" in msg
    assert "never the head of staging (needs 60 s there)" in msg and "give approved_by" in msg
    assert msg.endswith("Nothing was changed.")


def test_min_soak_says_how_long_to_wait():
    g = gates.normalize_gates(POLICY["production"], "production")
    results = gates.evaluate("web", "production", g, facts(1), test={"status": "passed"}, after_record=record(move(1, 100)),
                             approved_by="bob", now=145)
    assert [r["name"] for r in results if not r["passed"]] == ["min_soak"]
    assert "spent 45 s as the head of staging, needs 60 s: wait 15 s more" in results[3]["detail"]
    passed = gates.evaluate("web", "production", g, facts(1), test={"status": "passed"}, after_record=record(move(1, 100)),
                            approved_by="bob", now=160)
    assert gates.refusal("web", "production", facts(1), passed) is None and passed[3]["seconds"] == 60


def test_a_revoked_version_is_refused_whatever_the_gates():
    results = gates.evaluate("web", "dev", gates.normalize_gates({}, "dev"), facts(1),
                             revocation={"reason": "CVE-1", "by": "carol", "time": "t9"})
    assert "image version web:1 (%s) is revoked: CVE-1 (revoked by carol at t9)" % D[1] in gates.refusal("web", "dev", facts(1), results)


def test_rollback_pops_back_through_the_history_skipping_revoked():
    rec = record(move(1, 1), move(2, 2), move(3, 3))
    assert gates.rollback_target(rec, set()) == (D[2], [])
    assert gates.rollback_target(rec, {D[2]}) == (D[1], [D[2]])
    rolled = record(move(1, 1), move(2, 2), move(3, 3), move(2, 4, "rollback"))
    assert gates.heads(rolled) == [D[1], D[2]]
    assert gates.rollback_target(rolled, set()) == (D[1], [])          # further back, never forward to 3
    assert gates.rollback_target(record(move(1, 1)), set()) == (None, [])
    assert gates.rollback_target(rec, {D[1], D[2]}) == (None, [D[2], D[1]])


# ------------------------------------------------------------------ policy over the Lifecycle interface
def test_promote_dev_staging_production_refusing_each_gate_once():
    lc = FakeLifecycle()
    with pytest.raises(ImmutableInfraError, match="refused by gate tested: version 1 was never tested"):
        gates.promote(lc, params("dev", 1))
    lc.tests[D[1]] = {"status": "passed", "time": "t", "test_digest": "sha256:t"}
    with pytest.raises(ImmutableInfraError, match="refused by gate after: channel dev does not exist yet"):
        gates.promote(lc, params("staging", 1))
    assert lc.moves == []
    res = gates.promote(lc, params("dev", 1))
    assert res["changed"] and res["move"]["to"] == D[1] and res["diff"] == {
        "before": {}, "after": {"repository": "web", "channel": "dev", "digest": D[1], "version": "1"}}
    res = gates.promote(lc, params("staging", from_channel="dev"))
    assert res["changed"] and res["channel"]["digest"] == D[1]
    with pytest.raises(ImmutableInfraError) as err:
        gates.promote(lc, params("production", from_channel="staging", approved_by="bob"))
    assert "refused by gate min_soak: version 1 spent" in err.value.msg and err.value.details["channel"] is None
    lc.channels["staging"]["history"][0]["epoch"] -= 3600
    with pytest.raises(ImmutableInfraError, match="refused by gate approval: channel production needs an approval"):
        gates.promote(lc, params("production", from_channel="staging", approved_by="  "))
    assert len(lc.moves) == 2
    res = gates.promote(lc, params("production", 1, approved_by="bob", reason="go"))
    assert res["move"]["approved_by"] == "bob" and [g["passed"] for g in res["gates"]] == [True] * 5
    again = gates.promote(lc, params("production", 1, approved_by="bob"))
    assert not again["changed"] and again["move"] is None and len(lc.moves) == 3


def test_check_mode_computes_the_move_and_writes_nothing():
    lc = FakeLifecycle()
    lc.tests[D[1]] = {"status": "passed"}
    res = gates.promote(lc, params("dev", 1), check_mode=True)
    assert res["changed"] and res["move"]["to"] == D[1] and lc.channels == {}


def test_a_concurrent_move_is_named_and_nothing_is_written():
    lc = FakeLifecycle()
    lc.channels["dev"] = lc._write("dev", D[1], "alice", "promote", None)
    lc.interloper = D[2]
    with pytest.raises(ImmutableInfraError) as err:
        gates.promote(lc, params("dev", 3, gates={}))
    assert "channel dev of web moved while this promotion was decided: bob moved it from 1 to version 2 (" in err.value.msg
    assert lc.channels["dev"]["digest"] == D[2]
    lc.interloper = D[4]                  # the other run made our move: no change, no error
    res = gates.promote(lc, params("dev", 4, gates={}))
    assert not res["changed"] and res["channel"]["digest"] == D[4]


def test_a_channel_created_meanwhile_refuses_the_move_decided_on_no_channel():
    lc = FakeLifecycle()
    lc.interloper = D[2]
    with pytest.raises(ImmutableInfraError, match="bob moved it from nothing to version 2 .* nothing was written"):
        gates.promote(lc, params("qa", 3, gates={}))
    assert [m["to"] for m in lc.channels["qa"]["history"]] == [D[2]]


def test_a_head_already_at_the_target_is_unchanged_unless_revoked():
    lc = FakeLifecycle()
    lc.channels["dev"] = lc._write("dev", D[1], "alice", "promote", None)
    assert gates.promote(lc, params("dev", 1))["changed"] is False     # gates reported, not enforced
    lc.revoked[D[1]] = {"reason": "bad", "by": "carol", "time": "t"}
    with pytest.raises(ImmutableInfraError, match="points at a revoked version: image version web:1 .* is revoked: bad"):
        gates.promote(lc, params("dev", 1))


def test_rollback_skips_revoked_and_fails_when_nothing_is_left():
    lc = FakeLifecycle()
    for n in (1, 2, 3):
        gates.promote(lc, params("dev", n, gates={}))
    lc.revoked[D[2]] = {"reason": "bad", "by": "carol", "time": "t"}
    res = gates.rollback(lc, params("dev", state="rollback", reason="errors"))
    assert res["changed"] and res["channel"]["digest"] == D[1] and res["passed_over"] == ["2"]
    assert res["move"]["action"] == "rollback"
    with pytest.raises(ImmutableInfraError, match="no earlier target to roll back to$"):
        gates.rollback(lc, params("dev", state="rollback"))
    with pytest.raises(ImmutableInfraError, match="rollback of channel dev of web refused: image version web:2 .* is revoked: bad .revoked by carol"):
        gates.rollback(lc, params("dev", 2, state="rollback"))
    with pytest.raises(ImmutableInfraError, match="version 4 was never a target of channel dev"):
        gates.rollback(lc, params("dev", 4, state="rollback"))
    with pytest.raises(ImmutableInfraError, match="unknown channel qa of web: nothing to roll back .existing channels: dev"):
        gates.rollback(lc, params("qa", state="rollback"))


def test_bad_inputs_change_nothing():
    lc = FakeLifecycle()
    with pytest.raises(ImmutableInfraError, match="invalid channel name 'Prod!'"):
        gates.promote(lc, params("Prod!", 1))
    with pytest.raises(ImmutableInfraError, match="unknown image version 9"):
        gates.promote(lc, params("dev", 9))
    with pytest.raises(ImmutableInfraError, match="from_channel dev is the channel being moved"):
        gates.promote(lc, params("dev", from_channel="dev"))
    with pytest.raises(ImmutableInfraError, match="unknown channel staging"):
        gates.promote(lc, params("production", from_channel="staging"))
    assert lc.moves == []


# ------------------------------------------------------------------ the scan gate (issue 9)
class ScannedLifecycle(FakeLifecycle):
    def __init__(self):
        super().__init__()
        self.scans = {}

    def scan_result(self, name, digest):
        return self.scans.get(digest)


def scan_record(*severities):
    return {"kind": "scan", "repository": "web", "time": "t", "findings": [
        {"id": "CVE-%d" % i, "aliases": [], "package": "libssl3", "source": "openssl", "installed": "1.1-1",
         "fixed": "1.2-1", "fix_available": True, "severity": sev} for i, sev in enumerate(severities)]}


@pytest.mark.parametrize("given, want", [(True, "passed"), ("yes", "passed"), ("required", "required"),
                                         (False, None), (None, None)])
def test_scan_gate_values(given, want):
    assert gates.normalize_gates({"scan": given}, "staging")["scan"] == want


def test_scan_gate_bad_value_is_named():
    with pytest.raises(ImmutableInfraError, match="gate scan of channel staging must be true, false or required, not 'maybe'"):
        gates.normalize_gates({"scan": "maybe"}, "staging")


def test_scan_gate_refuses_failing_findings_and_passes_after_a_waiver():
    lc = ScannedLifecycle()
    p = params("dev", 1, gates={"scan": True})
    assert gates.promote(lc, p, check_mode=True)["gates"][-1]["detail"] == "version 1 was never scanned (not required)"
    with pytest.raises(ImmutableInfraError, match="refused by gate scan: version 1 was never scanned"):
        gates.promote(lc, dict(p, gates={"scan": "required"}))
    lc.scans[D[1]] = scan_record("critical", "low")
    with pytest.raises(ImmutableInfraError) as err:
        gates.promote(lc, p)
    assert "refused by gate scan: web:1 fails the scan policy: CVE-0 (critical, libssl3 1.1-1, fixed in 1.2-1)" in err.value.msg
    assert err.value.details["gates"][-1]["violations"] == ["CVE-0"] and lc.moves == []
    waiver = {"id": "CVE-0", "reason": "not reachable", "expires": "2999-12-31"}
    res = gates.promote(lc, dict(p, scan_policy={"waivers": [waiver]}))
    assert res["changed"] and "passes the scan policy (waived: CVE-0)" in res["gates"][-1]["detail"]
    expired = dict(waiver, expires="2000-01-01")
    with pytest.raises(ImmutableInfraError, match="expired waiver"):
        gates.promote(lc, params("staging", 1, gates={"scan": True}, scan_policy={"waivers": [expired]}))
