#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_revoke
short_description: Revoke an image version (optionally with all its descendants), or lift a revocation
version_added: 0.2.0
description:
  - A revoked image version cannot be promoted to a channel (M(immutable.infra.image_channel)), released
    (M(immutable.infra.server_group)), baked upon as a parent (M(immutable.infra.image_bake)) or used as a rollback
    target (M(immutable.infra.traffic)). Each refusal names the version, the reason, who revoked it and when.
  - The image itself never changes. The revocation is a small OCI artifact beside it in the same repository, tagged
    C(sha256-<hex>.revoked), whose config blob is the record (C(skopeo inspect --config --raw) reads it) - it
    survives the control node.
  - With O(cascade), every descendant of the version (versions baked on it, and on those, in any repository of the
    registry) is revoked too, each record naming the ancestor in C(cascade_from).
  - Revoking a revoked version keeps its first record and reports no change. O(state=absent) lifts the revocation;
    with O(cascade) also the descendants' revocations that came from this version (a descendant revoked for its own
    reason stays revoked).
  - Groups already running a revoked version keep running; the next release replaces them. A failed release's
    automatic revert still restores what ran before.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be revoked and writes nothing.
  diff_mode:
    support: full
    details: The versions revoked (or lifted), one line each.
  idempotent:
    support: full
options:
  name:
    description: Repository of the version (a recipe's images use the recipe's name).
    type: str
    required: true
  version:
    description: The version (tag). One of O(version) or O(digest) is required.
    type: str
  digest:
    description: The version by digest (C(sha256:...)).
    type: str
  reason:
    description: Why the version must not be used. Required with O(state=present); recorded and shown by every refusal.
    type: str
  cascade:
    description: Also revoke (or, with O(state=absent), lift the cascaded revocations of) every descendant.
    type: bool
    default: false
  actor:
    description:
      - Who revokes, recorded in the revocation. Defaults to C(user@host) of the process.
      - AWX job templates pass their user (C(awx_user_name)).
    type: str
  state:
    description: C(present) revokes; C(absent) lifts the revocation.
    type: str
    default: present
    choices: [present, absent]
seealso:
  - module: immutable.infra.image_info
  - module: immutable.infra.image_channel
"""

EXAMPLES = r"""
- name: Revoke base version 3 and every image baked on it
  immutable.infra.image_revoke:
    name: immutable/base
    version: "3"
    reason: CVE-2026-1234 in openssl
    cascade: true

- name: Lift a revocation given by mistake
  immutable.infra.image_revoke:
    name: web
    digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    state: absent
"""

RETURN = r"""
revoked:
  description: The versions this task revoked (would revoke, in check mode). Only with O(state=present).
  returned: when O(state=present)
  type: list
  elements: dict
  sample:
    - {name: immutable/base, version: "3", digest: "sha256:2ec5...", changed: true, cascade_from: null,
       record: {kind: revocation, reason: CVE-2026-1234 in openssl, by: alice, time: "2026-11-30T10:00:00Z"}}
    - {name: web, version: "7", digest: "sha256:9c1e...", changed: true, cascade_from: "sha256:2ec5...", record: {}}
unrevoked:
  description: The versions whose revocation this task lifted (would lift). Only with O(state=absent).
  returned: when O(state=absent)
  type: list
  elements: dict
  sample: [{name: web, version: "7", digest: "sha256:9c1e...", changed: true, cascade_from: null, record: {}}]
versions:
  description: Every version the task covered (the named one, then its descendants with O(cascade)), changed or not.
  returned: always
  type: list
  elements: dict
  sample: [{name: web, version: "7", digest: "sha256:9c1e...", changed: false, cascade_from: null, record: {}}]
image:
  description: The named version's facts.
  returned: always
  type: dict
  sample: {version: "3", digest: "sha256:2ec5...", reference: "127.0.0.1:5000/immutable/base@sha256:2ec5..."}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle, actor
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._revocation import revoke


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str"),
            digest=dict(type="str"),
            reason=dict(type="str"),
            cascade=dict(type="bool", default=False),
            actor=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            **REGISTRY_ARGS
        ),
        required_one_of=[("version", "digest")],
        mutually_exclusive=[("version", "digest")],
        required_if=[("state", "present", ("reason",))],
        supports_check_mode=True,
    )
    p = module.params
    run_module(module, lambda: revoke(Lifecycle(p["registry"], p["validate_certs"]), p, actor(p["actor"]),
                                      module.check_mode))


if __name__ == "__main__":
    main()
