#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_prune
short_description: Delete the image versions that nothing references, beyond keep-N and a minimum age
version_added: 0.2.0
description:
  - Deletes image versions from the registry that nothing needs any more, and reports for every version of the
    repositories why it was kept or that it was (or would be) deleted.
  - "A version stays when it is one of the O(keep) newest of its repository; when it is younger than O(min_age)
    (or its creation time is unknown); when a channel points at it or moved to it in its last O(history_keep)
    moves; when an instance of a server group (enabled, disabled and kept warm, or stopped; any app and stack) runs
    it on one of O(platforms); when the router recorded it in an endpoint's history (a rollback target); or when
    a version that stays, in any repository, was baked on it (transitively)."
  - References match by digest, in any repository. A version is one manifest digest with all its tags.
  - Everything is read before anything is deleted. A registry, platform or router state that cannot be read fails
    the task and deletes nothing. The server groups and the router are read again right before deleting.
  - Deleting removes the manifest and the version's lifecycle records (test result, revocation). The blobs are
    freed by the registry's garbage collection, which C(playbooks/prune.yml) runs for the project's own registry.
  - Check mode reports what would be deleted.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.fleet_platforms
  - immutable.infra.router
  - immutable.infra.router.BACKEND
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  repositories:
    description:
      - Repositories to prune. Default every repository of the registry.
      - Versions of the other repositories are never deleted, and their parents stay too.
    type: list
    elements: str
  keep:
    description: How many of the newest versions of each repository always stay.
    type: int
    default: 5
  min_age:
    description:
      - Versions younger than this always stay (by their creation time).
      - Seconds (V(604800)) or a duration with units C(w), C(d), C(h), C(m), C(s) (V(7d), V(12h), V(1d12h)).
    type: raw
    default: 7d
  history_keep:
    description:
      - How many of each channel's latest moves protect their target (besides the channel's head).
      - A platform that cannot be read (O(platforms)) fails the task and nothing is deleted.
    type: int
    default: 10
seealso:
  - module: immutable.infra.image_info
  - module: immutable.infra.server_group
"""

EXAMPLES = r"""
- name: Show what would be pruned
  immutable.infra.image_prune:
  check_mode: true
  register: prune_plan

- name: Prune the web recipe, keeping 3 versions and anything younger than 12 hours
  immutable.infra.image_prune:
    repositories: [web]
    keep: 3
    min_age: 12h
"""

RETURN = r"""
versions:
  description: Every version of the pruned repositories, oldest first per repository, with what happened to it.
  returned: always
  type: list
  elements: dict
  sample:
    - repository: web
      version: "3"
      tags: ["3"]
      digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
      reference: 127.0.0.1:5000/web@sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
      created: "2026-11-01T10:00:00Z"
      age_seconds: 2505600.0
      action: kept
      reasons: ["server group web-prod-v003 on podman (2 instance(s): running)", "parent of web-child:7"]
report:
  description: One line per version, for people, in the order of RV(versions).
  returned: always
  type: list
  elements: str
  sample: ["web:2 would delete", "web:3 kept: server group web-prod-v003 on podman (2 instance(s): running)"]
deleted:
  description: References of the versions deleted (in check mode, that would be deleted).
  returned: always
  type: list
  elements: str
  sample: ["127.0.0.1:5000/web@sha256:2ec58878c37464e5c46383bd77dfe349c38253131156e8951830e21579c58ac4"]
summary:
  description: Counts of versions, deleted and kept.
  returned: always
  type: dict
  sample: {versions: 12, deleted: 4, kept: 8}
repositories:
  description: The repositories pruned.
  returned: always
  type: list
  elements: str
  sample: [web, immutable/base]
platforms:
  description: The platforms whose server groups were read.
  returned: always
  type: list
  elements: str
  sample: [podman]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, ROUTER_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._platforms import AVAILABLE
from ansible_collections.immutable.infra.plugins.module_utils._prune import (
    DEFAULT_HISTORY_KEEP, DEFAULT_KEEP, DEFAULT_MIN_AGE, platforms_from, prune)
from ansible_collections.immutable.infra.plugins.module_utils._traffic import ROUTER_BACKEND_ARGS, router_from, router_secrets


def main():
    argument_spec = dict(
        repositories=dict(type="list", elements="str"),
        keep=dict(type="int", default=DEFAULT_KEEP),
        min_age=dict(type="raw", default=DEFAULT_MIN_AGE),
        history_keep=dict(type="int", default=DEFAULT_HISTORY_KEEP),
        platforms=dict(type="list", elements="str", choices=list(AVAILABLE)),
        platform_options=dict(type="dict", default={}),
        **dict(REGISTRY_ARGS, **dict(ROUTER_ARGS, **ROUTER_BACKEND_ARGS))
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    module.no_log_values.update(router_secrets(p))

    def run():
        platforms = platforms_from(p["platforms"], p["platform_options"])
        return prune(Lifecycle(p["registry"], p["validate_certs"]), platforms, router_from(p),
                     p["repositories"], p["keep"], p["min_age"], p["history_keep"], module.check_mode)

    run_module(module, run)


if __name__ == "__main__":
    main()
