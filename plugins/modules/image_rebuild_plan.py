#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_rebuild_plan
short_description: Plan the fix forward of the image versions in use that have fixable findings
version_added: 0.3.0
description:
  - Reads the registry and the server groups; writes nothing. A version is in use when a channel points at it or a
    server group runs it (any state), and affected when its latest scan (M(immutable.infra.image_scan)) has a finding
    with a fix available.
  - The fix of a Debian package comes from the root of the version's ancestry, the base (C(bases)), baked again with
    O(immutable.infra.base_image#module:refresh=true). Each affected version is then baked again on the newest version
    of its parent repository (the patched parent), parents before children (C(depth)).
  - The newest version of a repository is baked again from the recipe as it is now (C(kind=rebake)). An older version
    still in use (a client's channel such as C(acme), a stack that stays on it) gets a security rebake
    (C(kind=security)) - its recipe directory at the git revision it was baked from (label
    C(org.opencontainers.image.revision)), extracted with C(git archive) into a cache under the state directory. A
    version without a clean revision (none, or C(-dirty)) is refused (C(refused)) unless
    O(recipes) maps C(<repository>:<version>) to its recipe.
  - Each new version goes to the first channel of the path to the channel it serves (the C(after) chain of O(policy),
    dev before staging before production or C(acme)), never further. A channel outside every path is not moved.
  - C(playbooks/scan.yml) with C(rebuild=true) runs the plan through the normal bake, test, scan and promotion gates.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.attributes
  - immutable.infra.attributes.INFO_MODULE
options:
  policy:
    description: The promotion policy, C({channel - gates}), as M(immutable.infra.image_channel) takes it per channel; its C(after) gates give the paths.
    type: dict
    default: {dev: {tested: true}, staging: {tested: true, after: dev}, production: {tested: true, after: staging, approval: true}}
  scan_result:
    description:
      - The registered result of M(immutable.infra.image_scan) in this run. Its findings count for the versions it
        scanned instead of their stored scans, so a check-mode run (where nothing is stored) plans what a real run does.
    type: dict
    default: {}
  recipes:
    description:
      - How to bake a repository again - a recipe name or path, or a dict with C(recipe), C(variables) and C(var_files),
        as M(immutable.infra.image_children_info) takes it. A key C(<repository>:<version>) applies to that version only.
      - A repository without an entry is baked from the shipped recipe its C(infra.immutable.recipe) label names.
    type: dict
    default: {}
  repositories:
    description: Fix only the versions of these repositories (their parents are baked again as needed). Default - all.
    type: list
    elements: str
  recipes_dir:
    description: Where recipe names (not paths) are found. Default - the collection's C(packer) directory next to the playbook.
    type: path
  platforms:
    description: Platforms whose server groups count as use. Default - podman, plus libvirt when it has state.
    type: list
    elements: str
  platform_options:
    description: Options per platform, C({platform - options}).
    type: dict
    default: {}
seealso:
  - module: immutable.infra.image_scan
  - module: immutable.infra.base_image
  - module: immutable.infra.image_bake
"""

EXAMPLES = r"""
- name: Plan the fix forward
  immutable.infra.image_rebuild_plan:
    recipes_dir: "{{ playbook_dir }}/../packer"
    policy:
      dev: {tested: true}
      staging: {tested: true, after: dev}
      production: {tested: true, after: staging, approval: true}
      acme: {tested: true, after: staging, approval: true}
  register: fix_plan
"""

RETURN = r"""
affected:
  description: In-use versions with fixable findings - C(name), C(version), C(digest), C(in_use) (reasons),
    C(fixable) (finding ids), C(base) (the root repository) and C(action) (C(base), C(rebake) or C(security)).
  returned: always
  type: list
  elements: dict
  sample: [{name: web, version: "2", digest: "sha256:9c1e...", in_use: [channel production], fixable: [CVE-2026-1],
            base: immutable/base, action: rebake}]
bases:
  description: The root repositories to bake again with refreshed packages.
  returned: always
  type: list
  elements: str
  sample: [immutable/base]
rebakes:
  description:
    - What to bake, in order - C(name), C(kind) (C(rebake) or C(security)), C(of_version), C(of_digest), C(fixes),
      C(serves) (channels, or C(stack)), C(depth), C(recipe) (a directory for a security rebake), C(only),
      C(parent) (its repository - the newest version, the patched one, is used), C(variables), C(var_files),
      C(revision), C(path), C(promote_to) (null - not promoted), C(next_channel), C(target), C(reason).
  returned: always
  type: list
  elements: dict
  sample: [{name: web, kind: rebake, of_version: "2", fixes: [CVE-2026-1], serves: [production], depth: 1,
            recipe: web, only: [container], parent: 127.0.0.1:5000/immutable/base, variables: {}, var_files: [],
            path: [dev, staging, production], promote_to: dev, next_channel: staging, target: production,
            reason: "fix forward of web on its patched parent, fixing CVE-2026-1"}]
promoted:
  description: For each repository to bake, C({channel - [every digest the channel was moved to]}), from the histories.
  returned: always
  type: dict
  sample: {web: {dev: ["sha256:9c1e..."], production: ["sha256:77aa..."]}}
refused:
  description: Rebakes that cannot be done, each with C(why) (for example a version baked from a dirty checkout).
  returned: always
  type: list
  elements: dict
  sample: [{name: web, kind: security, of_version: "1", why: "version web:1 records the revision 3f2a...-dirty ..."}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._fixforward import fix_forward_plan
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module, state_dir
from ansible_collections.immutable.infra.plugins.module_utils._prune import platforms_from, read_live_references

DEFAULT_POLICY = {"dev": {"tested": True}, "staging": {"tested": True, "after": "dev"},
                  "production": {"tested": True, "after": "staging", "approval": True}}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            policy=dict(type="dict", default=DEFAULT_POLICY),
            scan_result=dict(type="dict", default={}),
            recipes=dict(type="dict", default={}),
            repositories=dict(type="list", elements="str"),
            recipes_dir=dict(type="path"),
            platforms=dict(type="list", elements="str"),
            platform_options=dict(type="dict", default={}),
            **REGISTRY_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params

    def plan():
        live = read_live_references(platforms_from(p["platforms"], p["platform_options"]), None)
        return fix_forward_plan(Lifecycle(p["registry"], p["validate_certs"]), p, live, state_dir("rebuild-sources"))

    run_module(module, plan)


if __name__ == "__main__":
    main()
