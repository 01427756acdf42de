# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vulnerability scans of image versions in the registry: which versions, the scan
of each stored SBOM against the advisories, the stored scan record, and the
verdict of stored scans under a policy now (release.yml, the promotion gate).

Nothing here runs or logs into an instance: the SBOM stored at bake
(Lifecycle.sbom) is all a scan reads. The scan record (Lifecycle.record_scan,
tag sha256-<hex>.scan):
    {"kind": "scan", "subject": digest, "repository": name, "version": tag, "time", "epoch", "by",
     "sbom_digest", "advisories_digest", "advisories": [{"source", "count"}], "findings": [finding..],
     "counts": {severity: n}, "fixable": n, "policy": normalised policy, "policy_digest", "passed",
     "violations": [ids], "waived": [...], "expired_waivers": [...], "reasons": [...],
     "overrides": [{"time", "epoch", "by", "reason", "for", "violations"}]}   # release overrides, oldest first
A re-scan whose SBOM, advisories and policy digests and verdict are the same writes nothing.
"""

from __future__ import annotations

import hashlib

from ansible_collections.immutable.infra.plugins.module_utils._catalog import parse_reference, version_key
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import _pmap, actor
from ansible_collections.immutable.infra.plugins.module_utils._module import state_dir
from ansible_collections.immutable.infra.plugins.module_utils._policy import (
    SEVERITIES, evaluate, normalize_policy, policy_digest, summary_line, verdict_now)
from ansible_collections.immutable.infra.plugins.module_utils._prune import channel_references, merge, read_live_references
from ansible_collections.immutable.infra.plugins.module_utils._records import now
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# What makes a stored scan the same as a new one (no write when all are equal).
SAME_KEYS = ("sbom_digest", "advisories_digest", "policy_digest", "passed", "violations", "waived", "expired_waivers")
NO_SBOM = ("has no SBOM (baked before SBOMs were recorded at bake): rebake it (playbooks/bake.yml, or "
           "playbooks/rebake_children.yml for a child) to scan it")


# ------------------------------------------------------------------ pure logic
def parse_images(images, registry):
    """[(name, tag|None, digest|None)] of 'name', 'name:tag', 'name@sha256:..', with or without `registry/`."""
    out = []
    for ref in images or []:
        parts = parse_reference(ref, default_registry=registry)
        if parts["registry"] != registry:
            raise ImmutableInfraError("image %r is in registry %s, not in %s: scan it with registry: %s"
                                      % (ref, parts["registry"], registry, parts["registry"]))
        out.append((parts["name"], parts["tag"], parts["digest"]))
    return out


def one_per_digest(name, versions):
    """Version facts of a repository, one per digest (its newest tag), oldest first."""
    by = {}
    for facts in versions:
        kept = by.get(facts["digest"])
        if kept is None or version_key(facts["tag"]) > version_key(kept["tag"]):
            by[facts["digest"]] = facts
    return sorted(by.values(), key=lambda f: version_key(f["tag"]))


def default_targets(described, live_refs):
    """[(name, facts, [reasons])]: every version a channel points at (its head) or a server group
    runs (live or retained). described: {name: Lifecycle.describe_all(name)}; live_refs: {digest: [reasons]}."""
    out = []
    for name in sorted(described):
        refs = merge(channel_references(name, described[name]["channels"], 0), live_refs)
        for facts in one_per_digest(name, described[name]["versions"]):
            if facts["digest"] in refs:
                out.append((name, facts, refs[facts["digest"]]))
    return out


def unchanged(previous, record):
    """True when a stored scan record says what the new one says (write nothing)."""
    return bool(previous) and all(previous.get(k) == record.get(k) for k in SAME_KEYS)


def sources_of(index):
    """[{"source", "count"}] of an advisories index's sources."""
    out = []
    for s in getattr(index, "sources", None) or []:
        if isinstance(s, dict):
            out.append({"source": s.get("source") or s.get("label") or s.get("path") or s.get("url"), "count": s.get("count")})
        else:
            out.append({"source": str(s), "count": None})
    return out


def scan_record(name, facts, sbom, findings, index, policy, by, moment, today=None, previous=None):
    """The scan record of one version (pure)."""
    verdict = evaluate(findings, policy, today, name)
    iso, epoch = moment
    return {"kind": "scan", "subject": facts["digest"], "repository": name, "version": facts["tag"],
            "time": iso, "epoch": epoch, "by": by, "sbom_digest": "sha256:" + hashlib.sha256(sbom).hexdigest(),
            "advisories_digest": index.digest, "advisories": sources_of(index), "findings": findings,
            "counts": verdict["counts"], "fixable": verdict["fixable"], "policy": normalize_policy(policy),
            "policy_digest": policy_digest(policy), "passed": verdict["passed"], "violations": verdict["violations"],
            "waived": verdict["waived"], "expired_waivers": verdict["expired_waivers"], "reasons": verdict["reasons"],
            "overrides": list((previous or {}).get("overrides") or [])}


def entry(name, facts, verdict, has_sbom=True, changed=False, referenced_by=None, message=None):
    """One version of the module's summary."""
    return {"name": name, "version": facts["tag"], "digest": facts["digest"],
            "reference": facts.get("reference"), "sbom": has_sbom, "scanned": verdict.get("scanned", True),
            "counts": verdict["counts"], "fixable": verdict["fixable"], "passed": verdict["passed"],
            "violations": verdict["violations"], "waived": verdict["waived"],
            "expired_waivers": verdict["expired_waivers"], "reasons": verdict["reasons"], "changed": changed,
            "referenced_by": referenced_by or [], "message": message or summary_line(name, facts["tag"], verdict)}


def totals(entries, findings):
    sev = dict.fromkeys(SEVERITIES, 0)
    for e in entries:
        for k, n in e["counts"].items():
            sev[k] = sev.get(k, 0) + n
    return {"versions": len(entries), "scanned": sum(1 for e in entries if e["scanned"]),
            "without_sbom": sum(1 for e in entries if not e["sbom"]), "passed": sum(1 for e in entries if e["passed"]),
            "failed": sum(1 for e in entries if not e["passed"]), "findings": len(findings), "counts": sev,
            "fixable": sum(e["fixable"] for e in entries), "changed": sum(1 for e in entries if e["changed"])}


def findings_across(per_version):
    """Findings of every version, one per (id, package, installed), each with the versions it is in."""
    out = {}
    for name, facts, findings in per_version:
        for f in findings:
            key = (f.get("id"), f.get("package"), f.get("installed"))
            item = out.setdefault(key, dict(f, images=[]))
            item["images"].append("%s:%s" % (name, facts["tag"]))
    return [out[k] for k in sorted(out, key=lambda k: tuple(str(x) for x in k))]


# ------------------------------------------------------------------ reading the registry
def select_targets(lc, images=None, platforms=None, channel=None, newest_only=False):
    """[(name, facts, [why])] to scan. Default: every version a channel points at or a server group on
    `platforms` runs. images: 'name' (every version; its newest with newest_only; the head of `channel`
    with channel), 'name:tag', 'name@digest'."""
    if not images:
        repos = lc.repositories()
        described = dict(zip(repos, _pmap(lc.describe_all, repos, workers=4)))
        return default_targets(described, read_live_references(platforms or [], None))
    out, seen = [], set()
    for name, tag, digest in parse_images(images, lc.registry):
        ref = name + (":%s" % tag if tag else "@%s" % digest if digest else "")
        try:
            if tag or digest:
                found = [lc.version(name, version=tag, digest=digest)]
            elif channel:
                found = [lc.resolve_channel(name, channel, allow_revoked=True)]
            else:
                # newest_only: the newest version as a release by version reads it (Catalog.newest).
                versions = [lc.catalog.newest(name)] if newest_only else one_per_digest(name, lc.describe_all(name)["versions"])
                if not versions or versions[0] is None:
                    raise lc._unknown(name, name, [])
                found = versions
        except ImmutableInfraError as exc:
            if str(exc).startswith("unknown image"):
                # Named as the catalog names it for a release or a bake: "unknown image 'web:99': ..."
                raise ImmutableInfraError("unknown image %r: %s" % (ref, exc), **exc.details)
            raise
        for facts in found:
            if (name, facts["digest"]) not in seen:
                seen.add((name, facts["digest"]))
                out.append((name, facts, ["asked for"]))
    return out


# ------------------------------------------------------------------ the module's work
def scan(lc, p, platforms, check_mode=False, today=None):
    """image_scan mode=scan: scan the targets' SBOMs against the advisories, store the records."""
    # Imported here so that the pure parts above load without the SBOM and advisory libraries.
    from ansible_collections.immutable.infra.plugins.module_utils._advisories import load_advisories, match
    from ansible_collections.immutable.infra.plugins.module_utils._sbom import read_sbom

    policy = normalize_policy(p.get("policy"))
    if not p.get("advisories"):
        raise ImmutableInfraError("advisories is required to scan: give a list of {path: ...} or {url: ...} "
                                  "(OSV JSON directory or zip, or the Debian security tracker JSON)")
    # Loaded before anything is read or written: a bad advisory source stores nothing.
    sources = [{k: v for k, v in s.items() if v is not None} for s in p["advisories"]]
    index = load_advisories(sources, cache_dir=state_dir("advisories"), validate_certs=p.get("validate_certs") is not False)
    targets = select_targets(lc, p.get("images"), platforms, p.get("channel"), p.get("newest_only"))
    sboms = _pmap(lambda t: lc.sbom(t[0], t[1]["digest"]), targets)
    previous = _pmap(lambda t: lc.scan_result(t[0], t[1]["digest"]), targets)
    by, moment = actor(p.get("actor")), now()
    entries, per_version, writes = [], [], []
    for (name, facts, why), sbom, prev in zip(targets, sboms, previous):
        if sbom is None:
            verdict = verdict_now(None, policy, today, name)
            entries.append(entry(name, facts, verdict, has_sbom=False, referenced_by=why,
                                 message="%s:%s %s%s" % (name, facts["tag"], NO_SBOM, "; the policy requires scans, so it "
                                                         "fails" if not verdict["passed"] else "")))
            continue
        parsed = read_sbom(sbom)
        findings = match(parsed["os"], parsed["components"], index)
        record = scan_record(name, facts, sbom, findings, index, policy, by, moment, today, prev)
        changed = bool(p.get("store", True)) and not unchanged(prev, record)
        if changed:
            writes.append((name, facts["digest"], record))
        entries.append(entry(name, facts, dict(record, scanned=True), changed=changed, referenced_by=why))
        per_version.append((name, facts, findings))
    for name, digest, record in writes:
        lc.record_scan(name, digest, record, check_mode=check_mode)
    findings = findings_across(per_version)
    return {"changed": bool(writes), "versions": entries, "totals": totals(entries, findings), "findings": findings,
            "advisories": {"digest": index.digest, "count": index.count, "sources": sources_of(index)},
            "policy": policy, "policy_digest": policy_digest(policy)}


def evaluate_stored(lc, p, platforms, check_mode=False, today=None):
    """image_scan mode=evaluate: the stored scans of the targets under the policy now. With
    fail_on_violation a failing version fails the task, unless override_reason is given: then each
    failing version's scan record gets an override entry (who, when, why, for what) and a warning."""
    policy = normalize_policy(p.get("policy"))
    targets = select_targets(lc, p.get("images"), platforms, p.get("channel"), p.get("newest_only"))
    records = _pmap(lambda t: lc.scan_result(t[0], t[1]["digest"]), targets)
    entries, failing = [], []
    for (name, facts, why), record in zip(targets, records):
        verdict = verdict_now(record, policy, today, name)
        entries.append(entry(name, facts, verdict, has_sbom=bool(record), referenced_by=why))
        if not verdict["passed"]:
            failing.append((name, facts, record, verdict))
    result = {"changed": False, "versions": entries, "totals": totals(entries, []), "findings": [],
              "policy": policy, "policy_digest": policy_digest(policy), "overrides": []}
    if not failing or not p.get("fail_on_violation"):
        return result
    lines = [summary_line(n, f["tag"], v) for n, f, _r, v in failing]
    reason = (p.get("override_reason") or "").strip()
    if not reason:
        raise ImmutableInfraError("%s. Fix forward (rebake on a patched parent), waive the findings in the policy with a "
                                  "reason and an expiry, or override with a reason (release.yml: release_scan_override)"
                                  % "; ".join(lines), **result)
    by, (iso, epoch) = actor(p.get("actor")), now()
    for name, facts, record, verdict in failing:
        override = {"time": iso, "epoch": epoch, "by": by, "reason": reason, "for": p.get("override_for"),
                    "violations": verdict["violations"]}
        result["overrides"].append(dict(override, name=name, version=facts["tag"], digest=facts["digest"],
                                        recorded=bool(record)))
        same = [o for o in (record or {}).get("overrides") or []
                if all(o.get(k) == override[k] for k in ("by", "reason", "for", "violations"))]
        if record and not same:  # never scanned: no record to keep it in (the warning is its log); the same
            # decision recorded already (a release run again): nothing new to record
            record = dict(record, overrides=list(record.get("overrides") or []) + [override])
            lc.record_scan(name, facts["digest"], record, check_mode=check_mode)
            result["changed"] = True
    result["warnings"] = ["scan policy OVERRIDDEN by %s (%s)%s: %s" % (
        by, reason, " for %s" % p["override_for"] if p.get("override_for") else "", line) for line in lines]
    return result


def run(lc, p, platforms, check_mode=False):
    return (evaluate_stored if p.get("mode") == "evaluate" else scan)(lc, p, platforms, check_mode)
