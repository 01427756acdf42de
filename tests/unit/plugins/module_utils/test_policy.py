"""The vulnerability policy (pure): thresholds, waivers (with expiry), the verdict of stored scans."""
from __future__ import annotations

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _policy as policy
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def finding(fid, severity="high", fixed="1.2-1", package="libssl3", source="openssl", aliases=()):
    return {"id": fid, "aliases": list(aliases), "package": package, "source": source, "type": "deb",
            "installed": "1.1-1", "fixed": fixed, "fix_available": fixed is not None, "severity": severity,
            "urgency": None, "summary": "s", "feeds": ["osv"]}


def waiver(fid="CVE-1", expires="2027-01-31", **kw):
    return dict({"id": fid, "reason": "not reachable", "expires": expires}, **kw)


def test_default_policy_fails_fixable_critical_and_high_only():
    found = [finding("CVE-1", "critical"), finding("CVE-2", "high"), finding("CVE-3", "medium"),
             finding("CVE-4", "high", fixed=None)]
    v = policy.evaluate(found, None, today="2026-11-30")
    assert not v["passed"]
    assert v["violations"] == ["CVE-1", "CVE-2"]          # CVE-4 has no fix: fixable_only
    assert v["counts"]["high"] == 2 and v["counts"]["medium"] == 1 and v["fixable"] == 3
    assert any("CVE-1 (critical, libssl3 1.1-1, fixed in 1.2-1)" in r for r in v["reasons"])


def test_fixable_only_false_counts_unfixed_findings():
    v = policy.evaluate([finding("CVE-4", "high", fixed=None)], {"fixable_only": False}, today="2026-11-30")
    assert v["violations"] == ["CVE-4"] and not v["passed"]


def test_clean_and_low_findings_pass():
    assert policy.evaluate([], None, today="2026-11-30")["passed"]
    assert policy.evaluate([finding("CVE-5", "low")], None, today="2026-11-30")["passed"]


def test_max_threshold():
    found = [finding("CVE-%d" % i, "medium") for i in range(3)]
    assert policy.evaluate(found, {"max": {"medium": 3}}, today="2026-11-30")["passed"]
    v = policy.evaluate(found, {"max": {"medium": 2}}, today="2026-11-30")
    assert not v["passed"] and v["violations"] == ["CVE-0", "CVE-1", "CVE-2"]
    assert "3 medium finding(s) with a fix, more than the policy's max of 2" in v["reasons"]


def test_waiver_counts_until_its_expiry_day_then_stops():
    found = [finding("CVE-1", "critical")]
    pol = {"waivers": [waiver("CVE-1", "2026-12-01")]}
    v = policy.evaluate(found, pol, today="2026-12-01")        # valid through its day
    assert v["passed"] and v["waived"] == [{"id": "CVE-1", "package": "libssl3", "reason": "not reachable",
                                            "expires": "2026-12-01"}]
    v = policy.evaluate(found, pol, today="2026-12-02")
    assert not v["passed"] and v["violations"] == ["CVE-1"] and v["waived"] == []
    assert v["expired_waivers"] == [{"id": "CVE-1", "reason": "not reachable", "expires": "2026-12-01", "findings": 1}]
    assert "expired waiver(s): CVE-1" in policy.summary_line("web", "3", v)


def test_waiver_matches_alias_and_narrows_by_image_and_package():
    found = [finding("DSA-1", "high", aliases=["CVE-9"])]
    assert policy.evaluate(found, {"waivers": [waiver("CVE-9")]}, today="2026-11-30")["passed"]
    only_api = {"waivers": [waiver("CVE-9", images=["api"])]}
    assert not policy.evaluate(found, only_api, today="2026-11-30", image="web")["passed"]
    assert policy.evaluate(found, only_api, today="2026-11-30", image="api")["passed"]
    assert policy.evaluate(found, {"waivers": [waiver("CVE-9", packages=["openssl"])]}, today="2026-11-30")["passed"]
    assert not policy.evaluate(found, {"waivers": [waiver("CVE-9", packages=["zlib"])]}, today="2026-11-30")["passed"]


@pytest.mark.parametrize("bad, words", [
    ({"waivers": [{"id": "CVE-1", "expires": "2027-01-31"}]}, "has no reason"),
    ({"waivers": [{"id": "CVE-1", "reason": "  ", "expires": "2027-01-31"}]}, "has no reason"),
    ({"waivers": [{"id": "CVE-1", "reason": "x", "expires": "31/01/2027"}]}, "bad date '31/01/2027'"),
    ({"waivers": [{"id": "CVE-1", "reason": "x", "expires": "2027-02-30"}]}, "bad date"),
    ({"waivers": [{"id": "CVE-1", "reason": "x"}]}, "has no expires"),
    ({"waivers": [{"reason": "x", "expires": "2027-01-31"}]}, "has no id"),
    ({"waivers": [dict(waiver(), until="x")]}, "unknown key(s) until"),
    ({"fail_on": ["severe"]}, "unknown severity 'severe'"),
    ({"max": {"medium": -1}}, "max of medium must be a count"),
    ({"fixable_only": "maybe"}, "fixable_only must be true or false"),
    ({"threshold": 1}, "unknown policy key(s) threshold"),
])
def test_bad_policies_are_errors_naming_the_field(bad, words):
    with pytest.raises(ImmutableInfraError) as err:
        policy.evaluate([], bad, today="2026-11-30")
    assert words in err.value.msg


def test_policy_digest_is_stable_and_defaults_are_filled():
    assert policy.policy_digest(None) == policy.policy_digest({"fail_on": ["high", "critical"]})
    assert policy.policy_digest(None) != policy.policy_digest({"fail_on": ["critical"]})
    assert policy.normalize_policy({"waivers": [waiver()]})["fail_on"] == ["critical", "high"]


def test_verdict_now_of_a_stored_scan_and_of_a_version_never_scanned():
    record = {"repository": "web", "time": "t", "findings": [finding("CVE-1", "critical")]}
    assert not policy.verdict_now(record, None, today="2026-11-30")["passed"]
    assert policy.verdict_now(record, {"waivers": [waiver()]}, today="2026-11-30")["passed"]
    assert not policy.verdict_now(record, {"waivers": [waiver()]}, today="2027-02-01")["passed"]
    never = policy.verdict_now(None, None)
    assert never["passed"] and not never["scanned"]
    assert not policy.verdict_now(None, {"require_scan": True})["passed"]
