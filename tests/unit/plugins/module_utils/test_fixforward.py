"""Fix-forward planning (pure) and the base's apt sources (pure parts)."""
from __future__ import annotations

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _apt_sources as apt
from ansible_collections.immutable.infra.plugins.module_utils import _fixforward as ff
from ansible_collections.immutable.infra.plugins.module_utils._base_image import base_fingerprint
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

REG = "127.0.0.1:5000"
REV = "a" * 40
POLICY = {"dev": {"tested": True}, "staging": {"tested": True, "after": "dev"},
          "production": {"tested": True, "after": "staging", "approval": True},
          "acme": {"tested": True, "after": "staging", "approval": True}}


def d(n):
    return "sha256:" + ("%x" % n) * 64


def v(name, tag, digest, parent=None, revision=REV):
    labels = {"infra.immutable.recipe": name}
    return {"tag": tag, "version": tag, "digest": digest, "revision": revision, "labels": labels,
            "parent_name": "%s/%s" % (REG, parent[0]) if parent else None, "parent_digest": parent[1] if parent else None}


def scan(*ids, fix=True):
    return {"findings": [{"id": i, "fix_available": fix} for i in ids]}


def state():
    versions = {"immutable/base": [v("immutable/base", "1", d(1))],
                "web": [v("web", "1", d(2), ("immutable/base", d(1))), v("web", "2", d(3), ("immutable/base", d(1)))]}
    heads = {"web": {"production": d(3), "acme": d(2)}}
    scans = {d(2): scan("CVE-1"), d(3): scan("CVE-1")}
    return versions, heads, scans


def test_current_line_and_pinned_client_version():
    versions, heads, scans = state()
    out = ff.plan(versions, heads, {}, scans, POLICY, REG)
    assert out["bases"] == ["immutable/base"]
    assert [(a["version"], a["action"]) for a in out["affected"]] == [("1", "security"), ("2", "rebake")]
    security, current = out["rebakes"]
    assert (security["kind"], security["of_version"], security["path"], security["promote_to"]) == (
        "security", "1", ["dev", "staging", "acme"], "dev")
    assert security["parent"] == REG + "/immutable/base" and security["parent_channel"] is None
    assert "web:1" in security["reason"] and "CVE-1" in security["reason"]
    assert (current["kind"], current["target"], current["next_channel"]) == ("rebake", "production", "staging")
    assert out["refused"] == []


def test_nothing_fixable_or_not_in_use_plans_nothing():
    versions, heads, scans = state()
    assert ff.plan(versions, heads, {}, {d(2): scan("CVE-1", fix=False)}, POLICY, REG)["rebakes"] == []
    assert ff.plan(versions, {}, {}, scans, POLICY, REG)["affected"] == []
    # A stack running it counts as use.
    out = ff.plan(versions, {}, {d(3): ["server group web-prod-v001 on podman"]}, scans, POLICY, REG)
    assert [r["serves"] for r in out["rebakes"]] == [["stack"]] and out["rebakes"][0]["promote_to"] == "dev"


def test_dirty_revision_is_refused_naming_why():
    versions, heads, scans = state()
    versions["web"][0]["revision"] = REV + "-dirty"
    out = ff.plan(versions, heads, {}, scans, POLICY, REG)
    assert [r["of_version"] for r in out["rebakes"]] == ["2"]
    assert "local changes" in out["refused"][0]["why"] and "recipes['web:1']" in out["refused"][0]["why"]


def test_intermediate_parent_first_and_its_children_follow():
    versions = {"immutable/base": [v("immutable/base", "1", d(1))],
                "py": [v("py", "1", d(4), ("immutable/base", d(1)))],
                "api": [v("api", "1", d(5), ("py", d(4)))],
                "worker": [v("worker", "1", d(6), ("py", d(4)))]}
    heads = {"api": {"dev": d(5)}, "worker": {"dev": d(6)}}
    out = ff.plan(versions, heads, {}, {d(5): scan("CVE-2")}, POLICY, REG)
    assert [(r["name"], r["depth"]) for r in out["rebakes"]] == [("py", 1), ("api", 2), ("worker", 2)]
    assert out["rebakes"][2]["fixes"] == []


def test_standalone_client_channel_is_never_moved():
    versions, heads, scans = state()
    policy = dict(POLICY, acme={"tested": True})
    security = ff.plan(versions, heads, {}, scans, policy, REG)["rebakes"][0]
    assert security["path"] == ["acme"] and security["promote_to"] is None


def test_channel_path():
    assert ff.channel_path(POLICY, "production") == ["dev", "staging", "production"]
    assert ff.channel_path({"a": {"after": "b"}, "b": {"after": "a"}}, "a") == ["b", "a"]
    assert ff.main_path(POLICY) in (["dev", "staging", "production"], ["dev", "staging", "acme"])


def test_apt_sources_are_checked_and_kept_out_of_the_image(tmp_path):
    with pytest.raises(ImmutableInfraError, match="not a one-line apt source"):
        apt.check_sources(["deb file:///x ./\nrm -rf /"])
    line = "deb [trusted=yes] file:///srv/repo ./"
    apt.check_sources([line, "deb http://deb.debian.org/debian-security bookworm-security main"])
    argv = apt.extra_source_hooks([line], str(tmp_path))
    assert (tmp_path / apt.EXTRA_LIST).read_text() == line + "\n"
    assert argv[1] == "--hook-dir=" + apt.FILE_MIRROR_HOOKS and argv[-1].startswith("--customize-hook=rm -f")
    assert apt.build_sources({"suite": "bookworm", "mirror": "http://m/debian"}) == ["deb http://m/debian bookworm main"]
    assert len(apt.build_sources({"suite": "bookworm", "apt_sources": [line]})) == 4


def test_base_fingerprint_keeps_old_bases_and_covers_the_new_inputs():
    params = {"suite": "bookworm", "variant": "minbase", "packages": ["python3"]}
    plain = base_fingerprint(params)
    assert base_fingerprint(dict(params, apt_sources=[])) == plain
    with_source = base_fingerprint(dict(params, apt_sources=["deb file:///r ./"]))
    assert with_source != plain
    assert base_fingerprint(params, "sha256:1") != base_fingerprint(params, "sha256:2") != plain


def _git(top, *argv):
    import subprocess
    return subprocess.run(["git", "-C", str(top), "-c", "user.name=t", "-c", "user.email=t@example.invalid"] + list(argv),
                          check=True, capture_output=True, text=True).stdout.strip()


def test_security_rebake_source_is_the_recipe_at_its_revision(tmp_path):
    top = tmp_path / "src"
    (top / "recipes" / "web").mkdir(parents=True)
    (top / "recipes" / "web" / "build.pkr.hcl").write_text("old\n")
    _git(top, "init", "-q")
    _git(top, "add", ".")
    _git(top, "commit", "-qm", "old")
    old = _git(top, "rev-parse", "HEAD")
    (top / "recipes" / "web" / "build.pkr.hcl").write_text("new\n")
    _git(top, "commit", "-qam", "new")
    cache = tmp_path / "cache"
    path = ff.recipe_at_revision(str(top / "recipes" / "web"), old, str(cache))
    assert open(path + "/build.pkr.hcl").read() == "old\n"
    assert ff.recipe_at_revision(str(top / "recipes" / "web"), old, str(cache)) == path  # extracted once
    with pytest.raises(ImmutableInfraError, match="has no recipes/web"):
        ff.recipe_at_revision(str(top / "recipes" / "web"), "b" * 40, str(cache))
    result = {"rebakes": [{"kind": "security", "recipe": "web", "revision": "c" * 40}], "refused": []}
    ff.materialise(result, str(tmp_path / "nowhere"), str(cache))
    assert result["rebakes"] == [] and "recipe web not found" in result["refused"][0]["why"]


def test_this_runs_scan_counts_in_check_mode():
    result = {"versions": [{"name": "web", "version": "2", "digest": d(3)}, {"name": "web", "version": "1", "digest": d(2)}],
              "findings": [{"id": "CVE-9", "fix_available": True, "images": ["web:2"]}]}
    assert ff.scans_from_result(result) == {d(3): {"findings": [result["findings"][0]]}, d(2): {"findings": []}}
