# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolve a recipe on the controller, then run the image_bake module.

A recipe shipped in the collection is named (`web`); any other is a path.
The plugin also fills what only the controller knows: the collection
version and search paths, and the role directories the recipe applies
(they are inputs of the fingerprint).
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.immutable.infra.plugins.plugin_utils._collection import (
    COLLECTION_ROOT,
    collection_version,
    collections_paths,
    recipe_role_paths,
)


def resolve_recipe(recipe, loader):
    if not recipe or not isinstance(recipe, str):
        raise AnsibleActionFail("recipe must be a recipe name or a path to a recipe directory")
    if "/" not in recipe and not recipe.startswith("."):
        shipped = os.path.join(COLLECTION_ROOT, "packer", recipe)
        if os.path.isdir(shipped):
            return shipped
        raise AnsibleActionFail("unknown recipe %r: not shipped in immutable.infra (%s); give a path to use your own"
                                % (recipe, ", ".join(sorted(os.listdir(os.path.join(COLLECTION_ROOT, "packer"))))))
    path = os.path.abspath(os.path.expanduser(recipe)) if os.path.isabs(os.path.expanduser(recipe)) else loader.path_dwim(recipe)
    if not os.path.isdir(path):
        raise AnsibleActionFail("recipe directory %s does not exist" % path)
    return path


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if "recipe" in args:
            recipe_dir = resolve_recipe(args["recipe"], self._loader)
            args["recipe"] = recipe_dir
            paths = list(args.get("fingerprint_paths") or [])
            args["fingerprint_paths"] = sorted(set(paths) | set(recipe_role_paths(recipe_dir)))
            args.setdefault("collections_paths", collections_paths())
        args.setdefault("collection_version", collection_version())
        result.update(self._execute_module(module_name=self._task.resolved_action or "immutable.infra.image_bake",
                                           module_args=args, task_vars=task_vars))
        return result
