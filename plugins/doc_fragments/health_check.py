# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # The health_check option (_server_group.HEALTH_OPTIONS), documented once.
    DOCUMENTATION = r"""
options:
  health_check:
    description: How an instance proves it is healthy.
    type: dict
    default: {}
    suboptions:
      path:
        description: HTTP path.
        type: str
        default: /healthz
      port:
        description: Port inside the instance. Defaults to O(port).
        type: int
      status:
        description: Expected HTTP status.
        type: int
        default: 200
      interval:
        description: Seconds between checks.
        type: float
        default: 1.0
      healthy_threshold:
        description: Consecutive good answers that make an instance healthy.
        type: int
        default: 2
      timeout:
        description: Seconds one check may take.
        type: float
        default: 2.0
"""
