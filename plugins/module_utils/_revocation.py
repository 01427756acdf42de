# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revocation: a version that must not be used any more, and the checks that
enforce it wherever a version is about to be used.

The records live in the registry (_lifecycle.Lifecycle.revoke). This file is
the policy on top: what a revocation with cascade covers, the one message
every refusal uses (the version, the reason, who and when), and the checks a
release, a rollback and a bake run before they make anything. Nothing here
is asked when something is removed, or when a failed release restores what
ran before it."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._catalog import parse_reference
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import revoked_message
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def repo_name(facts, registry=None):
    """The repository name (no registry) of version facts: '127.0.0.1:5000/web' -> 'web'."""
    if facts.get("reference"):
        return parse_reference(facts["reference"], default_registry=registry)["name"]
    repo = str(facts.get("repository") or "")
    return repo.split("/", 1)[1] if registry and repo.startswith(registry + "/") else repo


def describe(record, name=None):
    """One line naming a revocation: version, digest, reason, who, when (and the ancestor it cascaded from)."""
    return revoked_message(name or record.get("repository"), {}, record)


def refuse_if_revoked(lifecycle, name, digest, doing):
    """Raise ImmutableInfraError naming the revocation when the version is revoked.
    `doing` says what was refused ("cannot release web:3")."""
    record = lifecycle.revocation(name, digest)
    if record:
        raise ImmutableInfraError("%s: %s; nothing was changed" % (doing, describe(record, name)), revocation=record)


def check_reference(reference, doing, lifecycle_for, default_registry=None):
    """Refuse a reference pinned by digest ('registry/name@sha256:..') whose version is revoked.
    lifecycle_for(registry) -> Lifecycle. A reference without a digest names no version: nothing to check."""
    parts = parse_reference(reference, default_registry=default_registry)
    if parts["digest"]:
        refuse_if_revoked(lifecycle_for(parts["registry"]), parts["name"], parts["digest"], doing)


def channel_image(lifecycle_for, image, channel, default_registry, doing="cannot run", enforce=True):
    """The version a channel of the repository `image` points at, with "channel" set. With
    `enforce`, a revoked target is refused naming the channel and the revocation.
    `image` names the repository, without a version."""
    parts = parse_reference(image, default_registry=default_registry)
    if parts["tag"] or parts["digest"]:
        raise ImmutableInfraError(
            "image %r names a version, but channel %s chooses it: give the repository only (for example %s)"
            % (image, channel, parts["name"]))
    lifecycle = lifecycle_for(parts["registry"])
    facts = dict(lifecycle.resolve_channel(parts["name"], channel, allow_revoked=True), channel=channel)
    if enforce:
        refuse_if_revoked(lifecycle, parts["name"], facts["digest"], "%s channel %s of %s: it points at a revoked version"
                          % (doing, channel, parts["name"]))
    return facts


# ------------------------------------------------------------------ revoke / unrevoke
def targets(lifecycle, name, facts, cascade):
    """[(repository name, version facts, cascade_from)] a revocation covers: the version, then
    (with cascade) every descendant in any repository of the registry, each once."""
    out = [(name, facts, None)]
    if cascade:
        seen = {facts["digest"]}
        for child in lifecycle.descendants(facts["digest"]):
            if child["digest"] not in seen:
                seen.add(child["digest"])
                out.append((repo_name(child, getattr(lifecycle, "registry", None)), child, facts["digest"]))
    return out


def _line(name, facts):
    return "%s:%s %s" % (name, facts.get("tag") or facts.get("version"), facts["digest"])


def revoke(lifecycle, params, by, check_mode=False):
    """image_revoke: revoke (state=present) or unrevoke (absent) a version, with cascade its descendants.
    params: name, version, digest, reason, cascade, state. Returns the module result."""
    name = params["name"]
    if not params.get("version") and not params.get("digest"):
        raise ImmutableInfraError("give the version or the digest of the %s version to revoke" % name)
    facts = lifecycle.version(name, version=params.get("version"), digest=params.get("digest"))
    present = params.get("state", "present") == "present"
    reason = (params.get("reason") or "").strip()
    if present and not reason:
        raise ImmutableInfraError("a revocation needs a reason (why %s:%s must not be used)"
                                  % (name, facts.get("tag") or facts["digest"]))
    entries, changed_lines = [], []
    for repo, version, cascade_from in targets(lifecycle, name, facts, params.get("cascade")):
        if present:
            record, changed = lifecycle.revoke(repo, version["digest"], reason, by, cascade_from=cascade_from,
                                               check_mode=check_mode)
        else:
            record = lifecycle.revocation(repo, version["digest"])
            # Undo a cascade only where it came from this version: a descendant revoked for its own reason stays.
            ours = record is not None and (cascade_from is None or record.get("cascade_from") == cascade_from)
            changed = bool(ours and lifecycle.unrevoke(repo, version["digest"], check_mode=check_mode))
        entries.append({"name": repo, "version": version.get("tag") or version.get("version"),
                        "digest": version["digest"], "changed": changed, "cascade_from": cascade_from,
                        "record": record})
        if changed:
            changed_lines.append(_line(repo, version))
    changed = bool(changed_lines)
    key = "revoked" if present else "unrevoked"
    result = {"changed": changed, key: [e for e in entries if e["changed"]], "versions": entries,
              "image": facts}
    if changed:
        text = "".join(line + "\n" for line in changed_lines)
        result["diff"] = {"before": "" if present else text, "after": text if present else "",
                          "before_header": "revoked", "after_header": "revoked"}
    return result


def usable_image(resolve, lifecycle_for, registry, channel=None, enforce=True, doing="cannot run"):
    """The image resolver of a release or a bake: resolve(reference) -> version facts, or with
    `channel` the channel's target in the repository the reference names. With `enforce`
    (anything that starts instances or bakes on the version) a revoked version is refused,
    naming the revocation; removing a group never asks."""
    def resolver(image):
        if channel:
            return channel_image(lifecycle_for, image, channel, registry, doing, enforce)
        facts = resolve(image)
        if enforce:
            check_reference(facts["reference"], "%s %s" % (doing, image), lifecycle_for, registry)
        return facts
    return resolver
