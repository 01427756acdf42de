# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # Modules that read the server groups of every app and stack on several platforms
    # (_prune.platforms_from): the platforms and their options.
    DOCUMENTATION = r"""
options:
  platforms:
    description:
      - The platforms whose server groups are read (every app and stack).
      - Default C(podman), plus C(libvirt) when its state directory exists. C(aws) is read only when listed (with
        its options in O(platform_options)).
      - A platform that cannot be read fails the task.
    type: list
    elements: str
    choices: [podman, libvirt, aws]
  platform_options:
    description:
      - "Options per platform, as C({platform name: options}) (see M(immutable.infra.server_group)'s
        O(immutable.infra.server_group#module:platform_options))."
    type: dict
    default: {}
"""
