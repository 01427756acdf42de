# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pruning: delete the image versions nothing references any more.

A version (one manifest digest of a repository, with all its tags) stays when
anything still needs it, and every reason is reported:

  keep-N       it is one of the `keep` newest versions of its repository
  age          it is younger than `min_age`, or its creation time is unknown
  channel      a channel's head, or a target of its last `history_keep` moves
  group        an instance of a server group (any state, any app/stack) runs it
               on one of the platforms read
  router       the router recorded it for a group of an endpoint's history
               (a rollback recreates a destroyed group from that image)
  parent       a version that stays (in any repository) was baked on it,
               transitively

References match by digest, in any repository: a digest someone uses is never
deleted anywhere. Everything is read before anything is deleted; a registry,
platform or router state that cannot be read is an error and nothing changes.
Right before deleting, the server groups and the router are read again, so a
release that started meanwhile is seen. Deleting removes the manifest and the
version's records (Lifecycle.delete_version); the blobs go at the registry's
next garbage collection.
"""

from __future__ import annotations

import datetime
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.immutable.infra.plugins.module_utils._catalog import version_key
from ansible_collections.immutable.infra.plugins.module_utils._platforms import AVAILABLE, get_platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

DEFAULT_KEEP = 5
DEFAULT_MIN_AGE = "7d"
DEFAULT_HISTORY_KEEP = 10

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_AGE_RE = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_FRACTION_RE = re.compile(r"(\.\d{1,6})\d*")


# ------------------------------------------------------------------ pure logic
def parse_age(value, what="min_age"):
    """Seconds from a number of seconds or a duration like '7d', '12h', '1d12h', '90m', '2w'."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value or "").strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _AGE_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ImmutableInfraError("%s %r is not a duration: give seconds (604800) or a number with a unit, "
                                          "w d h m s (7d, 12h, 1d12h)" % (what, value))
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0:
        raise ImmutableInfraError("%s %r is negative: give 0 or more" % (what, value))
    return seconds


def human_age(seconds):
    """3d4h, 5h12m, 40s: how old something is, in two units at most."""
    seconds = int(max(0, seconds))
    out = []
    for unit in ("d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNITS[unit])
        if n or (unit == "s" and not out):
            out.append("%d%s" % (n, unit))
    return "".join(out[:2])


def parse_time(text):
    """Epoch seconds of an RFC 3339 time (nanoseconds and offsets allowed), or None."""
    if not text or not isinstance(text, str):
        return None
    text = _FRACTION_RE.sub(r"\1", text.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def digest_of(reference):
    """The sha256 digest a reference is pinned to ('reg/name@sha256:..'), or None."""
    if not reference or "@" not in str(reference):
        return None
    digest = str(reference).rsplit("@", 1)[1]
    return digest if digest.startswith("sha256:") else None


def add_reason(refs, digest, reason):
    if digest:
        reasons = refs.setdefault(digest, [])
        if reason not in reasons:
            reasons.append(reason)


def channel_references(name, channels, history_keep, refs=None):
    """{digest: [reasons]}: each channel's head and the targets of its last history_keep moves."""
    refs = {} if refs is None else refs
    for channel, record in sorted((channels or {}).items()):
        if record.get("digest"):
            add_reason(refs, record["digest"], "channel %s of %s (head)" % (channel, name))
        history = list(record.get("history") or [])
        for entry in history[len(history) - history_keep:] if history_keep > 0 else []:
            if entry.get("to") != record.get("digest"):
                add_reason(refs, entry.get("to"), "channel %s of %s (history move #%s)" % (channel, name, entry.get("seq")))
    return refs


def group_references(platform_name, instances, refs=None):
    """{digest: [reasons]}: the image of every server group instance, whatever its state."""
    refs = {} if refs is None else refs
    groups = {}
    for inst in instances:
        if not inst.get("group"):
            continue
        digest = inst.get("image_digest") or digest_of(inst.get("image"))
        groups.setdefault((inst["group"], digest), []).append(str(inst.get("state") or "unknown"))
    for (group, digest), states in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        add_reason(refs, digest, "server group %s on %s (%d instance(s): %s)"
                   % (group, platform_name, len(states), ", ".join(sorted(set(states)))))
    return refs


def router_references(routes, refs=None):
    """{digest: [reasons]}: the images the router recorded in every endpoint's history (rollback targets)."""
    refs = {} if refs is None else refs
    # Every image ever recorded counts, not only each group's last one.
    for key, ep in sorted(((routes or {}).get("endpoints") or {}).items()):
        for entry in (ep or {}).get("history") or []:
            for group, image in sorted(((entry or {}).get("images") or {}).items()):
                add_reason(refs, digest_of(image), "router history of %s (rollback target %s)" % (key, group))
    return refs


def versions_by_digest(name, facts):
    """One entry per digest of a repository (a digest can carry several tags), oldest first."""
    by = {}
    for f in facts:
        e = by.setdefault(f["digest"], {"repository": name, "digest": f["digest"], "tags": [],
                                        "created": f.get("created"), "parent_digest": f.get("parent_digest")})
        e["tags"].append(f["tag"])
    for e in by.values():
        e["tags"].sort(key=version_key)
        e["version"] = e["tags"][-1]
    return sorted(by.values(), key=lambda e: version_key(e["version"]))


def plan(selected, others, refs, keep=DEFAULT_KEEP, min_age=0.0, now=None):
    """Decide, without side effects, which versions go.

    selected: {repository: [version facts]} to prune; others: {repository: [version facts]}
    of the repositories not pruned (they all stay, so their parents stay too);
    refs: {digest: [reasons]} (channels, groups, router). Returns the entries of
    the selected repositories, oldest first per repository, each with
    "delete": bool and "reasons" (empty when it goes)."""
    now = time.time() if now is None else now
    entries = []
    for name in sorted(selected):
        versions = versions_by_digest(name, selected[name])
        newest = set(e["digest"] for e in versions[len(versions) - keep:]) if keep > 0 else set()
        for e in versions:
            reasons = []
            if e["digest"] in newest:
                reasons.append("keep-N: one of the %d newest versions of %s" % (keep, name))
            created = parse_time(e["created"])
            e["age_seconds"] = None if created is None else round(now - created, 3)
            if created is None:
                reasons.append("age: creation time unknown (%r)" % (e["created"],))
            elif now - created < min_age:
                reasons.append("age: %s old, younger than min_age %s" % (human_age(now - created), human_age(min_age)))
            reasons.extend(refs.get(e["digest"], []))
            e.update(delete=not reasons, reasons=reasons)
            entries.append(e)
    # Parents of what stays stay, transitively and across repositories.
    staying = [(n, f["tag"], f.get("parent_digest")) for n, fs in sorted(others.items()) for f in fs]
    staying += [(e["repository"], e["version"], e["parent_digest"]) for e in entries if not e["delete"]]
    going = {}
    for e in entries:
        if e["delete"]:
            going.setdefault(e["digest"], []).append(e)
    while staying:
        name, tag, parent = staying.pop()
        for e in going.pop(parent, []) if parent else []:
            e["reasons"].append("parent of %s:%s" % (name, tag))
            e["delete"] = False
            staying.append((e["repository"], e["version"], e["parent_digest"]))
    # A digest shared by two repositories stays in both when either keeps it.
    kept_digests = {e["digest"] for e in entries if not e["delete"]}
    for e in entries:
        if e["delete"] and e["digest"] in kept_digests:
            e["delete"] = False
            e["reasons"].append("same digest as a version kept in another repository")
    return entries


# ------------------------------------------------------------------ reading
def platforms_from(names=None, platform_options=None):
    """[(name, Platform)] to read: the names given, else podman plus libvirt when its state
    directory exists (instances were made there). platform_options: {platform name: options}."""
    options = platform_options or {}
    unknown = sorted(set(options) - set(AVAILABLE))
    if unknown or not all(isinstance(v, dict) for v in options.values()):
        raise ImmutableInfraError("platform_options must map platform names (%s) to their options, got %r"
                                  % (", ".join(AVAILABLE), options))
    if not names:
        libvirt_dir = get_platform("libvirt", **(options.get("libvirt") or {})).state_dir
        names = ["podman"] + (["libvirt"] if os.path.isdir(libvirt_dir) else [])
    return [(n, get_platform(n, **(options.get(n) or {}))) for n in names]


def platform_instances(platforms, need):
    """[(platform name, instances)] of every platform ([(name, Platform)]). A platform that cannot be
    read is an error saying why the caller needs it (`need`): leaving it out would hide its groups."""
    out = []
    for name, platform in platforms:
        try:
            out.append((name, platform.list_instances()))
        except ImmutableInfraError as exc:
            raise ImmutableInfraError(
                "cannot read the server groups on platform %s: %s; %s (leave %s out of platforms only if no group "
                "runs there)" % (name, exc.msg, need, name), **exc.details)
    return out


def read_live_references(platforms, router):
    """{digest: [reasons]} from the server groups on every platform ([(name, Platform)]) and the router.
    A platform or router state that cannot be read refuses the prune."""
    refs = {}
    for name, instances in platform_instances(platforms, "prune refuses to delete anything while it cannot see every group"):
        group_references(name, instances, refs)
    if router is not None:
        router_references(router.load_routes(), refs)
    return refs


def read_registry(lifecycle, repositories, history_keep):
    """({repo: facts} to prune, {repo: facts} of the others, {digest: [reasons]} of channels)."""
    every = lifecycle.repositories()
    wanted = list(repositories) if repositories else list(every)
    unknown = sorted(set(wanted) - set(every))
    if unknown:
        raise ImmutableInfraError("unknown repository %s in registry %s (it has: %s)"
                                  % (", ".join(unknown), lifecycle.registry, ", ".join(sorted(every)) or "none"))
    # describe_all reads a repository's versions and channel records from one tags/list.
    with ThreadPoolExecutor(max_workers=4) as pool:
        described = dict(zip(every, pool.map(lifecycle.describe_all, every)))
    refs = {}
    for name in sorted(wanted):
        channel_references(name, described[name]["channels"], history_keep, refs)
    selected = {n: described[n]["versions"] for n in wanted}
    others = {n: d["versions"] for n, d in described.items() if n not in selected}
    return selected, others, refs


def merge(*ref_maps):
    out = {}
    for refs in ref_maps:
        for digest, reasons in refs.items():
            for r in reasons:
                add_reason(out, digest, r)
    return out


def prune(lifecycle, platforms, router, repositories=None, keep=DEFAULT_KEEP, min_age=DEFAULT_MIN_AGE,
          history_keep=DEFAULT_HISTORY_KEEP, check_mode=False, now=None):
    """Plan and (unless check_mode) delete; returns the module result."""
    min_age_s = parse_age(min_age)
    if int(keep) < 0 or int(history_keep) < 0:
        raise ImmutableInfraError("keep (%r) and history_keep (%r) must be 0 or more" % (keep, history_keep))
    selected, others, channel_refs = read_registry(lifecycle, repositories, int(history_keep))
    live = read_live_references(platforms, router)
    entries = plan(selected, others, merge(channel_refs, live), int(keep), min_age_s, now)
    if not check_mode and any(e["delete"] for e in entries):
        # A release may have started since the first read: read the groups and the router again.
        again = read_live_references(platforms, router)
        if again != live:
            entries = plan(selected, others, merge(channel_refs, again), int(keep), min_age_s, now)
    deleted = []
    for e in entries:
        e["reference"] = "%s/%s@%s" % (lifecycle.registry, e["repository"], e["digest"])
        if not e["delete"]:
            e["action"] = "kept"
            continue
        try:
            if not check_mode:      # the plan is the check: delete_version re-reads the repository per call
                lifecycle.delete_version(e["repository"], e["digest"])
        except ImmutableInfraError as exc:
            raise ImmutableInfraError("deleting %s failed: %s (deleted before it: %s)" % (
                e["reference"], exc.msg, ", ".join(deleted) or "nothing"), deleted=deleted, **exc.details)
        e["action"] = "would_delete" if check_mode else "deleted"
        deleted.append(e["reference"])
    versions = [{k: e[k] for k in ("repository", "version", "tags", "digest", "reference", "created", "age_seconds",
                                   "action", "reasons")} for e in entries]
    report = ["%s:%s %s%s" % (v["repository"], v["version"], v["action"].replace("_", " "),
                              ": " + "; ".join(v["reasons"]) if v["reasons"] else "") for v in versions]
    return {
        "changed": bool(deleted),
        "report": report,
        "versions": versions,
        "deleted": deleted,
        "summary": {"versions": len(versions), "deleted": len(deleted), "kept": len(versions) - len(deleted)},
        "repositories": sorted(selected),
        "platforms": [name for name, _p in platforms],
        "diff": {"before": {"versions": sorted(e["reference"] for e in entries)},
                 "after": {"versions": sorted(e["reference"] for e in entries if not e["delete"])}},
    }
