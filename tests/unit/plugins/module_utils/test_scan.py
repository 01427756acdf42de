"""Scan logic without the registry: target selection, the record, the no-op decision
(the registry path is tested in tests/integration/test_scan.py)."""
from __future__ import annotations

import hashlib

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _scan as scan
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

D = {n: "sha256:" + str(n) * 64 for n in range(1, 7)}


def facts(name, tag, n):
    return {"tag": str(tag), "version": str(tag), "digest": D[n], "reference": "r/%s:%s" % (name, tag)}


class Index:
    digest = "sha256:" + "a" * 64
    count = 2
    sources = [{"source": "osv.zip", "count": 2}]


FINDING = {"id": "CVE-1", "aliases": [], "package": "libssl3", "source": "openssl", "type": "deb",
           "installed": "1.1-1", "fixed": "1.2-1", "fix_available": True, "severity": "high"}


def test_parse_images():
    assert scan.parse_images(["web", "web:3", "r:5000/web@" + D[1]], "r:5000") == [
        ("web", None, None), ("web", "3", None), ("web", None, D[1])]
    with pytest.raises(ImmutableInfraError) as err:
        scan.parse_images(["other:5000/web:3"], "r:5000")
    assert "registry other:5000, not in r:5000" in err.value.msg


def test_default_targets_are_channel_heads_and_group_images_only():
    described = {
        "web": {"versions": [facts("web", 1, 1), facts("web", 2, 2), facts("web", 3, 3), facts("web", "3b", 3)],
                "channels": {"production": {"digest": D[1], "history": [{"seq": 1, "to": D[2]}, {"seq": 2, "to": D[1]}]}}},
        "api": {"versions": [facts("api", 1, 4), facts("api", 2, 5)], "channels": {}},
    }
    live = {D[5]: ["server group api-prod-v002 on podman (2 instance(s): running)"], D[6]: ["elsewhere"]}
    got = [(n, f["tag"], why) for n, f, why in scan.default_targets(described, live)]
    # web 2 was only in the channel's history; web 3 (tagged twice) is referenced by nothing.
    assert got == [("api", "2", ["server group api-prod-v002 on podman (2 instance(s): running)"]),
                   ("web", "1", ["channel production of web (head)"])]


def test_one_per_digest_keeps_the_newest_tag():
    got = scan.one_per_digest("web", [facts("web", "3b", 3), facts("web", 2, 2), facts("web", 3, 3)])
    assert [(f["tag"], f["digest"]) for f in got] == [("2", D[2]), ("3b", D[3])]


def record(findings, policy=None, previous=None, today="2026-11-30"):
    return scan.scan_record("web", facts("web", 3, 3), b'{"sbom": 1}', findings, Index(), policy, "alice",
                            ("2026-11-30T10:00:00Z", 1.0), today, previous)


def test_scan_record_holds_the_contract_fields():
    r = record([FINDING])
    assert r["sbom_digest"] == "sha256:" + hashlib.sha256(b'{"sbom": 1}').hexdigest()
    assert (r["kind"], r["subject"], r["repository"], r["version"]) == ("scan", D[3], "web", "3")
    assert r["advisories"] == [{"source": "osv.zip", "count": 2}] and r["advisories_digest"] == Index.digest
    assert r["passed"] is False and r["violations"] == ["CVE-1"] and r["counts"]["high"] == 1 and r["fixable"] == 1
    assert r["policy"]["fail_on"] == ["critical", "high"] and r["policy_digest"].startswith("sha256:")


def test_rescan_with_same_inputs_is_a_noop_and_changes_are_not():
    first = record([FINDING])
    assert scan.unchanged(first, record([FINDING]))              # another time, same everything
    assert not scan.unchanged(None, first)
    assert not scan.unchanged(first, record([]))                 # new advisories found nothing
    waived = {"waivers": [{"id": "CVE-1", "reason": "r", "expires": "2026-12-01"}]}
    stored = record([FINDING], waived)
    assert stored["passed"] and not scan.unchanged(first, stored)
    # Same SBOM, advisories and policy, but the waiver expired since: the verdict changed, so it is stored.
    assert not scan.unchanged(stored, record([FINDING], waived, today="2026-12-02"))
    assert scan.unchanged(stored, record([FINDING], waived, today="2026-11-30"))


def test_overrides_carry_over_a_rescan():
    prev = dict(record([FINDING]), overrides=[{"by": "bob", "reason": "hotfix"}])
    assert record([FINDING], previous=prev)["overrides"] == [{"by": "bob", "reason": "hotfix"}]


def test_totals_and_findings_across_versions():
    v = record([FINDING])
    entries = [scan.entry("web", facts("web", 3, 3), dict(v, scanned=True), changed=True),
               scan.entry("web", facts("web", 2, 2), scan.verdict_now(None, None), has_sbom=False)]
    across = scan.findings_across([("web", facts("web", 3, 3), [FINDING]), ("api", facts("api", 1, 4), [FINDING])])
    assert len(across) == 1 and across[0]["images"] == ["web:3", "api:1"]
    t = scan.totals(entries, across)
    assert (t["versions"], t["scanned"], t["without_sbom"], t["passed"], t["failed"], t["findings"], t["changed"]) == (
        2, 1, 1, 1, 1, 1, 1)
