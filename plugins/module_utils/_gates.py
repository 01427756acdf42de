# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Promotion gates and channel moves: the policy image_channel applies.

The gates are pure functions of records read from the registry (the test
record, the channel records, the revocation) and the clock; promote() and
rollback() read those records through a Lifecycle (see _lifecycle), decide,
and make at most one move_channel() call, passing the head they decided on so
that a concurrent move is detected instead of lost.

Gates of a channel (all optional):
    tested    the version has a passing test record
    after     the version was promoted to this channel before (it is a `to` in its history)
    min_soak  seconds the version spent as the head of `after` (every stint; the current one to now)
    approval  someone approved the move (approved_by is not empty)
    scan      true: the version's stored scan, if any, passes the scan policy now (waiver expiry
              re-evaluated); "required": it must also have been scanned (see _policy)
A revoked version is always refused, whatever the gates. A rollback skips the
gates but never lands on a revoked version.
"""

from __future__ import annotations

import time

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import NEW_CHANNEL, actor, check_channel, revoked_message
from ansible_collections.immutable.infra.plugins.module_utils._policy import normalize_policy, summary_line, verdict_now
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

GATES = ("tested", "after", "min_soak", "approval", "scan")


# ------------------------------------------------------------------ pure logic
def normalize_gates(gates, channel):
    """The gates of `channel` as {tested: bool, after: str|None, min_soak: float|None, approval: bool,
    scan: None|"passed"|"required"};
    ImmutableInfraError naming the bad gate."""
    gates = dict(gates or {})
    unknown = sorted(k for k, v in gates.items() if k not in GATES and v is not None)
    if unknown:
        raise ImmutableInfraError("unknown gate(s) %s for channel %s: use %s"
                                  % (", ".join(unknown), channel, ", ".join(GATES)))
    out = {}
    for key in ("tested", "approval"):
        try:
            out[key] = boolean(gates.get(key) or False, strict=True)
        except TypeError:
            raise ImmutableInfraError("gate %s of channel %s must be true or false, not %r" % (key, channel, gates[key]))
    after = gates.get("after") or None
    if after is not None:
        check_channel(after)
        if after == channel:
            raise ImmutableInfraError("gate after of channel %s names the channel itself: name the channel "
                                      "a version must pass through before (e.g. dev before staging)" % channel)
    out["after"] = after
    out["scan"] = _scan_gate(gates.get("scan"), channel)
    soak = gates.get("min_soak")
    if soak in (None, ""):
        out["min_soak"] = None
    else:
        try:
            out["min_soak"] = float(soak)
        except (TypeError, ValueError):
            out["min_soak"] = -1.0
        if out["min_soak"] < 0:
            raise ImmutableInfraError("gate min_soak of channel %s must be a number of seconds >= 0, not %r"
                                      % (channel, soak))
        if after is None:
            raise ImmutableInfraError("gate min_soak of channel %s needs gate after: the channel whose time it counts"
                                      % channel)
    return out


def _scan_gate(value, channel):
    if isinstance(value, str) and value.strip().lower() == "required":
        return "required"
    try:
        return "passed" if boolean(value or False, strict=True) else None
    except TypeError:
        raise ImmutableInfraError("gate scan of channel %s must be true, false or required, not %r" % (channel, value))


def scan_gate(name, version, mode, record, policy, today=None):
    """The scan gate's result: the stored scan record judged by the policy now."""
    tag = version["tag"] or version["version"]
    verdict = verdict_now(record, policy, today, name)
    if record is None and mode == "required":
        return {"name": "scan", "passed": False, "detail": "version %s was never scanned: scan it first "
                "(immutable.infra.image_scan, playbooks/scan.yml)" % tag}
    if verdict["passed"]:
        detail = ("version %s was scanned at %s and passes the scan policy%s" % (
            tag, record.get("time"), " (waived: %s)" % ", ".join(sorted({w["id"] for w in verdict["waived"]}))
            if verdict["waived"] else "") if record else "version %s was never scanned (not required)" % tag)
    else:
        detail = "%s; fix forward (rebake on a patched parent) or waive with a reason and an expiry" % summary_line(
            name, tag, verdict)
    return {"name": "scan", "passed": verdict["passed"], "detail": detail, "violations": verdict["violations"]}


def stints(record, digest, now):
    """[(start epoch, end epoch)] when `digest` was the head of the channel record; the current one ends now."""
    history = (record or {}).get("history") or []
    out = []
    for i, move in enumerate(history):
        if move.get("to") == digest:
            end = history[i + 1]["epoch"] if i + 1 < len(history) else now
            out.append((move["epoch"], max(move["epoch"], end)))
    return out


def soak_seconds(record, digest, now):
    """Seconds `digest` spent as the head of the channel record, every stint summed."""
    return sum(end - start for start, end in stints(record, digest, now))


def first_promotion(record, digest):
    """The first history entry that moved the channel to `digest`, or None."""
    for move in (record or {}).get("history") or []:
        if move.get("to") == digest:
            return move
    return None


def _seconds(value):
    return "%d s" % int(value) if value == int(value) else "%.1f s" % value


def evaluate(name, channel, gates, version, test=None, after_record=None, approved_by=None, revocation=None, now=None,
             scan=None, scan_policy=None):
    """Every gate of the move of `version` (version facts) to `channel`, as
    [{name, passed, detail}]: `revoked` first (always), then the configured gates.
    test: the version's test record; after_record: the record of gates["after"];
    scan: the version's scan record, judged by scan_policy (None: the default policy)."""
    now = time.time() if now is None else now
    tag = version["tag"] or version["version"]
    out = [{"name": "revoked", "passed": revocation is None,
            "detail": revoked_message(name, version, revocation) + ": promote another version" if revocation
            else "version %s is not revoked" % tag}]
    if gates["tested"]:
        status = (test or {}).get("status")
        if status == "passed":
            detail = "version %s passed its tests at %s (test digest %s)" % (tag, test.get("time"), test.get("test_digest"))
        elif test:
            failures = ((test.get("summary") or {}).get("failures") or [])[:5]
            detail = "version %s %s its tests at %s%s: fix the recipe, bake and test a new version" % (
                tag, "failed" if status == "failed" else "has test status %r for" % status, test.get("time"),
                " (%s)" % ", ".join(failures) if failures else "")
        else:
            detail = "version %s was never tested: test it first (immutable.infra.image_test, playbooks/test_image.yml)" % tag
        out.append({"name": "tested", "passed": status == "passed", "detail": detail})
    after = gates["after"]
    if after:
        move = first_promotion(after_record, version["digest"])
        if move:
            detail = "version %s was promoted to %s at %s by %s" % (tag, after, move.get("time"), move.get("by"))
        elif after_record is None:
            detail = "channel %s does not exist yet: promote version %s to %s first" % (after, tag, after)
        else:
            detail = "version %s was never promoted to %s: promote it to %s first" % (tag, after, after)
        out.append({"name": "after", "passed": move is not None, "detail": detail})
    if gates["min_soak"] is not None:
        need = gates["min_soak"]
        spent = soak_seconds(after_record, version["digest"], now)
        if spent >= need:
            detail = "version %s spent %s as the head of %s (needs %s)" % (tag, _seconds(spent), after, _seconds(need))
        elif not stints(after_record, version["digest"], now):
            detail = "version %s was never the head of %s (needs %s there)" % (tag, after, _seconds(need))
        else:
            detail = "version %s spent %s as the head of %s, needs %s: wait %s more" % (
                tag, _seconds(spent), after, _seconds(need), _seconds(need - spent))
        out.append({"name": "min_soak", "passed": spent >= need, "detail": detail, "seconds": round(spent, 3)})
    if gates["approval"]:
        detail = ("approved by %s" % approved_by if approved_by else
                  "channel %s needs an approval: give approved_by (promote.yml: promote_approved_by, "
                  "e.g. from an AWX approval node)" % channel)
        out.append({"name": "approval", "passed": bool(approved_by), "detail": detail})
    if gates.get("scan"):
        today = time.strftime("%Y-%m-%d", time.gmtime(now))
        out.append(scan_gate(name, version, gates["scan"], scan, scan_policy, today))
    return out


def refusal(name, channel, version, results):
    """The error message of a refused promotion, or None when every gate passed."""
    failed = [g for g in results if not g["passed"]]
    if not failed:
        return None
    return "promotion of %s:%s to channel %s refused by gate%s %s: %s. Nothing was changed." % (
        name, version["tag"] or version["version"], channel, "s" if len(failed) > 1 else "",
        ", ".join(g["name"] for g in failed), "; ".join(g["detail"] for g in failed))


def heads(record):
    """The channel's targets as a stack, newest last: a promotion pushes, a rollback
    pops back to its target, so a second rollback goes further back, never forward."""
    stack = []
    for move in (record or {}).get("history") or []:
        to = move.get("to")
        if move.get("action") == "rollback" and to in stack:
            del stack[len(stack) - stack[::-1].index(to):]
        else:
            stack.append(to)
    return stack


def rollback_target(record, revoked):
    """(digest, [revoked digests skipped]) of the target before the current one,
    skipping revoked ones (revoked: a set or dict of digests); digest None when there is none."""
    current = (record or {}).get("digest")
    skipped = []
    for digest in reversed(heads(record)[:-1]):
        if digest == current or digest in skipped:
            continue
        if digest in revoked:
            skipped.append(digest)
            continue
        return digest, skipped
    return None, skipped


def brief(name, channel, record):
    """A channel record as diff mode shows it."""
    if not record or not record.get("digest"):
        return {}
    return {"repository": name, "channel": channel, "digest": record["digest"], "version": record.get("version")}


def _version_of(record, digest):
    for move in reversed((record or {}).get("history") or []):
        if move.get("to") == digest:
            return move.get("to_version")
    return None


# ------------------------------------------------------------------ policy over a Lifecycle
def _target(lc, p):
    name = p["name"]
    if p.get("from_channel"):
        source = check_channel(p["from_channel"])
        if source == p["channel"]:
            raise ImmutableInfraError("from_channel %s is the channel being moved: name another channel" % source)
        return lc.resolve_channel(name, source, allow_revoked=True)
    return lc.version(name, version=p.get("version"), digest=p.get("digest"))


def _move(lc, p, channel, target, head, action, approved_by, check_mode):
    """move_channel() based on `head`; a concurrent move is named (or, when it made the
    same move, taken as ours: changed=false)."""
    name = p["name"]
    try:
        return lc.move_channel(name, channel, target["digest"], by=actor(p.get("actor") or None),
                               reason=p.get("reason") or None, action=action, approved_by=approved_by,
                               expect=head or NEW_CHANNEL, check_mode=check_mode)
    except ImmutableInfraError as exc:
        now = lc.channel(name, channel) or {}
        now_head = now.get("digest")
        if now_head == head:
            raise
        if now_head == target["digest"]:
            return now, now
        last = (now.get("history") or [{}])[-1]
        raise ImmutableInfraError(
            "channel %s of %s moved while this %s was decided: %s moved it from %s to version %s (%s) at %s; nothing "
            "was written by this run: re-run to decide again on the new head" % (
                channel, name, "promotion" if action == "promote" else action, last.get("by"),
                _version_of(now, head) or head or "nothing", now.get("version"), now_head, last.get("time")),
            channel=now, gates=[], concurrent=exc.msg)


def _result(name, channel, before, after, results, target, extra=None):
    changed = (before or {}).get("digest") != (after or {}).get("digest")
    out = {"changed": changed, "channel": after, "before": before,
           "move": (after.get("history") or [None])[-1] if changed else None,
           "gates": results, "target": {k: target.get(k) for k in ("version", "tag", "digest", "reference")},
           "diff": {"before": brief(name, channel, before), "after": brief(name, channel, after)}}
    out.update(extra or {})
    return out


def promote(lc, p, check_mode=False):
    """Move p["channel"] of repository p["name"] to p["version"] / p["digest"] / the target
    of p["from_channel"], if every gate in p["gates"] passes (and the version is not revoked)."""
    name, channel = p["name"], check_channel(p["channel"])
    gates = normalize_gates(p.get("gates"), channel)
    scan_policy = normalize_policy(p.get("scan_policy")) if gates["scan"] else None
    target = _target(lc, p)
    before = lc.channel(name, channel)
    head = (before or {}).get("digest")
    approved_by = (p.get("approved_by") or "").strip() or None
    results = evaluate(
        name, channel, gates, target,
        test=lc.test_result(name, target["digest"]) if gates["tested"] else None,
        after_record=lc.channel(name, gates["after"]) if gates["after"] else None,
        approved_by=approved_by, revocation=lc.revocation(name, target["digest"]),
        scan=lc.scan_result(name, target["digest"]) if gates["scan"] else None, scan_policy=scan_policy)
    if head == target["digest"]:
        # Nothing moves: gates are reported, not enforced; a revoked head is still named.
        if not results[0]["passed"]:
            raise ImmutableInfraError("channel %s of %s points at a revoked version: %s; roll it back "
                                      "(state=rollback) or promote another version" % (channel, name, results[0]["detail"]),
                                      channel=before, gates=results)
        return _result(name, channel, before, before, results, target)
    message = refusal(name, channel, target, results)
    if message:
        raise ImmutableInfraError(message, channel=before, gates=results)
    before, after = _move(lc, p, channel, target, head, "promote", approved_by, check_mode)
    return _result(name, channel, before, after, results, target)


def rollback(lc, p, check_mode=False):
    """Move p["channel"] back to its previous target (or to p["version"] / p["digest"] when
    given, which must be an earlier target), never onto a revoked version. No gates."""
    name, channel = p["name"], check_channel(p["channel"])
    if p.get("from_channel"):
        raise ImmutableInfraError("from_channel %s does not apply to a rollback: a rollback goes back in the history of "
                                  "channel %s (give version to pick an earlier target)" % (p["from_channel"], channel))
    before = lc.channel(name, channel)
    if before is None:
        raise ImmutableInfraError("unknown channel %s of %s: nothing to roll back (existing channels: %s)"
                                  % (channel, name, ", ".join(lc.index(name)["channels"]) or "none"))
    revoked = lc.index(name)["revoked"]
    if p.get("version") or p.get("digest"):
        target = lc.version(name, version=p.get("version"), digest=p.get("digest"))
        if first_promotion(before, target["digest"]) is None:
            raise ImmutableInfraError("version %s was never a target of channel %s of %s: a rollback goes back to an "
                                      "earlier target (promote it instead)" % (target["tag"] or target["version"], channel, name),
                                      channel=before)
        skipped = []
    else:
        digest, skipped = rollback_target(before, revoked)
        if digest is None:
            raise ImmutableInfraError(
                "channel %s of %s has no earlier target to roll back to%s" % (
                    channel, name, " that is not revoked (revoked: %s)" % ", ".join(
                        _version_of(before, d) or d for d in skipped) if skipped else ""), channel=before)
        target = lc.version(name, digest=digest)
    revocation = lc.revocation(name, target["digest"]) if target["digest"] in revoked else None
    results = [evaluate(name, channel, normalize_gates({}, channel), target, revocation=revocation)[0]]
    if revocation:
        raise ImmutableInfraError("rollback of channel %s of %s refused: %s; roll back to another version"
                                  % (channel, name, revoked_message(name, target, revocation)), channel=before, gates=results)
    if before.get("digest") == target["digest"]:
        return _result(name, channel, before, before, results, target, {"passed_over": []})
    head = before.get("digest")
    before, after = _move(lc, p, channel, target, head, "rollback", (p.get("approved_by") or "").strip() or None, check_mode)
    return _result(name, channel, before, after, results, target,
                   {"passed_over": [_version_of(before, d) or d for d in skipped]})


def apply(lc, p, check_mode=False):
    """image_channel: state present promotes, state rollback moves back."""
    return (rollback if p.get("state") == "rollback" else promote)(lc, p, check_mode)
