# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ancestry: which images were baked on a parent repository, and which of them
are out of date because the channel their parent came from moved on.

A child is the newest version of a repository whose parent (by digest, label
org.opencontainers.image.base.name) is a version of the parent repository.
Only the newest version counts: an older one was already replaced. A child
baked from a parent channel (label infra.immutable.parent-channel) is out of
date when that channel now points at another version (_lifecycle.out_of_date);
a child pinned to its parent by version never is. Rebaking it (same recipe,
same channel) makes a new version: the new parent is a new input."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._catalog import LABEL_RECIPE, parse_reference, version_key
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import LABEL_PARENT_CHANNEL
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

VM_SUFFIX = "-vm"


def parent_repository(parent, registry):
    """(registry, name) of the parent repository; a version in it is refused (the repository is asked for)."""
    parts = parse_reference(parent, default_registry=registry)
    if parts["tag"] or parts["digest"]:
        raise ImmutableInfraError("parent %r names a version: give the parent repository only (for example %s)"
                                  % (parent, parts["name"]))
    return parts["registry"], parts["name"]


def recorded_parent(facts, registry):
    """The repository (name) of the version's recorded parent when that parent is in `registry`, else None."""
    if not facts.get("parent_name") or not facts.get("parent_digest"):
        return None
    try:
        parts = parse_reference(facts["parent_name"], default_registry=registry)
    except ImmutableInfraError:
        return None
    return parts["name"] if parts["registry"] == registry else None


def is_child(facts, registry, parent_name):
    """True when the version's recorded parent is a version of registry/parent_name."""
    return recorded_parent(facts, registry) == parent_name


def bake_request(name, facts, recipes=None):
    """How to bake a child again: {recipe, name, only, parent, parent_channel, variables, var_files}.

    The recipe is the shipped recipe named by the version's recipe label (packer/<label>), or
    recipes[repository] - a recipe name or path, or a dict with recipe, variables, var_files (the
    bake's other inputs, which the registry does not keep). A VM output (repository <name>-vm) is
    baked as the VM source of recipe <name>."""
    fmt = facts.get("format") or "container"
    bake_name = name[:-len(VM_SUFFIX)] if fmt == "vm" and name.endswith(VM_SUFFIX) else name
    label = (facts.get("labels") or {}).get(LABEL_RECIPE) or facts.get("recipe") or name
    if fmt == "vm" and label.endswith(VM_SUFFIX):
        label = label[:-len(VM_SUFFIX)]
    given = (recipes or {}).get(name)
    given = {"recipe": given} if isinstance(given, str) else dict(given or {})
    unknown = sorted(set(given) - {"recipe", "variables", "var_files"})
    if unknown:
        raise ImmutableInfraError("recipes[%s]: unknown key(s) %s (known: recipe, variables, var_files)"
                                  % (name, ", ".join(unknown)))
    return {"recipe": given.get("recipe") or label, "name": bake_name, "only": [fmt],
            "parent": facts.get("parent_name"),
            "parent_channel": (facts.get("out_of_date") or {}).get("parent_channel") or facts.get("parent_channel"),
            "variables": dict(given.get("variables") or {}), "var_files": list(given.get("var_files") or [])}


def children(lifecycle, parent, recipes=None, repositories=None):
    """The children of a parent repository: for every repository (or those named) whose newest
    version was baked on a version of `parent`, that version's facts plus parent_channel,
    out_of_date (None or the _lifecycle.out_of_date dict) and, for the out-of-date ones,
    rebake (see bake_request). Sorted by repository."""
    registry, parent_name = parent_repository(parent, lifecycle.registry)
    out, cache = [], {}
    for repo in sorted(repositories if repositories is not None else lifecycle.repositories()):
        if repo == parent_name:
            continue
        versions = sorted(lifecycle.index(repo)["versions"], key=version_key)
        facts = lifecycle.facts(repo, versions[-1], versions[-1]) if versions else None
        if facts is None or not is_child(facts, registry, parent_name):
            continue
        facts = dict(facts, name=repo, parent_channel=(facts.get("labels") or {}).get(LABEL_PARENT_CHANNEL))
        facts["out_of_date"] = lifecycle.out_of_date(facts, cache) if facts["parent_channel"] else None
        if facts["out_of_date"]:
            facts["rebake"] = bake_request(repo, facts, recipes)
        out.append(facts)
    return out
