# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side facts about this collection, for action plugins."""

from __future__ import annotations

import json
import os

import yaml

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
        for key in ("pre_tasks", "tasks", "post_tasks"):
            from_tasks(play.get(key))
    return [n for n in names if n]


def role_path(name, recipe_dir):
    """Directory of a role named in a recipe playbook, or None."""
    if name.count(".") >= 2:
        ns, coll, role = name.split(".", 2)
        if (ns, coll) == ("immutable", "infra"):
            path = os.path.join(COLLECTION_ROOT, "roles", role)
            return path if os.path.isdir(path) else None
        for base in collections_paths():
            path = os.path.join(base, "ansible_collections", ns, coll, "roles", role)
            if os.path.isdir(path):
                return path
        return None
    path = os.path.join(recipe_dir, "roles", name)
    return path if os.path.isdir(path) else None


def recipe_role_paths(recipe_dir):
    """Every role directory the recipe's playbooks apply, with role dependencies."""
    found, todo = [], []
    for fn in sorted(os.listdir(recipe_dir)):
        if fn.endswith((".yml", ".yaml")):
            with open(os.path.join(recipe_dir, fn)) as f:
                try:
                    doc = yaml.safe_load(f)
                except yaml.YAMLError:
                    continue
            if isinstance(doc, list):
                todo.extend(_role_names(doc))
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = role_path(name, recipe_dir)
        if path is None:
            continue
        found.append(path)
        meta = os.path.join(path, "meta", "main.yml")
        if os.path.isfile(meta):
            with open(meta) as f:
                deps = (yaml.safe_load(f) or {}).get("dependencies") or []
            todo.extend(d if isinstance(d, str) else (d.get("role") or d.get("name")) for d in deps)
    return sorted(found)
