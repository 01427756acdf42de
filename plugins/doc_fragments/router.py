# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  router_dir:
    description:
      - State directory of the project's haproxy router, the router backend the traffic policy runs over
        (configuration, C(routes.json), runtime socket, pid file).
      - Defaults to C($IMMUTABLE_INFRA_STATE_DIR/router), else C(~/.local/state/immutable.infra/router).
    type: path
"""
