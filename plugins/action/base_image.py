# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fill the collection version (a fingerprint input) and run base_image."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.action.image_bake import ActionModule as _BakeAction
from ansible_collections.immutable.infra.plugins.module_utils._registry_auth import using


class ActionModule(_BakeAction):

    def run(self, tmp=None, task_vars=None):
        # The controller-side catalog read (the no-op shortcut) uses the task's registry credentials and CA.
        with using(self._task.args):
            return super().run(tmp, task_vars)
