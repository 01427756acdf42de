# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  app:
    description: The application, for example C(web). Lowercase letters and digits.
    type: str
    required: true
  stack:
    description:
      - The stack, for example C(prod) or C(acme). Several stacks of one app run side by side,
        each with its own server groups and router endpoint.
    type: str
    required: true
"""
