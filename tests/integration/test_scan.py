"""Vulnerability scans for real: a web image baked on the session's base (Debian 12), its SBOM stored
in the registry, crafted OSV advisories for one of its packages, image_scan, the scan gate of
image_channel and the scan refusal (and logged override) of release.yml."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from conftest import (RELEASE, TOP, _collection_import_path, endpoint_version, free_port, group_names, move_channel,
                      push_test_image, release_vars, traffic)


def lifecycle(registry):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
    return Lifecycle(registry["address"])


def store_sbom(registry, name, image):
    """The version's SBOM, as stored at bake; made here from the image's files when the bake stored none."""
    lc = lifecycle(registry)
    data = lc.sbom(name, image["digest"])
    if data is None:
        from ansible_collections.immutable.infra.plugins.module_utils._image_files import image_root
        from ansible_collections.immutable.infra.plugins.module_utils._sbom import build_sbom
        ref = image["reference"]
        subprocess.run(["podman", "pull", "-q", "--tls-verify=false", ref], capture_output=True, check=True, timeout=600)
        with image_root(ref) as root:
            data = build_sbom(root, name, image["created"])
        lc.put_sbom(name, image["digest"], data, image["created"])
    return data


def osv(vid, source, fixed):
    return {"schema_version": "1.6.0", "id": vid, "modified": "2026-11-01T00:00:00Z", "summary": "crafted for the test",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": source},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                          "database_specific": {"severity": "high"}}]}


@pytest.fixture(scope="module")
def scan_image(ansible, registry, base, workdir):
    """A web version `<name>:1` with its SBOM in the registry, and an OSV directory with an advisory for the
    installed version of one of its Debian packages (VULN: fixed later) and one already fixed (FIXED)."""
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._sbom import read_sbom
    name = "scanweb%s" % uuid.uuid4().hex[:6]
    run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
        "catalog_registry": registry["address"], "recipe": "web", "recipe_name": name,
        "recipe_variables": {"web_message": "scan1"}})
    assert run.rc == 0, run.stderr
    image = run.result("Bake the recipe")["image"]
    sbom = read_sbom(store_sbom(registry, name, image))
    assert sbom["os"]["id"] == "debian" and sbom["os"]["version_id"] == "12", sbom["os"]
    debs = {c["name"]: c for c in sbom["components"] if c["type"] == "deb"}
    pkg = debs.get("libc6") or sorted(debs.values(), key=lambda c: c["name"])[0]
    out = {"name": name, "image": image, "package": pkg, "vuln": "CVE-2099-%s" % uuid.uuid4().hex[:5],
           "fixed_id": "CVE-2098-%s" % uuid.uuid4().hex[:5], "dir": os.path.join(workdir, "osv-" + name)}
    os.makedirs(out["dir"])
    for vid, fixed in ((out["vuln"], pkg["source_version"] + "+sec1"), (out["fixed_id"], pkg["source_version"] + "~pre1")):
        with open(os.path.join(out["dir"], vid + ".json"), "w") as f:
            json.dump(osv(vid, pkg["source"], fixed), f)
    return out


def scan(ansible, registry, s, images=None, check=False, **more):
    args = dict({"images": images or ["%s:1" % s["name"]], "advisories": [{"path": s["dir"], "format": "osv"}],
                 "registry": registry["address"]}, **more)
    return ansible.task("immutable.infra.image_scan", args, check=check)


def test_scan_finds_the_advisory_for_the_installed_version_and_stores_the_result(ansible, registry, scan_image):
    s, lc = scan_image, lifecycle(registry)
    digest = s["image"]["digest"]
    rc, res = scan(ansible, registry, s, check=True)
    assert rc == 0 and res["changed"], res
    assert lc.scan_result(s["name"], digest) is None                  # check mode wrote nothing
    rc, res = scan(ansible, registry, s)
    assert rc == 0 and res["changed"], (res.get("msg"), res.get("module_stderr"), res.get("exception"))
    [v] = res["versions"]
    assert (v["name"], v["version"], v["digest"], v["sbom"], v["passed"]) == (s["name"], "1", digest, True, False), v
    assert v["violations"] == [s["vuln"]] and v["counts"]["high"] >= 1 and v["fixable"] >= 1
    assert s["vuln"] in v["message"] and "fails the scan policy" in v["message"]
    ids = {f["id"] for f in res["findings"]}
    assert s["vuln"] in ids and s["fixed_id"] not in ids
    found = [f for f in res["findings"] if f["id"] == s["vuln"]]
    assert {f["source"] for f in found} == {s["package"]["source"]}
    assert all(f["fixed"] == s["package"]["source_version"] + "+sec1" and f["fix_available"] and f["severity"] == "high"
               for f in found), found
    record = lc.scan_result(s["name"], digest)
    assert record["kind"] == "scan" and record["subject"] == digest and record["passed"] is False
    assert record["violations"] == [s["vuln"]] and record["advisories_digest"] == res["advisories"]["digest"]
    assert record["policy_digest"] == res["policy_digest"] and record["sbom_digest"].startswith("sha256:")

    # The same SBOM, advisories and policy: nothing is written.
    rc, again = scan(ansible, registry, s)
    assert rc == 0 and not again["changed"], again
    assert lc.scan_result(s["name"], digest)["time"] == record["time"]
    # A waiver changes the verdict: stored again.
    waiver = {"id": s["vuln"], "reason": "not reachable in this image", "expires": "2999-12-31"}
    rc, waived = scan(ansible, registry, s, policy={"waivers": [waiver]})
    assert rc == 0 and waived["changed"] and waived["versions"][0]["passed"], waived
    assert lc.scan_result(s["name"], digest)["waived"][0]["reason"] == "not reachable in this image"
    rc, back = scan(ansible, registry, s)                              # the default policy again: stored again
    assert rc == 0 and back["changed"] and not back["versions"][0]["passed"]


def test_a_version_without_sbom_is_reported_and_fails_only_a_policy_requiring_scans(ansible, registry, scan_image):
    s = scan_image
    push_test_image(registry, s["name"], "0")
    images = ["%s:0" % s["name"]]
    rc, res = scan(ansible, registry, s, images=images)
    assert rc == 0 and not res["changed"], res
    [v] = res["versions"]
    assert not v["sbom"] and v["passed"] and "has no SBOM" in v["message"] and "rebake" in v["message"], v
    rc, res = scan(ansible, registry, s, images=images, policy={"require_scan": True})
    assert rc == 0 and not res["versions"][0]["passed"] and res["totals"]["without_sbom"] == 1, res


def test_bad_waivers_and_bad_advisories_fail_and_store_nothing(ansible, registry, scan_image, workdir):
    s, lc = scan_image, lifecycle(registry)
    before = lc.scan_result(s["name"], s["image"]["digest"])
    rc, res = scan(ansible, registry, s, policy={"waivers": [{"id": s["vuln"], "expires": "2027-01-31"}]})
    assert rc != 0 and "has no reason" in res["msg"], res
    rc, res = scan(ansible, registry, s, policy={"waivers": [{"id": s["vuln"], "reason": "r", "expires": "soon"}]})
    assert rc != 0 and "bad date 'soon'" in res["msg"], res
    bad = os.path.join(workdir, "bad-osv-%s.json" % s["name"])
    with open(bad, "w") as f:
        f.write("{not json")
    rc, res = ansible.task("immutable.infra.image_scan", {"images": ["%s:1" % s["name"]], "registry": registry["address"],
                                                          "advisories": [{"path": bad, "format": "osv"}]})
    assert rc != 0 and bad in res["msg"], res
    assert lc.scan_result(s["name"], s["image"]["digest"]) == before


def promote(ansible, registry, s, channel, **more):
    return ansible.task("immutable.infra.image_channel", dict({
        "name": s["name"], "channel": channel, "version": "1", "gates": {"scan": True},
        "registry": registry["address"]}, **more))


def test_the_scan_gate_refuses_a_failing_version_and_passes_it_after_a_waiver(ansible, registry, scan_image):
    s, lc = scan_image, lifecycle(registry)
    rc, res = scan(ansible, registry, s)
    assert rc == 0 and not res["versions"][0]["passed"], res
    rc, res = promote(ansible, registry, s, "staging")
    assert rc != 0 and "refused by gate scan" in res["msg"] and s["vuln"] in res["msg"], res
    assert "Nothing was changed" in res["msg"] and lc.channel(s["name"], "staging") is None
    expired = {"id": s["vuln"], "reason": "accepted until the rebake", "expires": "2020-01-01"}
    rc, res = promote(ansible, registry, s, "staging", scan_policy={"waivers": [expired]})
    assert rc != 0 and "expired waiver(s): %s" % s["vuln"] in res["msg"], res
    waiver = dict(expired, expires="2999-12-31")
    rc, res = promote(ansible, registry, s, "staging", scan_policy={"waivers": [waiver]})
    assert rc == 0 and res["changed"], res
    assert lc.channel(s["name"], "staging")["digest"] == s["image"]["digest"]
    gate = [g for g in res["gates"] if g["name"] == "scan"][0]
    assert gate["passed"] and "waived: %s" % s["vuln"] in gate["detail"]


def test_release_refuses_a_failing_version_and_takes_a_logged_override(ansible, registry, scan_image, apps):
    s, lc = scan_image, lifecycle(registry)
    rc, res = scan(ansible, registry, s)
    assert rc == 0 and not res["versions"][0]["passed"], res
    app, port = apps("scan"), free_port()
    run = ansible.playbook(RELEASE, release_vars(registry, app, "%s:1" % s["name"], port))
    assert run.rc != 0
    msg = run.result("Fail with the reason")["msg"]
    assert "fails the scan policy" in msg and s["vuln"] in msg and "release_scan_override" in msg, msg
    assert not run.results("Create the new server group (or find the one running this image)")
    assert group_names(ansible, app) == [] and traffic(ansible, app) is None

    reason = "hotfix for INC-%s" % uuid.uuid4().hex[:4]
    run = ansible.playbook(RELEASE, release_vars(registry, app, "%s:1" % s["name"], port, release_scan_override=reason,
                                                 release_actor="carol"))
    assert run.rc == 0, run.stderr[-3000:]
    checked = run.result("Check the version against the scan policy")
    assert any("OVERRIDDEN by carol (%s)" % reason in w for w in checked.get("warnings", [])), checked
    assert reason in run.result("Report the scan policy override")["msg"]
    assert endpoint_version(port)["message"] == "scan1"
    override = lc.scan_result(s["name"], s["image"]["digest"])["overrides"][-1]
    assert (override["by"], override["reason"], override["for"]) == ("carol", reason, "release to %s/prod" % app)
    assert override["violations"] == [s["vuln"]] and override["time"]
    # The same release run again is a no-op: the same decision is not recorded twice.
    count = len(lc.scan_result(s["name"], s["image"]["digest"])["overrides"])
    run = ansible.playbook(RELEASE, release_vars(registry, app, "%s:1" % s["name"], port, release_scan_override=reason,
                                                 release_actor="carol"))
    assert run.rc == 0 and run.result("Check the version against the scan policy")["changed"] is False
    assert len(lc.scan_result(s["name"], s["image"]["digest"])["overrides"]) == count


def test_promote_yml_gates_staging_on_the_scan_and_lets_an_unscanned_version_through(ansible, registry, scan_image):
    """promote.yml's default pipeline (as the demo runs it): staging wants scan: true."""
    s, lc = scan_image, lifecycle(registry)
    rc, res = scan(ansible, registry, s)
    assert rc == 0 and not res["versions"][0]["passed"], res
    repo = "scanpro%s" % uuid.uuid4().hex[:6]
    failing = push_test_image(registry, repo, "1")
    unscanned = push_test_image(registry, repo, "2")
    # The failing scan of scan_image, stored for this repository's version 1 (its findings are what the gate reads).
    lc.record_scan(repo, failing, dict(lc.scan_result(s["name"], s["image"]["digest"]), subject=failing, repository=repo))
    for digest in (failing, unscanned):
        lc.record_test(repo, digest, {"status": "passed", "by": "it"})

    def promote(channel, version, **more):
        return ansible.playbook(os.path.join(TOP, "playbooks", "promote.yml"), dict(
            {"image": repo, "channel": channel, "version": version, "catalog_registry": registry["address"]}, **more))

    for version in ("1", "2"):
        assert promote("dev", version).rc == 0
    run = promote("staging", "2")
    assert run.rc == 0, run.stderr[-2000:]
    assert lc.channel(repo, "staging")["digest"] == unscanned
    run = promote("staging", "1")
    assert run.rc != 0
    msg = run.result("Move channel staging of %s" % repo)["msg"]
    assert "refused by gate scan" in msg and s["vuln"] in msg, msg
    assert lc.channel(repo, "staging")["digest"] == unscanned
    waiver = {"id": s["vuln"], "reason": "not reachable", "expires": "2999-12-31"}
    run = promote("staging", "1", security_policy={"waivers": [waiver]})
    assert run.rc == 0, run.stderr[-2000:]
    assert lc.channel(repo, "staging")["digest"] == failing


def test_by_default_every_channel_head_is_scanned(ansible, registry, scan_image, env):
    s = scan_image
    repo = "scandef%s" % uuid.uuid4().hex[:6]
    head, other = push_test_image(registry, repo, "1"), push_test_image(registry, repo, "2")
    move_channel(env, registry, repo, "production", head)
    rc, res = ansible.task("immutable.infra.image_scan", {"advisories": [{"path": s["dir"], "format": "osv"}],
                                                          "registry": registry["address"], "platforms": ["podman"]},
                           check=True)
    assert rc == 0, res
    mine = [v for v in res["versions"] if v["name"] == repo]
    assert [(v["digest"], v["referenced_by"], v["sbom"]) for v in mine] == [
        (head, ["channel production of %s (head)" % repo], False)], mine
    assert other not in {v["digest"] for v in res["versions"]}
