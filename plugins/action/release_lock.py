# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take or drop the release lock of an app/stack, on the controller, owned by
the ansible-playbook process (the parent of this worker)."""

from __future__ import annotations

import os

from ansible.plugins.action import ActionBase

from ansible_collections.immutable.infra.plugins.module_utils._module import state_dir
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._server_group import check_name
from ansible_collections.immutable.infra.plugins.plugin_utils import _lock


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("app", "stack", "state", "lock_dir"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        app, stack, state = args.get("app"), args.get("stack"), args.get("state", "present")
        try:
            check_name("app", app)
            check_name("stack", stack)
        except ImmutableInfraError as exc:
            return dict(result, failed=True, msg=exc.msg)
        if state not in ("present", "absent"):
            return dict(result, failed=True, msg="state must be present or absent, not %r" % (state,))
        path = os.path.join(args.get("lock_dir") or state_dir("locks"), "%s-%s.lock" % (app, stack))
        owner = os.getppid()
        result["lock_file"] = path
        if self._task.check_mode:
            held = _lock.read(path)
            busy = held and held.get("pid") != owner and _lock.owner_alive(held.get("pid", 0))
            if busy and state == "present":
                return dict(result, failed=True, msg="%s/%s is locked by pid %s" % (app, stack, held["pid"]))
            return dict(result, changed=False)
        if state == "absent":
            result["changed"] = _lock.release(path, owner)
            return result
        try:
            changed, note = _lock.acquire(path, owner, "release of %s/%s" % (app, stack))
        except RuntimeError as exc:
            return dict(result, failed=True, msg=str(exc))
        result["changed"] = changed
        if note:
            result["note"] = note
        return result
