# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vulnerability policy: pure functions deciding whether an image version's
findings pass, with waivers that expire. No I/O; `today` is injectable.

A policy (every key optional; a missing key takes DEFAULT_POLICY's value):
    fail_on       severities that fail the version (default critical, high)
    fixable_only  only findings with a fix available count (default true)
    max           {severity: n}: more than n counted findings of that severity fail (default none)
    require_scan  a version never scanned (or without an SBOM) fails (default false)
    waivers       [{"id": CVE or alias, "reason": why (required), "expires": "YYYY-MM-DD" (required,
                   valid through that day), "images": [repository names] (optional), "packages":
                   [binary or source package names] (optional)}]
A waived finding does not count; an expired waiver stops counting and is reported.
"""

from __future__ import annotations

import datetime
import hashlib
import json

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

SEVERITIES = ("critical", "high", "medium", "low", "negligible", "unknown")
DEFAULT_POLICY = {"fail_on": ["critical", "high"], "fixable_only": True, "max": {}, "require_scan": False, "waivers": []}
POLICY_KEYS = tuple(DEFAULT_POLICY)
WAIVER_KEYS = ("id", "reason", "expires", "images", "packages")


def _bool(value, what):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ImmutableInfraError("policy %s must be true or false, not %r" % (what, value))


def _severity(value, what):
    sev = str(value).strip().lower()
    if sev not in SEVERITIES:
        raise ImmutableInfraError("unknown severity %r in policy %s: use %s" % (value, what, ", ".join(SEVERITIES)))
    return sev


def parse_date(value, what):
    """A datetime.date from 'YYYY-MM-DD' (or a date), else ImmutableInfraError naming it."""
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    try:
        return datetime.datetime.strptime(str(value).strip(), "%Y-%m-%d").date()
    except ValueError:
        raise ImmutableInfraError("%s: bad date %r: use YYYY-MM-DD (for example 2027-01-31)" % (what, value))


def _names(value, what):
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ImmutableInfraError("%s must be a list of names, not %r" % (what, value))
    return sorted(set(value))


def normalize_waiver(waiver, index):
    if not isinstance(waiver, dict):
        raise ImmutableInfraError("policy waiver #%d must be a mapping with id, reason and expires, not %r" % (index, waiver))
    unknown = sorted(set(waiver) - set(WAIVER_KEYS))
    if unknown:
        raise ImmutableInfraError("policy waiver #%d has unknown key(s) %s: use %s"
                                  % (index, ", ".join(unknown), ", ".join(WAIVER_KEYS)))
    wid = str(waiver.get("id") or "").strip()
    if not wid:
        raise ImmutableInfraError("policy waiver #%d has no id: give the advisory id or an alias (e.g. CVE-2024-1234)" % index)
    reason = str(waiver.get("reason") or "").strip()
    if not reason:
        raise ImmutableInfraError("policy waiver %s has no reason: every waiver says why the finding is accepted" % wid)
    if waiver.get("expires") in (None, ""):
        raise ImmutableInfraError("policy waiver %s has no expires: give the last day it holds (YYYY-MM-DD)" % wid)
    expires = parse_date(waiver["expires"], "policy waiver %s expires" % wid).isoformat()
    return {"id": wid, "reason": reason, "expires": expires,
            "images": _names(waiver.get("images"), "policy waiver %s images" % wid),
            "packages": _names(waiver.get("packages"), "policy waiver %s packages" % wid)}


def normalize_policy(policy=None):
    """The policy with every key (defaults filled in), validated; ImmutableInfraError naming the bad field."""
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise ImmutableInfraError("policy must be a mapping (keys %s), not %r" % (", ".join(POLICY_KEYS), policy))
    unknown = sorted(k for k in policy if k not in POLICY_KEYS)
    if unknown:
        raise ImmutableInfraError("unknown policy key(s) %s: use %s" % (", ".join(unknown), ", ".join(POLICY_KEYS)))
    given = dict(DEFAULT_POLICY, **{k: v for k, v in policy.items() if v is not None})
    fail_on = given["fail_on"]
    if isinstance(fail_on, str):
        fail_on = [fail_on] if fail_on else []
    if not isinstance(fail_on, (list, tuple)):
        raise ImmutableInfraError("policy fail_on must be a list of severities (%s), not %r" % (", ".join(SEVERITIES), fail_on))
    maxes = given["max"] or {}
    if not isinstance(maxes, dict):
        raise ImmutableInfraError("policy max must map severities to counts (e.g. {medium: 10}), not %r" % (maxes,))
    out_max = {}
    for sev, n in maxes.items():
        try:
            count = int(n)
        except (TypeError, ValueError):
            count = -1
        if count < 0 or isinstance(n, bool):
            raise ImmutableInfraError("policy max of %s must be a count >= 0, not %r" % (sev, n))
        out_max[_severity(sev, "max")] = count
    waivers = given["waivers"] or []
    if not isinstance(waivers, (list, tuple)):
        raise ImmutableInfraError("policy waivers must be a list of {id, reason, expires}, not %r" % (waivers,))
    return {"fail_on": sorted({_severity(s, "fail_on") for s in fail_on}, key=SEVERITIES.index),
            "fixable_only": _bool(given["fixable_only"], "fixable_only"), "max": out_max,
            "require_scan": _bool(given["require_scan"], "require_scan"),
            "waivers": [normalize_waiver(w, i + 1) for i, w in enumerate(waivers)]}


def policy_digest(policy):
    """sha256 of the normalised policy: the same policy gives the same digest."""
    data = json.dumps(normalize_policy(policy), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _today(today):
    if today is None:
        return datetime.datetime.now(datetime.timezone.utc).date()
    return parse_date(today, "today")


def waiver_matches(waiver, finding, image=None):
    ids = {finding.get("id")} | set(finding.get("aliases") or [])
    if waiver["id"] not in ids:
        return False
    if waiver["images"] and image not in waiver["images"]:
        return False
    if waiver["packages"] and not ({finding.get("package"), finding.get("source")} & set(waiver["packages"])):
        return False
    return True


def severity_of(finding):
    sev = str(finding.get("severity") or "unknown").lower()
    return sev if sev in SEVERITIES else "unknown"


def counts(findings):
    """({severity: n} of every finding, number with a fix available)."""
    out = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        out[severity_of(f)] += 1
    return out, sum(1 for f in findings if f.get("fix_available"))


def describe(finding):
    """'CVE-1 (high, openssl 3.0.11-1, fixed in 3.0.13-1)': a finding in one line."""
    fix = ("fixed in %s" % finding["fixed"]) if finding.get("fixed") else "no fix"
    return "%s (%s, %s %s, %s)" % (finding.get("id"), severity_of(finding), finding.get("package"),
                                   finding.get("installed"), fix)


def evaluate(findings, policy, today=None, image=None):
    """The verdict of `findings` under `policy` on `today` (a date or 'YYYY-MM-DD'; default today, UTC)
    for the repository `image`: {"passed", "violations": [ids], "waived": [{id, package, reason, expires}],
    "expired_waivers": [{id, reason, expires, findings: n}], "reasons": [one line each], "counts", "fixable"}."""
    policy = normalize_policy(policy)
    day = _today(today)
    live = [w for w in policy["waivers"] if parse_date(w["expires"], "expires") >= day]
    expired = [w for w in policy["waivers"] if parse_date(w["expires"], "expires") < day]
    waived, counted = [], []
    expired_hits = {id(w): 0 for w in expired}
    for f in findings:
        waiver = next((w for w in live if waiver_matches(w, f, image)), None)
        if waiver:
            waived.append({"id": f.get("id"), "package": f.get("package"), "reason": waiver["reason"],
                           "expires": waiver["expires"]})
            continue
        for w in expired:
            if waiver_matches(w, f, image):
                expired_hits[id(w)] += 1
        if f.get("fix_available") or not policy["fixable_only"]:
            counted.append(f)
    bad, reasons = [], []
    for f in counted:
        if severity_of(f) in policy["fail_on"]:
            bad.append(f)
            reasons.append("%s: severity %s fails the policy" % (describe(f), severity_of(f)))
    for sev, limit in sorted(policy["max"].items(), key=lambda kv: SEVERITIES.index(kv[0])):
        of_sev = [f for f in counted if severity_of(f) == sev]
        if len(of_sev) > limit:
            reasons.append("%d %s finding(s)%s, more than the policy's max of %d"
                           % (len(of_sev), sev, " with a fix" if policy["fixable_only"] else "", limit))
            bad.extend(f for f in of_sev if f not in bad)
    all_counts, fixable = counts(findings)
    return {"passed": not bad, "violations": sorted({f.get("id") for f in bad}), "waived": waived,
            "expired_waivers": [{"id": w["id"], "reason": w["reason"], "expires": w["expires"],
                                 "findings": expired_hits[id(w)]} for w in expired],
            "reasons": reasons, "counts": all_counts, "fixable": fixable}


def verdict_now(record, policy, today=None, image=None):
    """A stored scan record's verdict under `policy` today (waiver expiry re-evaluated), or, for a
    version never scanned (record None), {"passed": not require_scan, "scanned": False, ...}."""
    policy = normalize_policy(policy)
    if not record:
        return {"passed": not policy["require_scan"], "scanned": False, "violations": [], "waived": [],
                "expired_waivers": [], "counts": dict.fromkeys(SEVERITIES, 0), "fixable": 0,
                "reasons": ["never scanned, and the policy requires a scan"] if policy["require_scan"] else []}
    out = evaluate(record.get("findings") or [], policy, today, image or record.get("repository"))
    out["scanned"] = True
    out["time"] = record.get("time")
    return out


def summary_line(name, version, verdict, limit=5):
    """'web:3 fails the policy: CVE-1 (...); CVE-2 (...)' or '... passes'."""
    if verdict["passed"]:
        return "%s:%s passes the scan policy%s" % (name, version, "" if verdict.get("scanned", True) else " (never scanned)")
    reasons = verdict["reasons"]
    more = " and %d more" % (len(reasons) - limit) if len(reasons) > limit else ""
    expired = [w["id"] for w in verdict.get("expired_waivers") or [] if w.get("findings")]
    return "%s:%s fails the scan policy: %s%s%s" % (
        name, version, "; ".join(reasons[:limit]), more,
        " (expired waiver(s): %s)" % ", ".join(expired) if expired else "")
