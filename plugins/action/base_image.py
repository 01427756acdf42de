# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fill the collection version (a fingerprint input) and run base_image."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.action.image_bake import ActionModule as _BakeAction


class ActionModule(_BakeAction):
    pass
