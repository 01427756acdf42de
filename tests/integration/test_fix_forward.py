"""Fix forward for real: a local apt repository serves immutable-canary 1.0-1; a base with it and two versions of a
web child baked on it from a git checkout (version 1 pinned by the client channel acme, the recipe then changed,
version 2 in production) are tested and promoted; an OSV advisory says 1.0-2 fixes it and the repository publishes
1.0-2. scan.yml --check changes nothing; scan.yml rebuild=true bakes a fixed base, a security rebake of version 1
from its recorded revision and a rebake of version 2 from the recipe now, tests, scans and promotes both to dev
only, and reports them ready; production and acme still run what they ran; a second run changes nothing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

from conftest import TOP, _collection_import_path, tags
from test_scan import store_sbom

SCAN = os.path.join(TOP, "playbooks", "scan.yml")


def publish_canary(repo, version):
    """Build immutable-canary <version> (dpkg-deb) into the flat repository and index it (dpkg-scanpackages)."""
    pkg = os.path.join(repo, "..", "pkg-" + version)
    os.makedirs(os.path.join(pkg, "DEBIAN"))
    with open(os.path.join(pkg, "DEBIAN", "control"), "w") as f:
        f.write("Package: immutable-canary\nVersion: %s\nArchitecture: all\nMaintainer: test <t@example.invalid>\n"
                "Description: a package the fix-forward test patches\n" % version)
    deb = os.path.join(repo, "immutable-canary_%s_all.deb" % version)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", pkg, deb], check=True, capture_output=True)
    out = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, check=True, capture_output=True, text=True)
    with open(os.path.join(repo, "Packages"), "w") as f:
        f.write(out.stdout)


def git_recipe(workdir):
    """The web recipe in a git checkout of its own (a clean revision is labelled at bake)."""
    top = os.path.join(workdir, "ff-recipes-%s" % uuid.uuid4().hex[:6])
    shutil.copytree(os.path.join(TOP, "packer", "web"), os.path.join(top, "web"))
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "web"]):
        subprocess.run(["git", "-C", top] + argv, check=True, capture_output=True)
    return os.path.join(top, "web")


def commit(recipe, message):
    top = os.path.dirname(recipe)
    for argv in (["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message]):
        subprocess.run(["git", "-C", top] + argv, check=True, capture_output=True)


POLICY = {"dev": {"tested": True}, "staging": {"tested": True, "after": "dev"},
          "production": {"tested": True, "after": "staging", "approval": True},
          "acme": {"tested": True, "after": "staging", "approval": True}}


def bake_and_release(ansible, reg, recipe, child, base_name, channels):
    """Bake the recipe as a new version of child, test it and promote it through channels; its facts."""
    bake = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
        "catalog_registry": reg, "recipe": recipe, "recipe_name": child, "recipe_parent": base_name})
    assert bake.rc == 0, bake.stderr
    image = bake.result("Bake the recipe")["image"]
    test = ansible.playbook(os.path.join(TOP, "playbooks", "test_image.yml"), {
        "catalog_registry": reg, "image": child, "version": image["version"], "recipe": recipe})
    assert test.rc == 0, test.stderr
    for channel in channels:
        moved = ansible.playbook(os.path.join(TOP, "playbooks", "promote.yml"), {
            "catalog_registry": reg, "image": child, "channel": channel, "version": image["version"],
            "promote_policy": POLICY, "promote_approved_by": "alice"})
        assert moved.rc == 0, moved.stderr
    return image


def canary_version(registry, name, image):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._sbom import read_sbom
    sbom = read_sbom(store_sbom(registry, name, image))
    return {c["name"]: c["version"] for c in sbom["components"] if c["type"] == "deb"}.get("immutable-canary")


def failures(run):
    """The failed tasks of a run, for an assertion message."""
    return json.dumps([{task["task"]["name"]: task["hosts"].get("localhost")} for play in run.doc["plays"]
                       for task in play["tasks"] if (task["hosts"].get("localhost") or {}).get("failed")], indent=1)[:6000]


def test_scan_rebuild_fixes_forward_through_the_gates(ansible, registry, workdir, env):
    uid = uuid.uuid4().hex[:6]
    base_name, child = "ffbase%s" % uid, "ffweb%s" % uid
    repo = os.path.join(workdir, "ff-apt-%s" % uid, "repo")
    os.makedirs(repo)
    publish_canary(repo, "1.0-1")
    source = "deb [trusted=yes] file://%s ./" % repo
    reg = registry["address"]
    base_vars = {"base_name": base_name, "base_packages": ["python3", "immutable-canary"], "base_apt_sources": [source]}
    run = ansible.task("immutable.infra.base_image", {
        "name": base_name, "packages": ["python3", "immutable-canary"], "apt_sources": [source], "refresh": True,
        "registry": reg})
    assert run[0] == 0, run[1]
    assert run[1]["apt_indexes"].startswith("sha256:")
    recipe = git_recipe(workdir)
    pinned = bake_and_release(ansible, reg, recipe, child, base_name, ("dev", "staging", "acme"))
    with open(os.path.join(recipe, "playbook.yml"), "a") as f:
        f.write("# changed after version 1: a security rebake of version 1 must not take this\n")
    commit(recipe, "web changes")
    old = bake_and_release(ansible, reg, recipe, child, base_name, ("dev", "staging", "production"))
    assert canary_version(registry, child, old) == "1.0-1"
    advisories = os.path.join(workdir, "ff-osv-%s" % uid)
    os.makedirs(advisories)
    with open(os.path.join(advisories, "CANARY-1.json"), "w") as f:
        json.dump({"schema_version": "1.6.0", "id": "CANARY-%s" % uid, "modified": "2026-11-01T00:00:00Z",
                   "summary": "crafted: immutable-canary before 1.0-2",
                   "affected": [{"package": {"ecosystem": "Debian:12", "name": "immutable-canary"},
                                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-2"}]}],
                                 "database_specific": {"severity": "high"}}]}, f)
    publish_canary(repo, "1.0-2")
    scan_vars = dict(base_vars, catalog_registry=reg, scan_advisories=[{"path": advisories, "format": "osv"}],
                     scan_images=[child], rebuild_repositories=[child], rebuild_recipes={child: {"recipe": recipe}},
                     rebuild=True, promote_policy=dict(POLICY, dev={"tested": True, "scan": "required"}))
    before = {n: tags(registry, n) for n in (base_name, child)}

    check = ansible.playbook(SCAN, scan_vars, check=True)
    assert check.rc == 0, check.stderr + failures(check)
    print("\n".join(check.result("Report the fix forward")["msg"]))
    assert {n: tags(registry, n) for n in (base_name, child)} == before, "check mode wrote to the registry"
    plan = check.result("Plan the fix forward")
    assert [(r["of_version"], r["kind"], r["promote_to"], r["target"]) for r in plan["rebakes"]] == [
        (pinned["version"], "security", "dev", "acme"), (old["version"], "rebake", "dev", "production")]

    run = ansible.playbook(SCAN, scan_vars)
    assert run.rc == 0, run.stderr + failures(run)
    new_base = run.results("Rebake the base with refreshed packages")[0]["results"][0]
    assert new_base["changed"] and new_base["image"]["version"] == "2"
    security, new = [r["image"] for r in run.result("Rebake the affected images on their patched parent")["results"]]
    for image in (security, new):
        assert image["parent_digest"] == new_base["image"]["digest"]
        assert canary_version(registry, child, image) == "1.0-2"
    assert security["fingerprint"] != new["fingerprint"], "the security rebake took the recipe as it is now"
    rescan = run.result("Scan the new versions")["versions"]
    assert sorted((v["version"], v["passed"], v["fixable"]) for v in rescan) == [
        (security["version"], True, 0), (new["version"], True, 0)]
    report = "\n".join(run.result("Report the fix forward")["msg"])
    print(report)
    assert "READY: %s:%s was promoted to dev" % (child, new["version"]) in report, report
    assert "-e channel=staging -e version=%s (path dev -> staging -> production)" % new["version"] in report, report
    assert "-e channel=staging -e version=%s (path dev -> staging -> acme)" % security["version"] in report, report
    info = ansible.task("immutable.infra.image_info", {"name": child, "registry": reg})[1]
    channels = {v["version"]: v["channels"] for v in info["versions"]}
    assert channels[new["version"]] == ["dev"] and channels[security["version"]] == [], channels
    assert channels[old["version"]] == ["production", "staging"] and channels[pinned["version"]] == ["acme"], channels

    # A second run (the next scheduled job) finds the fixes baked and promoted: nothing new, no channel moves.
    after = {n: tags(registry, n) for n in (base_name, child)}
    again = ansible.playbook(SCAN, scan_vars)
    assert again.rc == 0, again.stderr + failures(again)
    assert {n: tags(registry, n) for n in (base_name, child)} == after
    assert not any(r["changed"] for r in again.result("Rebake the affected images on their patched parent")["results"])
    assert all(r.get("skipped") for r in again.result("Test the new versions")["results"])
    assert all(r.get("skipped") for r in again.result("Promote the new versions to the first channel of their path")["results"])
