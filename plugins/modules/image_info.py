#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_info
short_description: List the image versions of a recipe with their lifecycle (channels, tests, revocations, ancestry)
version_added: 0.1.0
description:
  - Reads the catalog kept in an OCI registry. Every tag of the repository is an image version; its facts
    come from the OCI labels written at bake time. Nothing is pulled.
  - Lifecycle records (test results, revocations, channels) are OCI artifacts in the same repository under
    reserved tags (C(sha256-<hex>.test), C(sha256-<hex>.revoked), C(channel.<name>)); they are not versions.
    Each version is returned with the channels pointing at it, its latest test result, its revocation and whether
    the parent channel it was baked from has moved on (RV(out_of_date)).
  - One tags/list call, then parallel reads of only the versions and records that exist.
  - A channel pointing at a revoked version is reported as a warning and in its RV(channels) entry.
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
  digest:
    description: Return only the version with this manifest digest (C(sha256:...)).
    type: str
  fingerprint:
    description: Return only the versions with this input fingerprint.
    type: str
  channel:
    description:
      - Return only the version this channel points at (its target), with the channel record in RV(channel).
      - An unknown channel fails, naming the channels that exist.
    type: str
  latest_good:
    description:
      - With O(channel), return the newest target of the channel's history that is not revoked
        (the latest non-revoked version in that channel) instead of its current target.
    type: bool
    default: false
  revoked:
    description: Return only revoked versions (V(true)) or only versions that are not revoked (V(false)).
    type: bool
seealso:
  - module: immutable.infra.image_bake
  - module: immutable.infra.image_channel
  - module: immutable.infra.image_revoke
  - module: immutable.infra.image_test
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

- name: Find what production runs
  immutable.infra.image_info:
    name: web
    channel: production
  register: web_production

- name: Find the latest non-revoked version that was in production
  immutable.infra.image_info:
    name: web
    channel: production
    latest_good: true
  register: web_good

- name: List the versions to rebake because their parent channel moved on
  immutable.infra.image_info:
    name: web
  register: web_lifecycle

- name: Show them
  ansible.builtin.debug:
    msg: "{{ web_lifecycle.out_of_date | map(attribute='version') | list }}"
"""

RETURN = r"""
versions:
  description:
    - Matching image versions, oldest first (whole-number versions in numeric order, then others by name).
    - Each has the catalog facts plus C(channels) (names of the channels pointing at it), C(test) (the latest
      test record, earlier runs in its C(runs), or null), C(revoked) (the revocation record or null),
      C(parent_channel) (the channel its parent was resolved from at bake time, or null) and C(out_of_date)
      (null, or what the parent channel points at now).
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
      channels: [production]
      test: {kind: test, status: passed, time: "2026-11-29T19:40:00Z", by: ci@build1, runs: []}
      revoked: null
      parent_channel: production
      out_of_date:
        parent_name: 127.0.0.1:5000/immutable/base
        parent_channel: production
        parent_digest: sha256:2ec58878c37464e5c46383bd77dfe349c38253131156e8951830e21579c58ac4
        parent_version: "3"
        channel_digest: sha256:5f0c9d3e1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d
        channel_version: "4"
        newer: true
channels:
  description:
    - The repository's channels by name, each its record (C(digest) and C(version) of its target, the whole
      C(history) of moves, oldest first) plus C(revoked), the revocation of its target or null.
  returned: always
  type: dict
  sample:
    production:
      kind: channel
      channel: production
      repository: web
      digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
      version: "1"
      revoked: null
      history:
        - {seq: 1, time: "2026-11-29T19:45:00Z", epoch: 1795981500.0, by: alice, action: promote, from: null,
           from_version: null, to: "sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d",
           to_version: "1", reason: first release, approved_by: bob}
channel:
  description: The record of O(channel) (as in RV(channels)).
  returned: when O(channel) is given
  type: dict
  sample: {kind: channel, channel: production, digest: "sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d",
           version: "1", revoked: null, history: []}
out_of_date:
  description: The returned versions whose parent channel now points at another version than their parent.
  returned: always
  type: list
  elements: dict
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._image_info import image_info
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        version=dict(type="str"),
        digest=dict(type="str"),
        fingerprint=dict(type="str"),
        channel=dict(type="str"),
        latest_good=dict(type="bool", default=False),
        revoked=dict(type="bool"),
        **REGISTRY_ARGS
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params

    def info():
        result = image_info(Lifecycle(p["registry"], p["validate_certs"]), p["name"], version=p["version"],
                            digest=p["digest"], fingerprint=p["fingerprint"], channel=p["channel"],
                            latest_good=p["latest_good"], revoked=p["revoked"])
        return dict(result, changed=False)

    run_module(module, info)


if __name__ == "__main__":
    main()
