# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side facts about this collection, for action plugins."""

from __future__ import annotations

import json
import os

import yaml
from ansible.errors import AnsibleActionFail

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def collection_version(root=COLLECTION_ROOT):
    """The version from MANIFEST.json (installed) or galaxy.yml (checkout)."""
    manifest = os.path.join(root, "MANIFEST.json")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            return json.load(f)["collection_info"]["version"]
    with open(os.path.join(root, "galaxy.yml")) as f:
        return str(yaml.safe_load(f)["version"])


def collections_paths():
    """The controller's collection search paths, so that a Packer ansible
    provisioner finds the same collections this play uses."""
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    # The loader also lists ansible-core's internal collections and playbook-
    # adjacent directories that may not exist: keep real, user-facing ones.
    paths = [p for p in AnsibleCollectionConfig.collection_paths or []
             if os.path.isdir(p) and not p.rstrip("/").endswith(os.path.join("ansible", "_internal"))]
    here = os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT)))
    if os.path.basename(os.path.dirname(os.path.dirname(COLLECTION_ROOT))) == "ansible_collections" and here not in paths:
        paths.insert(0, here)
    return paths


class RoleNotFound(AnsibleActionFail):
    """A role a recipe applies that cannot be found: its files could not be fingerprinted."""


def _role_names(doc):
    """Role names a playbook or role task file applies (roles:, import/include_role)."""
    names = []

    def from_tasks(tasks):
        for task in tasks or []:
            if not isinstance(task, dict):
                continue
            for key in ("import_role", "include_role", "ansible.builtin.import_role", "ansible.builtin.include_role"):
                if isinstance(task.get(key), dict) and task[key].get("name"):
                    names.append(task[key]["name"])
            for key in ("block", "rescue", "always"):
                from_tasks(task.get(key))

    for play in doc or []:
        if not isinstance(play, dict):
            continue
        for role in play.get("roles") or []:
            names.append(role if isinstance(role, str) else (role.get("role") or role.get("name")))
        for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            from_tasks(play.get(key))
    return [n for n in names if n]


def _collection_of(path):
    """(namespace, name) of the collection a role directory belongs to, or None."""
    parts = os.path.abspath(path).split(os.sep)
    if len(parts) >= 5 and parts[-2] == "roles" and parts[-5] == "ansible_collections":
        return parts[-4], parts[-3]
    if os.path.dirname(os.path.dirname(os.path.abspath(path))) == COLLECTION_ROOT:
        return "immutable", "infra"
    return None


def _collection_role(ns, coll, role):
    if (ns, coll) == ("immutable", "infra"):
        path = os.path.join(COLLECTION_ROOT, "roles", role)
        return path if os.path.isdir(path) else None
    for base in collections_paths():
        path = os.path.join(base, "ansible_collections", ns, coll, "roles", role)
        if os.path.isdir(path):
            return path
    return None


def role_path(name, recipe_dir, within=None, roles_path=()):
    """Directory of a role, or None. Fully qualified names are looked up in
    their collection; a bare name in the collection of the role that depends
    on it (`within`), then in <recipe>/roles, the recipe directory and roles_path."""
    if "{{" in name:
        return None
    if name.count(".") >= 2:
        ns, coll, role = name.split(".", 2)
        return _collection_role(ns, coll, role)
    if os.sep in name:
        path = name if os.path.isabs(name) else os.path.join(recipe_dir, name)
        return os.path.abspath(path) if os.path.isdir(path) else None
    owner = _collection_of(within) if within else None
    if owner:
        found = _collection_role(owner[0], owner[1], name)
        if found:
            return found
    path = os.path.join(recipe_dir, "roles", name)
    if os.path.isdir(path):
        return path
    for base in [recipe_dir] + list(roles_path):
        path = os.path.join(base, name)
        if any(os.path.isdir(os.path.join(path, d)) for d in ("tasks", "meta", "defaults", "handlers")):
            return path
    return None


def _configured_roles_path():
    try:
        from ansible import constants as C

        return [os.path.expanduser(p) for p in C.DEFAULT_ROLES_PATH or []]
    except (ImportError, AttributeError):
        return []


def recipe_role_paths(recipe_dir, roles_path=None):
    """Every role directory the recipe's playbooks apply, with their meta
    dependencies. Raises RoleNotFound naming the role and who applies it: a
    role that cannot be found cannot be an input of the fingerprint."""
    roles_path = _configured_roles_path() if roles_path is None else list(roles_path)
    found, todo = [], []
    for fn in sorted(os.listdir(recipe_dir)):
        if fn.endswith((".yml", ".yaml")):
            with open(os.path.join(recipe_dir, fn)) as f:
                try:
                    doc = yaml.safe_load(f)
                except yaml.YAMLError:
                    continue
            if isinstance(doc, list):
                todo.extend((name, "playbook %s" % os.path.join(recipe_dir, fn), None) for name in _role_names(doc))
    seen = set()
    while todo:
        name, where, within = todo.pop(0)
        path = role_path(name, recipe_dir, within, roles_path)
        if path is None:
            raise RoleNotFound(
                "recipe %s: role %r applied by %s was not found (looked in its collection when fully qualified, "
                "else in %s/roles, the recipe directory and the roles path %s); the bake cannot fingerprint it. "
                "Put the role there, name a collection role by its full name, or fix the name%s"
                % (recipe_dir, name, where, recipe_dir, ":".join(roles_path) or "(empty)",
                   " (role names cannot be templated)" if "{{" in name else ""))
        if path in seen:
            continue
        seen.add(path)
        found.append(path)
        for meta_name in ("main.yml", "main.yaml"):
            meta = os.path.join(path, "meta", meta_name)
            if os.path.isfile(meta):
                with open(meta) as f:
                    deps = (yaml.safe_load(f) or {}).get("dependencies") or []
                for d in deps:
                    dep = d if isinstance(d, str) else (d.get("role") or d.get("name"))
                    if dep:
                        todo.append((dep, "the dependencies in %s" % meta, path))
    return sorted(found)
