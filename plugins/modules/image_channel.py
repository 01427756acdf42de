#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_channel
short_description: Promote an image version to a channel behind gates, or move a channel back
version_added: 0.2.0
description:
  - A channel is a named pointer from a repository (a recipe's images) to one image version, by digest, with the
    history of every move - when, who, from, to, why, and who approved it. It lives in the registry beside the
    versions, as the OCI artifact tagged C(channel.<name>) (read it with C(skopeo inspect --config --raw
    docker://REGISTRY/NAME:channel.<name>)); nothing is kept on the control node.
  - With O(state=present) the channel moves to O(version), O(digest) or the target of O(from_channel), if every gate
    in O(gates) passes. All gates are evaluated and reported in RV(gates); when one or more refuse, the task fails
    naming each refusing gate and what to do, and nothing is written.
  - A revoked version is always refused, naming the revocation's reason, who and when.
  - With O(state=rollback) the channel moves back to its previous target (a promotion pushes, a rollback pops, so a
    second rollback goes further back), skipping revoked versions; the gates do not apply. It fails when there is
    no earlier target.
  - The move is based on the head read when the gates were decided. When another run moved the channel meanwhile,
    nothing is written and the task fails naming that move (re-run to decide again); when it made the same move,
    the task reports no change.
  - A move to the channel's current target changes nothing (C(changed=false)); its gates are reported, not enforced,
    but a revoked current target is still refused.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: The gates are evaluated and the move computed; nothing is written.
  diff_mode:
    support: full
    details: The channel's target (digest and version) before and after.
  idempotent:
    support: full
options:
  name:
    description: Repository of the image versions (a recipe's images use the recipe's name).
    type: str
    required: true
  channel:
    description:
      - The channel to move, for example C(dev), C(staging), C(production) or a client's name.
      - Lower-case letters, digits, C(-) and C(_), at most 63, starting with a letter or digit. A new channel is
        created by its first promotion.
    type: str
    required: true
  version:
    description:
      - The image version (tag) to promote. With O(state=rollback), an earlier target to go back to instead of the
        previous one.
      - One of O(version), O(digest) and O(from_channel) is required with O(state=present).
    type: str
  digest:
    description: The image version to promote, by digest (C(sha256:...)).
    type: str
  from_channel:
    description: Promote what this other channel of the same repository points at (for example C(staging) to C(production)).
    type: str
  state:
    description: C(present) promotes; C(rollback) moves the channel back.
    type: str
    choices: [present, rollback]
    default: present
  gates:
    description:
      - The gates of O(channel), usually from the per-channel policy C(promote_policy) of C(playbooks/promote.yml).
      - Unset gates do not apply.
    type: dict
    default: {}
    suboptions:
      tested:
        description: The version must have a passing test record (M(immutable.infra.image_test) writes it).
        type: bool
        default: false
      after:
        description: The version must have been promoted to this channel before (it appears as a target in its history).
        type: str
      min_soak:
        description:
          - Seconds the version must have spent as the head of the O(gates.after) channel, every stint summed, the
            current one counted up to now. Needs O(gates.after).
        type: float
      approval:
        description: The move needs O(approved_by).
        type: bool
        default: false
      scan:
        description:
          - V(true) - the version's stored scan (M(immutable.infra.image_scan)) must pass O(scan_policy) now (a waiver
            that expired since stops counting); a version never scanned passes unless the policy sets
            C(require_scan). V(required) - and it must have been scanned. V(false) - no scan gate.
          - A refusal names the failing findings.
        type: raw
  scan_policy:
    description:
      - The vulnerability policy the O(gates.scan) gate judges the stored scan by (see M(immutable.infra.image_scan)'s
        O(immutable.infra.image_scan#module:policy)). Default the collection's default policy (fixable critical and
        high findings fail, no waivers).
    type: dict
  approved_by:
    description:
      - Who approved the move (for example the approver of an AWX approval node). Recorded in the history.
      - Satisfies the O(gates.approval) gate when not empty.
    type: str
  reason:
    description: Why the channel moves. Recorded in the history.
    type: str
  actor:
    description:
      - Who moves the channel, recorded in the history. Playbooks pass AWX's C(awx_user_name).
      - Defaults to C(user@host) of the process running the module.
    type: str
seealso:
  - module: immutable.infra.image_info
  - module: immutable.infra.image_test
  - module: immutable.infra.image_scan
"""

EXAMPLES = r"""
- name: Promote web version 3 to dev once its tests passed
  immutable.infra.image_channel:
    name: web
    channel: dev
    version: "3"
    gates: {tested: true}

- name: Promote what staging runs to production, approved, after an hour in staging
  immutable.infra.image_channel:
    name: web
    channel: production
    from_channel: staging
    gates: {tested: true, after: staging, min_soak: 3600, approval: true}
    approved_by: "{{ promote_approved_by }}"
    reason: weekly release
    actor: "{{ awx_user_name | default(omit) }}"

- name: Move production back to its previous (non-revoked) version
  immutable.infra.image_channel:
    name: web
    channel: production
    state: rollback
    reason: error rate after the release
"""

RETURN = r"""
channel:
  description: The channel record after the task (in check mode, as it would be), read with the history.
  returned: success
  type: dict
  sample:
    kind: channel
    channel: staging
    repository: web
    digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    version: "3"
    history:
      - {seq: 1, time: "2026-11-30T10:00:00Z", epoch: 1796032800.0, by: alice, action: promote, from: null,
         from_version: null, to: "sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d",
         to_version: "3", reason: null, approved_by: null}
before:
  description: The channel record before the task; null for a new channel.
  returned: success
  type: dict
  sample: null
move:
  description: The history entry of the move (in check mode, the one that would be written); null when nothing moved.
  returned: success
  type: dict
  sample: {seq: 4, time: "2026-11-30T11:00:00Z", epoch: 1796036400.0, by: alice, action: promote,
           from: "sha256:1f2e3d4c5b6a79880706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a", from_version: "2",
           to: "sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d", to_version: "3",
           reason: weekly release, approved_by: bob}
gates:
  description:
    - Every gate evaluated, in order - C(revoked) (always), then C(tested), C(after), C(min_soak), C(approval), C(scan) as
      configured. Each with C(name), C(passed) and C(detail) (C(min_soak) adds C(seconds) spent; C(scan) adds
      C(violations), the ids of the failing findings).
  returned: success, and when a gate refused
  type: list
  elements: dict
  sample:
    - {name: revoked, passed: true, detail: version 3 is not revoked}
    - {name: tested, passed: true, detail: "version 3 passed its tests at 2026-11-30T09:58:00Z (test digest sha256:..)"}
    - {name: approval, passed: false, detail: "channel production needs an approval: give approved_by ..."}
target:
  description: The version the channel was asked to point at.
  returned: success
  type: dict
  sample: {version: "3", tag: "3", digest: "sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d",
           reference: "127.0.0.1:5000/web@sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d"}
passed_over:
  description: With O(state=rollback), the revoked earlier targets passed over.
  returned: when state is rollback
  type: list
  elements: str
  sample: ["2"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._gates import apply
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            channel=dict(type="str", required=True),
            version=dict(type="str"),
            digest=dict(type="str"),
            from_channel=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "rollback"]),
            gates=dict(type="dict", default={}, options=dict(
                tested=dict(type="bool", default=False), after=dict(type="str"),
                min_soak=dict(type="float"), approval=dict(type="bool", default=False), scan=dict(type="raw"))),
            scan_policy=dict(type="dict"),
            approved_by=dict(type="str"),
            reason=dict(type="str"),
            actor=dict(type="str"),
            **REGISTRY_ARGS
        ),
        mutually_exclusive=[("version", "digest", "from_channel")],
        required_if=[("state", "present", ("version", "digest", "from_channel"), True)],
        supports_check_mode=True,
    )
    p = module.params
    run_module(module, lambda: apply(Lifecycle(p["registry"], p["validate_certs"]), p, module.check_mode))


if __name__ == "__main__":
    main()
