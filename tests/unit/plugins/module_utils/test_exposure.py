"""Exposure: the join of scan records, channels, instances and router weights, and its rendering
(ordering, escaping, files rewritten only when more than the generated time changed)."""
from __future__ import annotations

import json
import os
from html.parser import HTMLParser

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _exposure
from ansible_collections.immutable.infra.plugins.module_utils._exposure_html import markdown, page
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def d(n):
    return "sha256:" + ("%x" % n).rjust(64, "0")


def finding(cid, severity, package="libfoo1", installed="1.0-1", fixed="1.0-2", aliases=(), summary=""):
    return {"id": cid, "aliases": list(aliases), "package": package, "source": package.rstrip("0123456789"),
            "type": "deb", "installed": installed, "fixed": fixed, "fix_available": fixed is not None,
            "severity": severity, "urgency": None, "summary": summary, "feeds": ["osv"]}


def scan(repo, version, digest, findings, time="2026-11-30T10:00:00Z"):
    return {"kind": "scan", "subject": digest, "repository": repo, "version": version, "time": time,
            "findings": findings}


def inst(app, stack, seq, digest, zone, repo="web", version="1", state="running", platform="podman", n=0):
    group = "%s-%s-v%03d" % (app, stack, seq)
    return {"name": "%s-%06x" % (group, n), "app": app, "stack": stack, "group": group, "sequence": seq,
            "image": "127.0.0.1:5000/%s@%s" % (repo, digest), "image_digest": digest, "image_version": version,
            "zone": zone, "state": state, "platform": platform, "labels": {}}


# web:1 (d1) carries CVE-A (critical, fixed) and CVE-B (high, no fix); web:2 (d2) carries CVE-B only;
# web:3 (d3) carries CVE-C (low), nothing runs it. prod: v001 on web:1 retained, v002 on web:2 live;
# acme: v001 on web:1 live in two zones; demo runs an unscanned version.
SCANS = [
    scan("web", "1", d(1), [finding("CVE-2024-0002", "high", "libbar2", fixed=None),
                            finding("CVE-2024-0001", "critical", aliases=["DSA-1-1"], summary="overflow")]),
    scan("web", "2", d(2), [finding("CVE-2024-0002", "high", "libbar2", installed="2.0-1", fixed=None)],
         time="2026-11-30T11:00:00Z"),
    scan("web", "3", d(3), [finding("CVE-2024-0003", "low")]),
]
CHANNELS = {"web": {"production": {"digest": d(2)}, "acme": {"digest": d(1)}, "dev": {"digest": d(3)}}}
INSTANCES = [
    inst("web", "prod", 1, d(1), "zone-a", n=1),
    inst("web", "prod", 2, d(2), "zone-a", version="2", n=2), inst("web", "prod", 2, d(2), "zone-b", version="2", n=3),
    inst("web", "acme", 1, d(1), "zone-a", n=4), inst("web", "acme", 1, d(1), "zone-b", n=5, state="exited"),
    inst("web", "demo", 1, d(9), "zone-a", version="9", n=6),
    {"name": "not-a-group-member", "state": "running"},
]
WEIGHTS = {"web-prod-v001": 0, "web-prod-v002": 100, "web-acme-v001": 100}


def joined(cves=None):
    return _exposure.join(SCANS, CHANNELS, INSTANCES, WEIGHTS, cves)


def by_id(data):
    return {c["id"]: c for c in data["cves"]}


def test_each_cve_names_versions_channels_groups_stacks_instances_and_zones():
    c = by_id(joined())
    a = c["CVE-2024-0001"]
    assert [(v["repository"], v["version"]) for v in a["versions"]] == [("web", "1")]
    assert a["channels"] == ["web:acme"] and a["aliases"] == ["DSA-1-1"] and a["fix_available"]
    assert [(g["name"], g["traffic"], g["instances"], g["running"], g["zones"]) for g in a["groups"]] == [
        ("web-acme-v001", "live", 2, 1, ["zone-a", "zone-b"]), ("web-prod-v001", "retained", 1, 1, ["zone-a"])]
    assert a["stacks"] == ["web/acme", "web/prod"] and a["live_stacks"] == ["web/acme"]
    assert (a["instances"], a["live_instances"], a["zones"], a["live"]) == (3, 2, ["zone-a", "zone-b"], True)
    b = c["CVE-2024-0002"]
    assert [v["version"] for v in b["versions"]] == ["1", "2"] and not b["fix_available"]
    assert b["channels"] == ["web:acme", "web:production"]
    assert [g["name"] for g in b["groups"]] == ["web-acme-v001", "web-prod-v002", "web-prod-v001"]
    assert b["live_stacks"] == ["web/acme", "web/prod"] and b["live_instances"] == 4
    assert b["versions"][1]["packages"] == ["libbar2 2.0-1 -> no fix"]
    lone = c["CVE-2024-0003"]
    assert lone["groups"] == [] and lone["channels"] == ["web:dev"] and not lone["live"] and lone["instances"] == 0


def test_order_is_severity_then_id_and_stacks_worst_first():
    data = joined()
    assert [c["id"] for c in data["cves"]] == ["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003"]
    assert [(s["name"], s["worst"]) for s in data["stacks"]] == [
        ("web/acme", "critical"), ("web/prod", "critical"), ("web/demo", None)]
    prod = data["stacks"][1]
    assert [(c["id"], c["groups"], c["live"]) for c in prod["cves"]] == [
        ("CVE-2024-0001", ["web-prod-v001"], False), ("CVE-2024-0002", ["web-prod-v002", "web-prod-v001"], True)]
    assert prod["cves"][1]["live_groups"] == ["web-prod-v002"]
    assert prod["cves"][1]["packages"] == ["libbar2 1.0-1 -> no fix", "libbar2 2.0-1 -> no fix"]
    assert data["stacks"][0]["cves"][1]["packages"] == ["libbar2 1.0-1 -> no fix"]      # acme runs web:1 only
    assert {g["name"]: g["cves"] for g in prod["groups"]} == {
        "web-prod-v002": ["CVE-2024-0002"], "web-prod-v001": ["CVE-2024-0001", "CVE-2024-0002"]}
    # Same input in another order: the same report.
    again = _exposure.join(list(reversed(SCANS)), CHANNELS, list(reversed(INSTANCES)), WEIGHTS)
    assert json.dumps(again, sort_keys=True) == json.dumps(data, sort_keys=True)


def test_summary_unscanned_and_newest_scan():
    data = joined()
    s = data["summary"]
    assert s["by_severity"]["critical"] == 1 and s["by_severity"]["high"] == 1 and s["by_severity"]["low"] == 1
    assert (s["cves"], s["live"], s["fixable"], s["stacks"], s["groups"], s["instances"]) == (3, 2, 2, 3, 4, 6)
    assert [g["name"] for g in data["unscanned"]] == ["web-demo-v001"] and s["unscanned_groups"] == 1
    assert data["scanned_at"] == "2026-11-30T11:00:00Z"


def test_filter_matches_ids_and_aliases_case_insensitively_and_names_what_it_did_not_find():
    data = joined(["dsa-1-1", "CVE-2099-9999"])
    assert [c["id"] for c in data["cves"]] == ["CVE-2024-0001"]
    assert data["not_found"] == ["CVE-2099-9999"]
    assert [c["id"] for s in data["stacks"] for c in s["cves"]] == ["CVE-2024-0001", "CVE-2024-0001"]


def test_without_router_every_group_is_retained():
    data = _exposure.join(SCANS, CHANNELS, INSTANCES, {})
    assert {g["traffic"] for c in data["cves"] for g in c["groups"]} == {"retained"}
    assert data["summary"]["live"] == 0


def report_data(**kw):
    data = dict(joined(), registry="127.0.0.1:5000", platforms=["podman"], filter=[], generated="2026-11-30T12:00:00Z")
    data.update(kw)
    return data


class Tables(HTMLParser):
    """The text of each table cell, per table, and whether any script or external reference appears."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell, self.external = [], None, []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag in ("td", "th"):
            self.cell = ""
        if tag in ("script", "link", "img", "iframe") or any(k in ("src",) for k, _v in attrs):
            self.external.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_page_has_a_table_per_cve_and_per_stack_in_order_and_no_external_asset():
    html = page(report_data())
    parser = Tables()
    parser.feed(html)
    assert parser.external == []
    cve_tables = html.count('class="cve-table"')
    assert cve_tables == 3 and html.count('<section class="stack"') == 3
    assert html.index("CVE-2024-0001") < html.index("CVE-2024-0002") < html.index("CVE-2024-0003")
    flat = [cell for table in parser.tables for cell in table]
    assert "web-acme-v001" in flat and "zone-a, zone-b" in flat and "web:acme" in flat
    assert '<time class="generated">2026-11-30T12:00:00Z</time>' in html


def test_everything_from_the_data_is_escaped():
    evil = "<script>alert(1)</script>"
    scans = [scan("web", "1", d(1), [finding("CVE-<u>1</u>", "high", package='pkg"><img src=x>', summary=evil)])]
    insts = [dict(inst("web", "prod", 1, d(1), "zone-<i>a</i>"), app="web")]
    data = dict(_exposure.join(scans, {"web": {"x": {"digest": d(1)}}}, insts, {}),
                registry="reg<1>", platforms=["podman"], filter=[evil], generated="t")
    html = page(data)
    assert "<script>" not in html and "<img" not in html and "<u>1</u>" not in html and "<i>a</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "CVE-&lt;u&gt;1&lt;/u&gt;" in html
    md = markdown(dict(data, cves=[dict(data["cves"][0], id="CVE|1")]))
    assert "CVE\\|1" in md


def test_markdown_is_compact_and_ordered():
    md = markdown(report_data())
    assert md.startswith("# Exposure report\n")
    assert md.index("## CVE-2024-0001 (critical, fix available) aka DSA-1-1") < md.index("## CVE-2024-0002 (high, no fix)")
    assert "| web:1 | libfoo1 1.0-1 -> 1.0-2 | web:acme | web-acme-v001 | web/acme | live | 2 | zone-a, zone-b |" in md
    assert "### web/demo (worst: none)" in md and "## Running, never scanned" in md


def test_files_are_rewritten_only_when_more_than_the_generated_time_changes(tmp_path):
    dest = str(tmp_path / "out")
    data = report_data(apps=["web"])
    data.pop("generated")
    files = _exposure.write_reports(data, dest, ["json", "markdown", "html"], "2026-11-30T12:00:00Z", check_mode=True)[0]
    assert all(f["changed"] for f in files) and not os.path.exists(dest)
    files = _exposure.write_reports(data, dest, ["json", "markdown", "html"], "2026-11-30T12:00:00Z")[0]
    assert all(f["changed"] for f in files) and sorted(os.listdir(dest)) == ["exposure.html", "exposure.json", "exposure.md"]
    with open(os.path.join(dest, "exposure.json")) as f:
        assert json.load(f)["generated"] == "2026-11-30T12:00:00Z"
    files, diffs = _exposure.write_reports(data, dest, ["json", "markdown", "html"], "2026-12-01T08:30:00Z", want_diff=True)
    assert not any(f["changed"] for f in files) and diffs == []
    with open(os.path.join(dest, "exposure.html")) as f:
        assert "2026-11-30T12:00:00Z" in f.read()            # untouched: the time this content was first seen
    moved = dict(data, summary=dict(data["summary"], instances=7))
    files, diffs = _exposure.write_reports(moved, dest, ["html"], "2026-12-01T08:30:00Z", check_mode=True, want_diff=True)
    assert files[0]["changed"] and diffs[0]["before_header"].endswith("exposure.html")
    with open(os.path.join(dest, "exposure.html")) as f:
        assert f.read() == diffs[0]["before"]                 # check mode wrote nothing


def test_dest_that_is_a_file_and_unknown_formats_are_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ImmutableInfraError, match="is not a directory"):
        _exposure.write_reports(report_data(), str(path), ["html"], "t")
    with pytest.raises(ImmutableInfraError, match="unknown report format pdf"):
        _exposure.report(None, [], None, formats=["pdf"])


def test_a_waived_finding_says_so_on_its_version():
    rec = dict(SCANS[0], waived=[{"id": "CVE-2024-0001", "package": "libfoo1", "reason": "not reachable",
                                  "expires": "2027-01-31"}])
    data = _exposure.join([rec] + SCANS[1:], CHANNELS, INSTANCES, WEIGHTS)
    a, b = by_id(data)["CVE-2024-0001"], by_id(data)["CVE-2024-0002"]
    assert a["versions"][0]["waived"] == {"reason": "not reachable", "expires": "2027-01-31"}
    assert b["versions"][0]["waived"] is None
    html = page(dict(report_data(), cves=data["cves"]))
    assert 'title="not reachable">waived until 2027-01-31</span>' in html
    assert "| web:1 (waived until 2027-01-31) |" in markdown(dict(report_data(), cves=data["cves"]))


class FakeLifecycle:
    registry = "127.0.0.1:5000"

    def repositories(self):
        return ["web", "other"]

    def index(self, name):
        return {"scanned": {d(1): "t", d(2): "t"} if name == "web" else {}, "channels": []}

    def scan_result(self, name, digest):
        return {"version": {d(1): "1", d(2): "2"}[digest], "time": "t", "findings": []}

    def channels(self, name, index=None):
        return {"production": {"digest": d(2)}} if name == "web" else {}


class FakePlatform:
    def __init__(self, instances=None, error=None):
        self.instances, self.error = instances or [], error

    def list_instances(self, app=None, stack=None, group=None):
        if self.error:
            raise ImmutableInfraError(self.error)
        return self.instances


class FakeRouter:
    def load_routes(self):
        return {"endpoints": {"web/prod": {"groups": {"web-prod-v002": 100, "web-prod-v001": 0}}}}


def test_read_takes_records_channels_instances_and_weights_and_refuses_an_unreadable_platform():
    scans, chans, instances, weights = _exposure.read(
        FakeLifecycle(), [("podman", FakePlatform([{"name": "x", "group": "web-prod-v002"}]))], FakeRouter(), ["web"])
    assert [(s["repository"], s["subject"], s["version"]) for s in scans] == [("web", d(1), "1"), ("web", d(2), "2")]
    assert chans == {"web": {"production": {"digest": d(2)}}}
    assert instances == [{"name": "x", "group": "web-prod-v002", "platform": "podman"}]
    assert weights == {"web-prod-v002": 100, "web-prod-v001": 0}
    other = [{"name": "y", "group": "api-prod-v001", "app": "api"}, {"name": "x", "group": "web-prod-v002", "app": "web"}]
    instances = _exposure.read(FakeLifecycle(), [("podman", FakePlatform(other))], FakeRouter(), apps=["web"])[2]
    assert [i["name"] for i in instances] == ["x"]
    with pytest.raises(ImmutableInfraError, match="cannot read the server groups on platform libvirt: no socket"):
        _exposure.read(FakeLifecycle(), [("podman", FakePlatform()), ("libvirt", FakePlatform(error="no socket"))],
                       FakeRouter())
    with pytest.raises(ImmutableInfraError, match="unknown repository nope in registry 127.0.0.1:5000"):
        _exposure.read(FakeLifecycle(), [], FakeRouter(), ["nope"])


@pytest.mark.parametrize("old,same", [
    ("a 2026-11-30T12:00:00Z b 2026-12-01T08:30:00.5Z c", True),
    ("a 2026-11-30T12:00:00Z b 2026-12-01T08:30:00Z c!", False),
    ("a 2026-11-30T12:00:00Z b  c", False),
    ("a 2026-11-30 b 2026-11-30T12:00:00Z c", False),
    ("x 2026-11-30T12:00:00Z b 2026-11-30T12:00:00Z c", False),
    (None, False),
])
def test_only_the_generated_time_may_differ(old, same):
    template = "a %s b %s c" % (_exposure._GENERATED, _exposure._GENERATED)
    assert _exposure.same_but_generated(old, template) is same
