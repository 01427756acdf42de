#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_info
short_description: List the image versions of a recipe, or find one by version or fingerprint
version_added: 0.1.0
description:
  - Reads the catalog kept in an OCI registry. Every tag of the repository is an image version; its facts
    come from the OCI labels written at bake time. Nothing is pulled.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.attributes
  - immutable.infra.attributes.INFO_MODULE
options:
  name:
    description: Repository name of the image in the registry (a recipe's images use the recipe's name).
    type: str
    required: true
  version:
    description: Return only this version.
    type: str
  fingerprint:
    description: Return only the versions with this input fingerprint.
    type: str
seealso:
  - module: immutable.infra.image_bake
"""

EXAMPLES = r"""
- name: List the web recipe's versions
  immutable.infra.image_info:
    name: web
  register: web_images

- name: Show the newest
  ansible.builtin.debug:
    msg: "{{ web_images.versions | last }}"

- name: Find version 2
  immutable.infra.image_info:
    name: web
    version: "2"
  register: web_v2
"""

RETURN = r"""
versions:
  description: Matching image versions, oldest first (whole-number versions in numeric order, then others by name).
  returned: always
  type: list
  elements: dict
  sample:
    - version: "1"
      tag: "1"
      digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
      reference: 127.0.0.1:5000/web@sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
      repository: 127.0.0.1:5000/web
      created: "2026-11-29T19:30:00Z"
      revision: 4f2d1c0e
      recipe: web
      fingerprint: sha256:1d6e0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c
      parent_digest: sha256:2ec58878c37464e5c46383bd77dfe349c38253131156e8951830e21579c58ac4
      parent_name: 127.0.0.1:5000/immutable/base
      bake_id: 0f1e2d3c4b5a
      format: container
      labels: {}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._catalog import Catalog
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        version=dict(type="str"),
        fingerprint=dict(type="str"),
        **REGISTRY_ARGS
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params

    def info():
        catalog = Catalog(p["registry"], p["validate_certs"])
        versions = catalog.versions(p["name"])
        matching = [v for v in versions
                    if (p["version"] is None or v["tag"] == p["version"])
                    and (p["fingerprint"] is None or v["fingerprint"] == p["fingerprint"])]
        return {"changed": False, "versions": matching}

    run_module(module, info)


if __name__ == "__main__":
    main()
