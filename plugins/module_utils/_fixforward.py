# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fix forward: from the stored scans of the versions in use, which images to
bake again on their patched parent, and where each new version goes.

A version is in use when a channel points at it or a server group runs it. It
is affected when its latest scan has a finding with a fix available. Its
repository's newest version is the recipe's current line: it is baked again
from the recipe as it is now, on the newest version of its parent repository
(the patched base, baked just before). Any other affected version in use is
pinned (a client's channel, a stack that stays on it): it gets a security
rebake - its own recipe at the git revision it was baked from (label
org.opencontainers.image.revision), on the patched parent - a new version that
fixes it without the changes made to the recipe since. Both go through the
same gates: they are promoted to the first channel of the path to the channel
they serve (the promotion policy's `after` chain), never further; the channel a
client runs on is never moved by fix forward unless it is itself the first
step of its path, and then only by the normal gates. Intermediate images (a
parent that is itself baked on the base) are baked again before their
children, and children in use of a repository baked again follow it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile

from ansible_collections.immutable.infra.plugins.module_utils._ancestry import bake_request, recorded_parent
from ansible_collections.immutable.infra.plugins.module_utils._catalog import LABEL_REVISION, version_key
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

_CLEAN_REVISION = re.compile(r"^[0-9a-f]{40}$")


# ------------------------------------------------------------------ pure logic
def fixable(record):
    """The findings of a scan record that have a fix available."""
    return [f for f in (record or {}).get("findings") or [] if f.get("fix_available")]


def channel_path(policy, channel):
    """[first, ..., channel]: the channels a version passes through to reach `channel`
    (its `after` chain in the promotion policy). A channel not in the policy is its own path."""
    path, seen = [channel], {channel}
    while True:
        after = ((policy or {}).get(path[0]) or {}).get("after")
        if not after or after in seen:
            return path
        path.insert(0, after)
        seen.add(after)


def main_path(policy):
    """The longest path of the policy (dev -> staging -> production by default), or []."""
    paths = [channel_path(policy, c) for c in sorted(policy or {})]
    return max(paths, key=len) if paths else []


def _short(name):
    return name.rsplit("/", 1)[-1]


def lineage(facts, by_digest, registry):
    """[root, ..., facts]: the version's ancestors in this registry, oldest first."""
    chain = [facts]
    while chain[0].get("parent_digest"):
        parent = by_digest.get(chain[0]["parent_digest"])
        if parent is None or recorded_parent(chain[0], registry) != parent["name"]:
            break
        chain.insert(0, parent)
    return chain


def _recipe_for(name, facts, recipes):
    """bake_request's recipe for `name`, with recipes["<name>:<version>"] overriding recipes[name]."""
    given = dict(recipes or {})
    key = "%s:%s" % (name, facts.get("tag") or facts.get("version"))
    if key in given:
        given[name] = given.pop(key)
    req = bake_request(name, facts, {k: v for k, v in given.items() if ":" not in k})
    req["parent_channel"] = None  # on the patched parent itself: the newest version of the parent repository
    return req


def plan(versions, heads, live, scans, policy, registry, recipes=None, repositories=None):
    """The fix-forward plan.

    versions: {repository: [version facts (tag, digest, parent_name, parent_digest, labels, ...)]};
    heads: {repository: {channel: digest}}; live: {digest: [reasons]} (server groups);
    scans: {digest: scan record}; policy: the promotion policy {channel: gates};
    repositories: fix only versions of these (None: all); their ancestors are baked again all the same.
    Returns {"affected": [...], "bases": [repositories], "rebakes": [...], "refused": [...]}."""
    by_digest, newest = {}, {}
    for name, facts_list in versions.items():
        for f in facts_list:
            by_digest[f["digest"]] = dict(f, name=name)
        tags = sorted((f["tag"] for f in facts_list), key=version_key)
        newest[name] = tags[-1] if tags else None
    channels_of = {}
    for name, chans in heads.items():
        for channel, digest in chans.items():
            channels_of.setdefault(digest, []).append(channel)
    first = (main_path(policy) or [None])[0]
    affected, rebakes, refused, bases = [], {}, [], set()

    def add(facts, kind, fixes, serves):
        key = (facts["name"], "current" if kind == "rebake" else facts["digest"])
        entry = rebakes.get(key)
        if entry is None:
            entry = rebakes[key] = {"name": facts["name"], "kind": kind, "of_version": facts["tag"],
                                    "of_digest": facts["digest"], "fixes": [], "serves": [], "depth": 0}
        entry["fixes"] = sorted(set(entry["fixes"]) | set(fixes))
        entry["serves"] = sorted(set(entry["serves"]) | set(serves))
        return entry

    for digest, facts in sorted(by_digest.items(), key=lambda kv: (kv[1]["name"], version_key(kv[1]["tag"]))):
        used = ["channel %s" % c for c in sorted(channels_of.get(digest, []))] + list(live.get(digest, []))
        found = fixable(scans.get(digest))
        if not used or not found or (repositories and facts["name"] not in repositories):
            continue
        ids = sorted({f["id"] for f in found})
        chain = lineage(facts, by_digest, registry)
        item = {"name": facts["name"], "version": facts["tag"], "digest": digest, "in_use": used,
                "fixable": ids, "base": chain[0]["name"]}
        affected.append(item)
        bases.add(chain[0]["name"])
        if len(chain) == 1:
            item["action"] = "base"  # the base itself: the refreshed base is its fix
            continue
        serves = sorted(channels_of.get(digest, [])) or ["stack"]
        for depth, link in enumerate(chain[1:], start=1):
            current = link["tag"] == newest[link["name"]]
            kind = "rebake" if current else "security"
            entry = add(link, kind, ids, serves if link is facts else [])
            entry["depth"] = max(entry["depth"], depth)
        item["action"] = "rebake" if facts["tag"] == newest[facts["name"]] else "security"
    # Children in use of an intermediate repository baked again follow it (their parent changed).
    rebaked = {e["name"] for e in rebakes.values() if e["depth"] >= 1}
    for digest, facts in sorted(by_digest.items()):
        parent = recorded_parent(facts, registry)
        if parent in rebaked and parent not in bases and facts["tag"] == newest[facts["name"]] \
                and (channels_of.get(digest) or live.get(digest)):
            depth = max(e["depth"] for e in rebakes.values() if e["name"] == parent) + 1
            entry = add(facts, "rebake", [], sorted(channels_of.get(digest, [])) or ["stack"])
            entry["depth"] = max(entry["depth"], depth)
    out = []
    for entry in sorted(rebakes.values(), key=lambda e: (e["depth"], e["kind"] != "security", e["name"])):
        facts = by_digest[entry["of_digest"]]
        req = _recipe_for(entry["name"], facts, recipes)
        targets = [c for c in entry["serves"] if c != "stack"]
        paths = [channel_path(policy, c) for c in targets] or [main_path(policy)]
        path = max(paths, key=len) if paths else []
        # A client's channel outside every path (no `after`) is never moved by fix forward.
        promote_to = path[0] if path and (len(path) > 1 or path[0] == first) else None
        entry.update(req, path=path, promote_to=promote_to,
                     next_channel=path[1] if len(path) > 1 else None, target=path[-1] if path else None,
                     revision=facts.get("revision") or (facts.get("labels") or {}).get(LABEL_REVISION))
        if entry["kind"] == "security":
            entry["reason"] = "security rebake of %s:%s (%s) on its patched parent, fixing %s" % (
                entry["name"], entry["of_version"], entry["of_digest"], ", ".join(entry["fixes"]) or "its parent")
            if not entry["revision"] or not _CLEAN_REVISION.match(entry["revision"]):
                refused.append(dict(entry, why=(
                    "version %s:%s records %s: its recipe source cannot be recovered exactly; bake it from a clean "
                    "commit, or map recipes['%s:%s'] to a checkout of its recipe and run again" % (
                        entry["name"], entry["of_version"],
                        "the revision %s (local changes)" % entry["revision"] if entry["revision"]
                        else "no source revision", entry["name"], entry["of_version"]))))
                continue
        else:
            entry["reason"] = "fix forward of %s on its patched parent, fixing %s" % (
                entry["name"], ", ".join(entry["fixes"]) or "its parent")
        out.append(entry)
    return {"affected": affected, "bases": sorted(bases), "rebakes": out, "refused": refused}


# ------------------------------------------------------------------ I/O
def read_state(lifecycle, live_refs, promoted=None):
    """(versions, heads, scans) of every repository of the registry; fills `promoted`
    {repository: {channel: [every digest it was moved to]}}."""
    versions, heads, scans = {}, {}, {}
    promoted = {} if promoted is None else promoted
    for name in sorted(lifecycle.repositories()):
        index = lifecycle.index(name)
        described = lifecycle.describe_all(name, index=index)
        versions[name] = described["versions"]
        heads[name] = {c: r["digest"] for c, r in described["channels"].items() if r.get("digest")}
        promoted[name] = {c: sorted({m.get("to") for m in r.get("history") or [] if m.get("to")})
                          for c, r in described["channels"].items()}
        used = set(heads[name].values()) | set(live_refs)
        for digest in index["scanned"]:
            if digest in used:
                scans[digest] = lifecycle.scan_result(name, digest)
    return versions, heads, scans


def recipe_path(recipe, recipes_dir):
    """A recipe name (shipped, under recipes_dir) or a path, as an absolute directory."""
    path = recipe if "/" in recipe else os.path.join(recipes_dir or ".", recipe)
    if not os.path.isdir(path):
        raise ImmutableInfraError("recipe %s not found (looked at %s): map the repository in recipes" % (recipe, path))
    return os.path.abspath(path)


def recipe_at_revision(recipe_dir, revision, cache_dir):
    """The recipe directory as it was at `revision`, extracted with git archive into cache_dir
    (kept: the same revision is extracted once). Refuses a revision git does not know."""
    rc, top, err = run(["git", "-C", recipe_dir, "rev-parse", "--show-toplevel"], check=False)
    if rc != 0:
        raise ImmutableInfraError("recipe %s is not in a git checkout (%s): its source at revision %s cannot be "
                                  "recovered; map recipes['<name>:<version>'] to a copy of it" % (
                                      recipe_dir, err.strip(), revision))
    top = top.strip()
    prefix = os.path.relpath(os.path.realpath(recipe_dir), os.path.realpath(top))
    rc, _out, _err = run(["git", "-C", top, "cat-file", "-e", "%s:%s" % (revision, prefix)], check=False)
    if rc != 0:
        raise ImmutableInfraError("revision %s of %s has no %s: fetch that commit (git fetch) or map "
                                  "recipes['<name>:<version>'] to its recipe" % (revision, top, prefix))
    dest = os.path.join(cache_dir, "%s-%s" % (revision[:16], hashlib.sha256(prefix.encode()).hexdigest()[:12]))
    if not os.path.isdir(dest):
        os.makedirs(cache_dir, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".extract-", dir=cache_dir)
        try:
            tar = os.path.join(work, "recipe.tar")
            run(["git", "-C", top, "archive", "--format=tar", "-o", tar, revision, "--", prefix], what="git archive")
            with tarfile.open(tar) as archive:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(os.path.join(work, "tree"), **safe)
            os.rename(os.path.join(work, "tree"), dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return os.path.join(dest, prefix)


def materialise(result, recipes_dir, cache_dir):
    """Fill each rebake's `recipe` with a directory: the current recipe, or for a
    security rebake the recipe at its revision. A rebake whose source cannot be
    recovered moves to `refused`, naming why."""
    kept = []
    for entry in result["rebakes"]:
        if entry["kind"] != "security":
            kept.append(entry)
            continue
        try:
            entry["recipe"] = recipe_at_revision(recipe_path(entry["recipe"], recipes_dir), entry["revision"], cache_dir)
            kept.append(entry)
        except ImmutableInfraError as exc:
            result["refused"].append(dict(entry, why=exc.msg))
    result["rebakes"] = kept
    return result


def scans_from_result(scan_result):
    """{digest: {"findings": [...]}} from image_scan's result (its versions and findings): what this run
    found, also in check mode, where image_scan stores nothing."""
    digests = {"%s:%s" % (v.get("name"), v.get("version")): v.get("digest") for v in scan_result.get("versions") or []
               if v.get("sbom", True) and v.get("digest")}
    out = {d: {"findings": []} for d in digests.values()}
    for finding in scan_result.get("findings") or []:
        for image in finding.get("images") or []:
            if image in digests:
                out[digests[image]]["findings"].append(finding)
    return out


def fix_forward_plan(lifecycle, params, live_refs, cache_dir):
    promoted = {}
    versions, heads, scans = read_state(lifecycle, live_refs, promoted)
    scans.update(scans_from_result(params.get("scan_result") or {}))
    result = plan(versions, heads, live_refs, scans, params.get("policy") or {}, lifecycle.registry,
                  params.get("recipes"), params.get("repositories"))
    result = materialise(result, params.get("recipes_dir"), cache_dir)
    # What was promoted before: a re-run does not move a channel back to a fix it already took.
    result["promoted"] = {e["name"]: promoted.get(e["name"], {}) for e in result["rebakes"]}
    result["changed"] = False
    return result
