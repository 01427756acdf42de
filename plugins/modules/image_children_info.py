#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_children_info
short_description: List the images baked on a parent repository, and which are out of date
version_added: 0.2.0
description:
  - Reads the registry. A child is the newest version of a repository whose recorded parent
    (C(org.opencontainers.image.base.name), by digest C(org.opencontainers.image.base.digest)) is a version of O(parent).
  - A child baked from a channel of its parent (M(immutable.infra.image_bake) O(immutable.infra.image_bake#module:parent_channel),
    label C(infra.immutable.parent-channel)) is out of date when that channel now points at another version. A child
    pinned to its parent by version is never out of date.
  - For each out-of-date child it returns how to bake it again (C(rebake)) - what C(playbooks/rebake_children.yml) does.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.attributes
  - immutable.infra.attributes.INFO_MODULE
options:
  parent:
    description: The parent repository, for example C(immutable/base) (a VM image's parent is C(immutable/base-vm)).
    type: str
    required: true
  repositories:
    description: Look only at these repositories. Default - every repository of the registry.
    type: list
    elements: str
  recipes:
    description:
      - How to bake a child again, per child repository - a recipe name or path, or a dict with C(recipe),
        C(variables) and C(var_files) (the bake's inputs other than the parent, which the registry does not keep).
      - A child without an entry is baked from the shipped recipe its C(infra.immutable.recipe) label names, with the
        recipe's defaults.
    type: dict
    default: {}
seealso:
  - module: immutable.infra.image_bake
  - module: immutable.infra.image_info
"""

EXAMPLES = r"""
- name: Find the images baked on immutable/base
  immutable.infra.image_children_info:
    parent: immutable/base
    recipes:
      api: {recipe: /srv/recipes/api, variables: {api_port: 9000}}
  register: base_children

- name: Name the out-of-date ones
  ansible.builtin.debug:
    msg: "{{ base_children.children | selectattr('out_of_date') | map(attribute='name') | list }}"
"""

RETURN = r"""
children:
  description:
    - The newest version of each child repository, as M(immutable.infra.image_info) lists versions, plus C(name) (its
      repository), C(parent_channel), C(out_of_date) (null, or C(parent_name), C(parent_channel), C(parent_digest),
      C(parent_version), C(channel_digest), C(channel_version), C(newer)) and, when out of date, C(rebake) (C(recipe),
      C(name), C(only), C(parent), C(parent_channel), C(variables), C(var_files)).
  returned: always
  type: list
  elements: dict
  sample:
    - name: web
      version: "4"
      digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
      parent_channel: production
      out_of_date: {parent_name: 127.0.0.1:5000/immutable/base, parent_channel: production, parent_digest: "sha256:2ec5...",
                    parent_version: "3", channel_digest: "sha256:77aa...", channel_version: "4", newer: true}
      rebake: {recipe: web, name: web, only: [container], parent: 127.0.0.1:5000/immutable/base,
               parent_channel: production, variables: {}, var_files: []}
out_of_date:
  description: Repositories of the children that are out of date.
  returned: always
  type: list
  elements: str
  sample: [web]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._ancestry import children
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            parent=dict(type="str", required=True),
            repositories=dict(type="list", elements="str"),
            recipes=dict(type="dict", default={}),
            **REGISTRY_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params

    def info():
        found = children(Lifecycle(p["registry"], p["validate_certs"]), p["parent"], p["recipes"], p["repositories"])
        return {"changed": False, "children": found, "out_of_date": [c["name"] for c in found if c["out_of_date"]]}

    run_module(module, info)


if __name__ == "__main__":
    main()
