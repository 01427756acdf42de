# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolve a recipe on the controller, then run the image_bake module.

A recipe shipped in the collection is named (`web`); any other is a path.
The plugin also fills what only the controller knows: the collection
version and search paths, and the role directories the recipe applies
(they are inputs of the fingerprint).

It keeps the bake's bookkeeping out of the playbook: with `log_dir` it picks
the log file, creates its directory and says where to follow the bake before
Packer starts. And when the module would run here anyway (a local
connection), it looks the inputs up in the catalog first: a version with the
same fingerprint is returned unchanged without starting a module process,
which is most of a no-op bake's time, and a revoked parent is refused.
Anything else goes to the module (which refuses a revoked parent too,
before Packer runs).
"""

from __future__ import annotations

import datetime
import os
import time
import uuid

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.immutable.infra.plugins.module_utils import _evidence, _signing
from ansible_collections.immutable.infra.plugins.module_utils._bake import plan, recipe_inputs, summary
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, state_dir
from ansible_collections.immutable.infra.plugins.module_utils._registry_auth import using
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.plugin_utils._collection import (
    COLLECTION_ROOT,
    collection_version,
    collections_paths,
    recipe_role_paths,
)

display = Display()


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


def log_path(log_dir, recipe_dir):
    """<log_dir>/<recipe>-<UTC time>-<4 hex>.log; an empty log_dir means the state directory's bake-logs."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return os.path.join(os.path.expanduser(log_dir) if log_dir else state_dir("bake-logs"),
                        "%s-%s-%s.log" % (os.path.basename(recipe_dir.rstrip("/")), stamp, uuid.uuid4().hex[:4]))


def catalog_hit(args):
    """The catalog's versions of these inputs, one per selected source (the
    module's no-op result), or None when the module has to decide: a bake of
    any output, an error, or options this shortcut does not read."""
    if boolean(args.get("force", False), strict=False) or not isinstance(args.get("variables", {}), dict) \
            or not isinstance(args.get("validate_certs"), (bool, type(None))):
        return None
    try:
        inputs = recipe_inputs(dict(args, registry=args.get("registry") or REGISTRY_ARGS["registry"]["default"]))
        outputs = inputs["outputs"]
        for out in outputs:
            action, found = plan(inputs["catalog"], out["name"], out["fingerprint"], args.get("version"))
            if action != "exists" or not evidence_complete(inputs["catalog"], found, args):
                return None
            out.update(changed=False, image=found)
    except ImmutableInfraError as exc:
        if exc.details.get("revocation"):
            raise       # a revoked parent: refused here, before any module or Packer starts
        return None     # the module reports it, with its own message
    except (TypeError, ValueError, KeyError):
        return None
    return summary(inputs["recipe"], outputs)


def evidence_complete(catalog, facts, args):
    """True when the version has its SBOM (an AMI version has none) and, when the bake signs, a signature: else the module
    completes it (a bake killed right after its push, or a version from before SBOMs or signing)."""
    if _evidence.sbom_expected(facts) and not _evidence.has_sbom(catalog, facts):
        return False
    if not args.get("signing"):
        return True
    parts = _signing.reference_parts(facts)
    return bool(_signing.signature_paths(args.get("lookaside") or _signing.default_lookaside(), parts["name"], parts["digest"]))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _runs_here(self):
        """True when the module would run on this controller, as this user, in this environment."""
        env = self._task.environment
        return (getattr(self._connection, "transport", None) == "local" and not self._play_context.become
                and not any(env if isinstance(env, list) else [env]))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        log_dir = args.pop("log_dir", None)
        if log_dir is not None and not isinstance(log_dir, str):
            raise AnsibleActionFail("log_dir must be a directory path (empty for the state directory), not %r" % (log_dir,))
        if "recipe" in args:
            recipe_dir = resolve_recipe(args["recipe"], self._loader)
            args["recipe"] = recipe_dir
            paths = list(args.get("fingerprint_paths") or [])
            args["fingerprint_paths"] = sorted(set(paths) | set(recipe_role_paths(recipe_dir)))
            args.setdefault("collections_paths", collections_paths())
            if log_dir is not None and not args.get("log_file"):
                args["log_file"] = log_path(log_dir, recipe_dir)
        args.setdefault("collection_version", collection_version())
        if "recipe" in args and self._runs_here():
            started = time.monotonic()
            try:
                with using(args):       # the controller-side catalog read uses the task's registry credentials and CA
                    hit = catalog_hit(args)
            except ImmutableInfraError as exc:
                return dict(result, failed=True, changed=False, **exc.result())
            if hit is not None:
                return dict(result, duration=round(time.monotonic() - started, 3), **hit)
        if args.get("log_file") and not self._task.check_mode:
            os.makedirs(os.path.dirname(os.path.abspath(args["log_file"])), exist_ok=True)
            display.display("Packer's output for this bake goes to %s (tail -f it)" % args["log_file"])
        result.update(self._execute_module(module_name=self._task.resolved_action or "immutable.infra.image_bake",
                                           module_args=args, task_vars=task_vars))
        return result
