"""exposure_report, for real: two stacks of one app run different versions as podman server
groups released through playbooks/release.yml and the haproxy router (prod: v001 retained on
version 1, v002 live on version 2; acme: v001 live on version 1), channels point at both versions,
scan records are stored beside them (Lifecycle.record_scan, the scan contract's format). The report
must name the right groups, stacks, traffic, instance counts and zones per CVE; its files are
written only when their content changes; the HTML page renders in headless Chromium (Debian's
package), whose DOM must hold the tables and names, and whose screenshot is kept as an artifact."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from html.parser import HTMLParser

import pytest

from conftest import RELEASE, TOP, _collection_import_path, free_port, move_channel, release_vars

CREATED = "org.opencontainers.image.created"


def second_version(registry, source, name):
    """Version 2 of a baked repository: the same service with a label of its own (its own digest)."""
    target = "%s/%s:2" % (registry["address"], name)
    ctx = os.path.join(TOP, ".cache", "exposure-build-%s" % uuid.uuid4().hex[:8])
    os.makedirs(ctx)
    try:
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write("FROM %s\n" % source)
        for argv in (["podman", "pull", "-q", "--tls-verify=false", source],
                     ["podman", "build", "-q", "-t", target, "--label", "exposure.test=%s" % uuid.uuid4().hex,
                      "--label", "org.opencontainers.image.version=2", ctx],
                     ["podman", "push", "-q", "--tls-verify=false", target]):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
            assert proc.returncode == 0, (argv, proc.stderr)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
        subprocess.run(["podman", "untag", target], capture_output=True, check=False)
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--no-tags", "docker://" + target],
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)["Digest"]


def finding(cid, severity, package, installed, fixed, aliases=()):
    return {"id": cid, "aliases": list(aliases), "package": package, "source": package, "type": "deb",
            "installed": installed, "fixed": fixed, "fix_available": fixed is not None, "severity": severity,
            "urgency": None, "summary": "crafted for the exposure test", "feeds": ["test"]}


def record_scan(registry, name, version, digest, findings, waived=()):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
    counts = {}
    for f in findings:
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    Lifecycle(registry["address"]).record_scan(name, digest, {
        "kind": "scan", "subject": digest, "repository": name, "version": version, "time": "2026-11-30T10:00:00Z",
        "epoch": 1795946400.0, "by": "exposure-test", "sbom_digest": None, "advisories_digest": "sha256:" + "0" * 64,
        "advisories": [{"source": "test", "count": len(findings)}], "findings": findings, "counts": counts,
        "fixable": sum(1 for f in findings if f["fix_available"]), "policy": {}, "policy_digest": None,
        "passed": False, "violations": [f["id"] for f in findings], "waived": list(waived)})


@pytest.fixture(scope="module")
def fleet(ansible, registry, base, apps, env):
    """The web recipe baked as version 1 of a new repository, version 2 made from it; app `exp..` released
    as prod (1 then 2: v001 retained, v002 live; 2 instances in zone-a, zone-b) and acme (1: one instance
    in zone-c); channels production -> 2, acme -> 1; scan records on both versions."""
    name, app = "expweb%s" % uuid.uuid4().hex[:6], apps("exp")
    run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
        "catalog_registry": registry["address"], "recipe": "web", "recipe_name": name,
        "recipe_variables": {"web_message": "exp1"}})
    assert run.rc == 0, run.stderr[-3000:]
    v1 = run.result("Bake the recipe")["image"]
    d1, d2 = v1["digest"], second_version(registry, v1["reference"], name)
    for stack, image, port, zones in (("prod", name + ":1", free_port(), ["zone-a", "zone-b"]),
                                      ("prod", name + ":2", None, ["zone-a", "zone-b"]),
                                      ("acme", name + ":1", free_port(), ["zone-c"])):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, port, stack=stack, release_zones=zones,
                                                     release_count=len(zones)))
        assert run.rc == 0, (stack, image, run.stderr[-3000:])
    move_channel(env, registry, name, "production", d2)
    move_channel(env, registry, name, "acme", d1)
    record_scan(registry, name, "1", d1, [
        finding("CVE-2031-0002", "high", "libexp2", "2.0-1", None),
        finding("CVE-2031-0001", "critical", "libexp1", "1.0-1", "1.0-2", aliases=["DSA-9001-1"])])
    record_scan(registry, name, "2", d2, [finding("CVE-2031-0002", "high", "libexp2", "2.0-3", None)],
                waived=[{"id": "CVE-2031-0002", "package": "libexp2", "reason": "not reachable", "expires": "2031-12-31"}])
    return {"name": name, "app": app, "d1": d1, "d2": d2}


def exposure(ansible, registry, fleet, check=False, diff=False, **args):
    rc, res = ansible.task("immutable.infra.exposure_report", dict(
        {"registry": registry["address"], "repositories": [fleet["name"]], "apps": [fleet["app"]],
         "platforms": ["podman"]}, **args),
        check=check, diff=diff)
    assert rc == 0, res
    return res


def mine(groups, app):
    return {g["name"]: (g["traffic"], g["instances"], g["zones"], g["version"]) for g in groups if g["app"] == app}


def test_report_names_groups_stacks_instances_and_zones_per_cve(ansible, registry, fleet):
    app, name = fleet["app"], fleet["name"]
    res = exposure(ansible, registry, fleet)
    assert not res["changed"] and res["files"] == []
    cves = {c["id"]: c for c in res["cves"]}
    assert [c["id"] for c in res["cves"]] == ["CVE-2031-0001", "CVE-2031-0002"]      # worst first
    crit = cves["CVE-2031-0001"]
    assert [(v["version"], v["digest"]) for v in crit["versions"]] == [("1", fleet["d1"])]
    assert crit["channels"] == ["%s:acme" % name] and crit["aliases"] == ["DSA-9001-1"] and crit["fix_available"]
    assert mine(crit["groups"], app) == {
        "%s-acme-v001" % app: ("live", 1, ["zone-c"], "1"),
        "%s-prod-v001" % app: ("retained", 2, ["zone-a", "zone-b"], "1")}
    assert crit["live_stacks"] == ["%s/acme" % app] and crit["stacks"] == ["%s/acme" % app, "%s/prod" % app]
    assert (crit["instances"], crit["live_instances"], crit["zones"]) == (3, 1, ["zone-a", "zone-b", "zone-c"])
    high = cves["CVE-2031-0002"]
    assert high["channels"] == ["%s:acme" % name, "%s:production" % name] and not high["fix_available"]
    assert mine(high["groups"], app) == {
        "%s-acme-v001" % app: ("live", 1, ["zone-c"], "1"),
        "%s-prod-v001" % app: ("retained", 2, ["zone-a", "zone-b"], "1"),
        "%s-prod-v002" % app: ("live", 2, ["zone-a", "zone-b"], "2")}
    assert (high["instances"], high["live_instances"]) == (5, 3)
    assert [(v["version"], v["waived"]) for v in high["versions"]] == [
        ("1", None), ("2", {"reason": "not reachable", "expires": "2031-12-31"})]

    stacks = {s["name"]: s for s in res["stacks"] if s["app"] == app}
    prod, acme = stacks["%s/prod" % app], stacks["%s/acme" % app]
    assert prod["worst"] == acme["worst"] == "critical"
    assert [(c["id"], c["groups"], c["live_groups"]) for c in prod["cves"]] == [
        ("CVE-2031-0001", ["%s-prod-v001" % app], []),
        ("CVE-2031-0002", ["%s-prod-v002" % app, "%s-prod-v001" % app], ["%s-prod-v002" % app])]
    assert {g["name"]: g["cves"] for g in prod["groups"]} == {
        "%s-prod-v002" % app: ["CVE-2031-0002"], "%s-prod-v001" % app: ["CVE-2031-0001", "CVE-2031-0002"]}
    assert [c["id"] for c in acme["cves"]] == ["CVE-2031-0001", "CVE-2031-0002"] and acme["instances"] == 1

    # Asked by alias: the one CVE; a name nobody has is reported as not found.
    only = exposure(ansible, registry, fleet, cves=["dsa-9001-1", "CVE-1999-0001"])
    assert [c["id"] for c in only["cves"]] == ["CVE-2031-0001"] and only["not_found"] == ["CVE-1999-0001"]


class Dom(HTMLParser):
    """Table cells (text) and section ids of a DOM Chromium dumped."""

    def __init__(self):
        super().__init__()
        self.tables, self.sections, self.cell = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"class": attrs.get("class"), "cells": []})
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1]["cells"].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def chromium(tmp_path, *args):
    home = tmp_path / "chromium-home"
    home.mkdir(exist_ok=True)
    argv = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=%s" % (home / "profile"),
            "--window-size=1280,2000"] + list(args)
    proc = subprocess.run(argv, env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, timeout=180,
                          check=False)
    assert proc.returncode == 0, (argv, proc.stderr[-2000:])
    return proc.stdout


def test_reports_are_written_once_and_the_page_renders_in_chromium(ansible, registry, fleet, tmp_path):
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    app, dest = fleet["app"], str(tmp_path / "reports")
    plan = exposure(ansible, registry, fleet, check=True, diff=True, dest=dest)
    assert plan["changed"] and all(f["changed"] for f in plan["files"]) and not os.path.exists(dest)
    done = exposure(ansible, registry, fleet, dest=dest)
    assert done["changed"] and sorted(os.listdir(dest)) == ["exposure.html", "exposure.json", "exposure.md"]
    with open(os.path.join(dest, "exposure.json")) as f:
        stored = json.load(f)
    assert [c["id"] for c in stored["cves"]] == ["CVE-2031-0001", "CVE-2031-0002"]
    stamps = {n: os.stat(os.path.join(dest, n)).st_mtime_ns for n in os.listdir(dest)}
    again = exposure(ansible, registry, fleet, dest=dest)             # a new generated time only: nothing written
    assert not again["changed"] and again["generated"] >= done["generated"], again["files"]
    assert {n: os.stat(os.path.join(dest, n)).st_mtime_ns for n in os.listdir(dest)} == stamps
    with open(os.path.join(dest, "exposure.md")) as f:
        md = f.read()
    assert "## CVE-2031-0001 (critical, fix available) aka DSA-9001-1" in md and "%s-acme-v001" % app in md

    page = "file://" + os.path.join(dest, "exposure.html")
    dom = Dom()
    dom.feed(chromium(tmp_path, "--dump-dom", page))
    assert "cve-CVE-2031-0001" in dom.sections and "stack-%s/prod" % app in dom.sections
    cve_tables = [t["cells"] for t in dom.tables if t["class"] == "cve-table"]
    assert len(cve_tables) == 2
    assert {"%s-acme-v001" % app, "%s-prod-v001" % app, "zone-c", "zone-a, zone-b"} <= set(cve_tables[0])
    assert "%s-prod-v002" % app not in cve_tables[0] and "%s-prod-v002" % app in cve_tables[1]
    runs = [t["cells"] for t in dom.tables if t["class"] == "runs"]
    assert any("%s-prod-v002" % app in cells and "live" in cells for cells in runs)
    assert any(cell.endswith("waived until 2031-12-31") for cell in cve_tables[1])

    shot = tmp_path / "exposure.png"
    chromium(tmp_path, "--screenshot=%s" % shot, page)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10000
    print("exposure page screenshot: %s" % shot)
