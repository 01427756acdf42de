#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: registry_gc
short_description: Collect the garbage of the project's own image registry
version_added: 0.2.0
description:
  - Frees the blobs of deleted image versions in the registry the project runs (the C(immutable.infra.registry)
    role's daemon). It stops it, runs C(docker-registry garbage-collect) and starts it again, waiting until
    C(http://<registry>/v2/) answers.
  - The three steps run in the module's own process, the start in a C(finally). Ansible's worker outlives a kill
    of the main C(ansible-playbook) process, so such a kill cannot leave the registry stopped. A C(SIGTERM),
    C(SIGINT) or C(SIGHUP) to the module aborts the collection, starts the registry again and fails the task.
  - The project owns the registry when a C(docker-registry) process runs from O(state_dir)C(/registry.pid)
    (the role's pid file and start command) and O(state_dir)C(/config.yml) listens on O(registry). Any other
    registry is never stopped or collected; the module returns RV(owned=false) and changes nothing.
  - The registry does not answer while it collects (seconds).
  - Check mode reports whether the registry is owned and how many blobs it stores; it stops nothing.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.attributes
  - immutable.infra.registry
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every collection of an owned registry restarts it.
options:
  registry:
    description:
      - C(host:port) the registry listens on (the role's C(registry_listen_address:registry_port)).
      - The collection works on the files; the credential and TLS options are accepted like every registry-facing
        module's, and the health check after the restart uses the role's debug server when TLS or authentication
        is on.
  state_dir:
    description:
      - The registry role's state directory (C(registry_state_dir)), holding C(config.yml), C(registry.pid),
        C(registry.log) and C(data/).
    type: path
    required: true
  delete_untagged:
    description:
      - Also delete manifests no tag points at (C(--delete-untagged)). docker-registry 2.8 then deletes the
        untagged child manifests of a tagged image index (distribution/distribution#3178); set C(false) when
        multi-arch indexes are pushed to this registry.
    type: bool
    default: true
  health_timeout:
    description: Seconds to wait for C(/v2/) to answer after the start.
    type: float
    default: 15
"""

EXAMPLES = r"""
- name: Collect garbage in the project's registry
  immutable.infra.registry_gc:
    registry: 127.0.0.1:5000
    state_dir: "{{ lookup('ansible.builtin.env', 'HOME') }}/.local/state/immutable.infra/registry"
  register: gc

- name: Report what the collection freed
  ansible.builtin.debug:
    msg: "{{ gc.freed_blobs }} blob(s), {{ gc.freed_bytes }} bytes freed"
  when: gc.owned
"""

RETURN = r"""
owned:
  description: Whether the project owns the registry (only an owned registry is collected).
  returned: always
  type: bool
  sample: true
reason:
  description: Why the registry is or is not the project's own.
  returned: always
  type: str
  sample: docker-registry (pid 4242) from /home/ops/.local/state/immutable.infra/registry/registry.pid listens on 127.0.0.1:5000
registry:
  description: The registry's address.
  returned: always
  type: str
  sample: 127.0.0.1:5000
pid:
  description: The registry's pid after the task (before it in check mode), or null when none runs.
  returned: always
  type: int
  sample: 4343
blobs_before:
  description: Blobs stored (files named C(data) under C(data/docker/registry/v2/blobs)) before the collection.
  returned: always
  type: int
  sample: 120
bytes_before:
  description: Their size in bytes.
  returned: always
  type: int
  sample: 73400320
blobs_after:
  description: Blobs stored after the collection (equal to RV(blobs_before) when nothing was collected).
  returned: always
  type: int
  sample: 112
bytes_after:
  description: Their size in bytes.
  returned: always
  type: int
  sample: 52428800
freed_blobs:
  description: Blobs the collection deleted.
  returned: always
  type: int
  sample: 8
freed_bytes:
  description: Bytes the collection freed.
  returned: always
  type: int
  sample: 20971520
cmd:
  description: The garbage collection command that ran (or would run).
  returned: always
  type: list
  elements: str
  sample: [docker-registry, garbage-collect, --delete-untagged, /home/ops/.local/state/immutable.infra/registry/config.yml]
rc:
  description: The garbage collection's exit status.
  returned: when the registry was collected
  type: int
  sample: 0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._registry_gc import collect


def main():
    module = AnsibleModule(
        argument_spec=dict(
            REGISTRY_ARGS,
            state_dir=dict(type="path", required=True),
            delete_untagged=dict(type="bool", default=True),
            health_timeout=dict(type="float", default=15),
        ),
        supports_check_mode=True,
    )
    p = module.params
    run_module(module, lambda: collect(p["registry"], p["state_dir"], p["delete_untagged"], p["health_timeout"],
                                       module.check_mode))


if __name__ == "__main__":
    main()
