# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exposure: where is a vulnerability running right now.

    CVE -> image versions whose stored scan record has a finding for it (by id or alias)
        -> channels pointing at those versions
        -> server groups running them on the platforms read (by image digest, in any
           repository), live (the router gives them weight) or retained (kept warm
           out of traffic, or not routed), per app/stack
        -> instance counts and zones

Everything comes from the system of record: the scan records and channels in the
registry, the instances' labels on the platforms, the weights in the router's
routes. Nothing logs into an instance. join() is pure; read() does the reading;
write_reports() renders JSON, Markdown and HTML (_exposure_html) and writes a file
only when its content, the generated time aside, differs.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.immutable.infra.plugins.module_utils._catalog import parse_reference, version_key
from ansible_collections.immutable.infra.plugins.module_utils._fleet import parse_router_state
from ansible_collections.immutable.infra.plugins.module_utils._prune import digest_of, platform_instances
from ansible_collections.immutable.infra.plugins.module_utils._records import LABEL_CHANNEL, now
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

SEVERITIES = ("critical", "high", "medium", "low", "negligible", "unknown")
LIVE, RETAINED = "live", "retained"
FORMATS = {"json": "exposure.json", "markdown": "exposure.md", "html": "exposure.html"}
# Stands for the generated time while a report is compared with the file it would replace.
_GENERATED = "@@GENERATED@@"
_TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


def rank(severity):
    """0 for critical .. 5 for unknown (anything not a known severity is unknown)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES) - 1


def worst(severities):
    found = [rank(s) for s in severities]
    return SEVERITIES[min(found)] if found else None


def counts(severities):
    out = {s: 0 for s in SEVERITIES}
    for s in severities:
        out[SEVERITIES[rank(s)]] += 1
    return out


def wanted_ids(cves):
    """The filter as upper-case ids, or None for every CVE."""
    wanted = {str(c).strip().upper() for c in cves or [] if str(c).strip()}
    return wanted or None


def matching(finding, wanted):
    """The requested names (ids or aliases, upper case) this finding answers; every finding when wanted is None."""
    names = {str(finding.get("id", "")).upper()} | {str(a).upper() for a in finding.get("aliases") or []}
    return names if wanted is None else names & wanted


def fixed_text(pkg):
    return "%s %s -> %s" % (pkg["package"], pkg["installed"], pkg["fixed"] or "no fix")


# ------------------------------------------------------------------ the join (pure)
def groups_from(instances, weights):
    """{(platform, group): group entry} of server-group instances ([instance records with "platform"]).
    weights {group: weight} from the router: a group with weight > 0 is live, any other is retained."""
    groups = {}
    for inst in instances:
        if not inst.get("group"):
            continue
        key = (inst.get("platform") or "podman", inst["group"])
        digest = inst.get("image_digest") or digest_of(inst.get("image"))
        g = groups.get(key)
        if g is None:
            weight = (weights or {}).get(inst["group"])
            repository = None
            if inst.get("image"):
                try:
                    repository = parse_reference(str(inst["image"]), default_registry="-")["name"]
                except ImmutableInfraError:
                    repository = None
            g = groups[key] = {
                "name": inst["group"], "app": inst.get("app"), "stack": inst.get("stack"), "platform": key[0],
                "sequence": inst.get("sequence"), "digest": digest, "repository": repository,
                "version": inst.get("image_version"), "channel": (inst.get("labels") or {}).get(LABEL_CHANNEL),
                "traffic": LIVE if weight and weight > 0 else RETAINED, "weight": weight,
                "instances": 0, "running": 0, "zones": [], "instance_names": []}
        g["instances"] += 1
        g["running"] += 1 if inst.get("state") == "running" else 0
        if inst.get("zone") and inst["zone"] not in g["zones"]:
            g["zones"].append(inst["zone"])
        g["instance_names"].append(inst.get("name"))
    for g in groups.values():
        g["zones"].sort()
        g["instance_names"].sort()
    return groups


def _group_order(g):
    return (str(g["app"]), str(g["stack"]), g["traffic"] != LIVE, str(g["name"]), g["platform"])


def _versions_from(scans, channels):
    """{(repository, digest): version entry} of the scan records, with the channels pointing at each digest."""
    pointing = {}
    for repo, records in sorted((channels or {}).items()):
        for channel, record in sorted((records or {}).items()):
            if (record or {}).get("digest"):
                pointing.setdefault(record["digest"], []).append("%s:%s" % (repo, channel))
    versions = {}
    for rec in scans:
        key = (rec.get("repository"), rec.get("subject"))
        versions[key] = {"repository": key[0], "version": rec.get("version"), "digest": key[1],
                         "scanned": rec.get("time"), "channels": sorted(pointing.get(key[1], [])), "record": rec}
    return versions


def _waiver(record, cve):
    """{"reason", "expires"} when the version's policy verdict waived this finding, else None."""
    for w in record.get("waived") or []:
        if isinstance(w, dict) and w.get("id") == cve:
            return {"reason": w.get("reason"), "expires": w.get("expires")}
    return None


def join(scans, channels, instances, weights=None, cves=None):
    """The exposure data (without generated time and registry): see the module's RETURN.

    scans: [scan records] (kind scan: repository, subject, version, time, findings);
    channels: {repository: {channel: channel record}}; instances: [instance records, each
    with "platform"]; weights: {group: weight} from the router; cves: ids or aliases to keep
    (None: all)."""
    wanted = wanted_ids(cves)
    versions = _versions_from(scans, channels)
    groups = sorted(groups_from(instances, weights).values(), key=_group_order)
    by_digest = {}
    for g in groups:
        by_digest.setdefault(g["digest"], []).append(g)
    entries, answered = {}, set()
    for (repo, digest), v in sorted(versions.items(), key=lambda kv: (str(kv[0][0]), version_key(kv[1]["version"]))):
        for f in v["record"].get("findings") or []:
            names = matching(f, wanted)
            if not names:
                continue
            answered |= names
            e = entries.setdefault(f["id"], {"id": f["id"], "aliases": set(), "severities": [], "summary": None,
                                             "packages": {}, "versions": {}})
            e["aliases"].update(a for a in f.get("aliases") or [] if a != f["id"])
            e["severities"].append(f.get("severity") or "unknown")
            e["summary"] = e["summary"] or f.get("summary")
            pkg = {"package": f.get("package"), "source": f.get("source"), "installed": f.get("installed"),
                   "fixed": f.get("fixed"), "fix_available": bool(f.get("fix_available")),
                   "severity": f.get("severity") or "unknown"}
            e["packages"][(pkg["package"], pkg["installed"], pkg["fixed"])] = pkg
            ve = e["versions"].setdefault((repo, digest), {
                "repository": repo, "version": v["version"], "digest": digest, "scanned": v["scanned"],
                "channels": v["channels"], "packages": [], "waived": _waiver(v["record"], f["id"]),
                "groups": [g["name"] for g in by_digest.get(digest, [])]})
            if fixed_text(pkg) not in ve["packages"]:
                ve["packages"].append(fixed_text(pkg))
    out = [_cve_entry(e, by_digest) for e in entries.values()]
    out.sort(key=lambda c: (rank(c["severity"]), c["id"]))
    scanned_digests = {d for _r, d in versions}
    return {
        "cves": out,
        "stacks": _stacks(groups, out),
        "unscanned": [_brief(g) for g in groups if g["digest"] not in scanned_digests],
        "not_found": sorted(wanted - answered) if wanted else [],
        "summary": _summary(out, groups, versions),
        "scanned_at": max((v["scanned"] for v in versions.values() if v["scanned"]), default=None),
    }


def _brief(g):
    return {k: g[k] for k in ("name", "app", "stack", "platform", "repository", "version", "digest", "channel",
                              "traffic", "weight", "instances", "running", "zones", "instance_names")}


def _cve_entry(e, by_digest):
    versions = sorted(e["versions"].values(), key=lambda v: (str(v["repository"]), version_key(v["version"])))
    groups = sorted((g for v in versions for g in by_digest.get(v["digest"], [])), key=_group_order)
    packages = sorted(e["packages"].values(), key=lambda p: (str(p["package"]), str(p["installed"])))
    live = [g for g in groups if g["traffic"] == LIVE]
    return {
        "id": e["id"], "aliases": sorted(e["aliases"]), "severity": worst(e["severities"]),
        "fix_available": any(p["fix_available"] for p in packages), "summary": e["summary"] or "",
        "packages": packages, "versions": versions,
        "channels": sorted({c for v in versions for c in v["channels"]}),
        "groups": [_brief(g) for g in groups],
        "stacks": sorted({"%s/%s" % (g["app"], g["stack"]) for g in groups}),
        "live_stacks": sorted({"%s/%s" % (g["app"], g["stack"]) for g in live}),
        "instances": sum(g["instances"] for g in groups),
        "live_instances": sum(g["instances"] for g in live),
        "zones": sorted({z for g in groups for z in g["zones"]}),
        "live": bool(live),
    }


def _stacks(groups, cves):
    """Per app/stack: its groups, the CVEs it carries (worst first), its worst severity; worst stacks first."""
    stacks = {}
    for g in groups:
        stacks.setdefault((str(g["app"]), str(g["stack"])), []).append(g)
    hits = {}        # (app, stack) -> [(cve, its groups there)], in the CVEs' order
    for c in cves:
        there = {}
        for g in c["groups"]:
            there.setdefault((str(g["app"]), str(g["stack"])), []).append(g)
        for key, hit in there.items():
            hits.setdefault(key, []).append((c, hit))
    out = []
    for (app, stack), members in stacks.items():
        carried = []
        for c, hit in hits.get((app, stack), []):
            digests = {g["digest"] for g in hit}
            packages = [p for v in c["versions"] if v["digest"] in digests for p in v["packages"]]
            carried.append({"id": c["id"], "aliases": c["aliases"], "severity": c["severity"],
                            "fix_available": c["fix_available"], "packages": sorted(set(packages)),
                            "groups": [g["name"] for g in hit],
                            "live_groups": [g["name"] for g in hit if g["traffic"] == LIVE],
                            "live": any(g["traffic"] == LIVE for g in hit)})
        out.append({"name": "%s/%s" % (app, stack), "app": app, "stack": stack,
                    "groups": [dict(_brief(g), cves=[c["id"] for c in carried if g["name"] in c["groups"]])
                               for g in members],
                    "cves": carried, "worst": worst([c["severity"] for c in carried]),
                    "counts": counts([c["severity"] for c in carried]),
                    "instances": sum(g["instances"] for g in members)})
    out.sort(key=lambda s: (rank(s["worst"]) if s["worst"] else len(SEVERITIES), s["name"]))
    return out


def _summary(cves, groups, versions):
    return {"cves": len(cves), "by_severity": counts([c["severity"] for c in cves]),
            "live": sum(1 for c in cves if c["live"]), "fixable": sum(1 for c in cves if c["fix_available"]),
            "versions_scanned": len(versions), "stacks": len({(g["app"], g["stack"]) for g in groups}),
            "groups": len(groups), "instances": sum(g["instances"] for g in groups),
            "unscanned_groups": sum(1 for g in groups if g["digest"] not in {d for _r, d in versions})}


# ------------------------------------------------------------------ reading
def read(lifecycle, platforms, router, repositories=None, apps=None):
    """(scans, channels, instances, weights) from the registry, the platforms ([(name, Platform)])
    and the router; instances of the given apps only (None: every app). A platform or the router
    that cannot be read is an error: a report that silently left out a platform would say a CVE
    runs nowhere."""
    every = lifecycle.repositories()
    unknown = sorted(set(repositories or []) - set(every))
    if unknown:
        raise ImmutableInfraError("unknown repository %s in registry %s (it has: %s)"
                                  % (", ".join(unknown), lifecycle.registry, ", ".join(sorted(every)) or "none"))
    repos = sorted(repositories or every)
    with ThreadPoolExecutor(max_workers=8) as pool:
        indexes = dict(zip(repos, pool.map(lifecycle.index, repos)))
        jobs = [(r, d) for r in repos for d in sorted(indexes[r]["scanned"])]
        found = list(pool.map(lambda job: lifecycle.scan_result(*job), jobs))
        chans = dict(zip(repos, pool.map(lambda r: lifecycle.channels(r, indexes[r]), repos)))
    scans = [dict(rec, repository=r, subject=d) for (r, d), rec in zip(jobs, found) if rec]
    instances = [dict(i, platform=name)
                 for name, listed in platform_instances(platforms, "the exposure report needs every platform where groups run")
                 for i in listed if not apps or i.get("app") in apps]
    weights = parse_router_state(router.load_routes()) if router is not None else {}
    return scans, chans, instances, weights


# ------------------------------------------------------------------ reports
def render(data, fmt):
    """The text of one report format."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        from ansible_collections.immutable.infra.plugins.module_utils._exposure_html import markdown
        return markdown(data)
    if fmt == "html":
        from ansible_collections.immutable.infra.plugins.module_utils._exposure_html import page
        return page(data)
    raise ImmutableInfraError("unknown report format %r: use %s" % (fmt, ", ".join(FORMATS)))


def same_but_generated(old, template):
    """True when old is template with some generated time in place of _GENERATED."""
    if old is None:
        return False
    parts, pos = template.split(_GENERATED), 0
    for i, part in enumerate(parts):
        if not old.startswith(part, pos):
            return False
        pos += len(part)
        if i < len(parts) - 1:
            found = _TIME_RE.match(old, pos)
            if found is None:
                return False
            pos = found.end()
    return pos == len(old)


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImmutableInfraError("cannot read the report %s (%s): fix or remove it" % (path, exc))


def write_reports(data, dest, formats, generated, check_mode=False, want_diff=False):
    """Write each format's file under dest when it differs in more than the generated time.
    Returns (files [{format, path, changed}], diffs)."""
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise ImmutableInfraError("dest %s is not a directory: give a directory for %s"
                                  % (dest, ", ".join(FORMATS[f] for f in formats)))
    files, diffs = [], []
    for fmt in formats:
        path = os.path.join(dest, FORMATS[fmt])
        template = render(dict(data, generated=_GENERATED), fmt)
        old = _read_text(path)
        changed = not same_but_generated(old, template)
        files.append({"format": fmt, "path": path, "changed": changed})
        if not changed:
            continue
        text = template.replace(_GENERATED, generated)
        if want_diff:
            diffs.append({"before_header": path, "after_header": path, "before": old or "", "after": text})
        if not check_mode:
            os.makedirs(dest, exist_ok=True)
            tmp = "%s.%d.tmp" % (path, os.getpid())
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
    return files, diffs


def report(lifecycle, platforms, router, cves=None, repositories=None, dest=None, formats=tuple(FORMATS),
           generated=None, check_mode=False, want_diff=False, apps=None):
    """The module result: the exposure data, and the files written under dest (if given)."""
    generated = generated or now()[0]
    unknown = sorted(set(formats or []) - set(FORMATS))
    if unknown:
        raise ImmutableInfraError("unknown report format %s: use %s" % (", ".join(unknown), ", ".join(FORMATS)))
    scans, chans, instances, weights = read(lifecycle, platforms, router, repositories, apps)
    data = dict(join(scans, chans, instances, weights, cves), registry=lifecycle.registry,
                platforms=[n for n, _p in platforms], filter=list(cves or []), apps=sorted(apps or []))
    result = dict(data, generated=generated, changed=False, files=[])
    if dest:
        files, diffs = write_reports(data, dest, list(formats or FORMATS), generated, check_mode, want_diff)
        result.update(changed=any(f["changed"] for f in files), files=files)
        if want_diff:
            result["diff"] = diffs
    return result
