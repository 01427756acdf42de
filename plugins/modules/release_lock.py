#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_lock
short_description: Serialise releases of an app/stack across processes on one controller
version_added: 0.1.0
description:
  - Takes (O(state=present)) or drops (O(state=absent)) the lock of an app/stack. A second run that asks for a
    held lock fails at once with the holder's pid and start time, and changes nothing.
  - The lock is owned by the C(ansible-playbook) process. A lock whose owner is gone (a killed run) is stale
    and is taken over, so a crash never blocks the next run.
  - Runs on the controller through its action plugin. On AWX/Automation Controller every job runs in its
    own container, so this lock does not span jobs there - turn off concurrent jobs on the job template
    (C(allow_simultaneous=false)) to serialise its jobs.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.server_group
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the lock is free; takes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
options:
  state:
    description: C(present) takes the lock, C(absent) drops it (only when this run holds it).
    type: str
    default: present
    choices: [present, absent]
  lock_dir:
    description: Directory of lock files. Defaults to C($IMMUTABLE_INFRA_STATE_DIR/locks).
    type: path
"""

EXAMPLES = r"""
- name: Take the release lock of web/prod
  immutable.infra.release_lock:
    app: web
    stack: prod

- name: Drop it
  immutable.infra.release_lock:
    app: web
    stack: prod
    state: absent
"""

RETURN = r"""
lock_file:
  description: The lock file.
  returned: always
  type: str
  sample: /root/.local/state/immutable.infra/locks/web-prod.lock
note:
  description: Set when a stale lock of a killed run was taken over.
  returned: when a stale lock was taken over
  type: str
  sample: took over a stale lock of pid 4242
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            stack=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            lock_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    module.fail_json(msg="immutable.infra.release_lock runs on the controller through its action plugin")


if __name__ == "__main__":
    main()
