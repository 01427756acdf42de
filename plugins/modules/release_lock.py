#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_lock
short_description: One release at a time per app/stack, through a lease kept beside the routing state
version_added: 0.1.0
description:
  - Takes (O(state=present)) or drops (O(state=absent)) the release lease of an app/stack. The release, rollback and
    decommission playbooks take it first, so only one of them changes an app/stack at a time. A run that asks for a
    held lease fails at once, naming the holder (host, pid, process start, since, expiry) and how to break the lease,
    and changes nothing.
  - The lease is a file in the router's state directory (O(router_dir)), beside C(routes.json), so every controller
    and job that shares the router's state shares the leases. The owner is the C(ansible-playbook) process, named by
    host, boot id, pid namespace, pid, process start time and command line, so a reused pid is never mistaken for it.
    A task running in an orphaned Ansible worker (its C(ansible-playbook) process gone) refuses to take a lease.
  - The lease expires O(ttl) seconds after its last renewal. A detached renewer renews it every O(ttl)/3 seconds
    while its owner lives and the lease is still the owner's, and exits as soon as its owner exits.
  - Takeover. On the owner's own machine, a lease whose owner is gone (or whose pid now names another process) is
    taken over at once, after waiting up to O(orphan_timeout) seconds for orphaned Ansible workers of the dead run
    that are still working (workers call C(setsid) and outlive a killed C(ansible-playbook)). A lease from another
    machine is taken over only once it has expired. Each takeover is returned in RV(takeover) and RV(note), shown as a
    warning, and logged to RV(lease_log).
  - O(state=absent) drops the lease only when this run holds it. O(force=true) with a O(reason) breaks whatever lease
    the app/stack has and logs who broke it, why, and whose it was (the C(unlock) playbook does this).
  - On AWX/Automation Controller every job runs in a fresh container. The lease spans jobs when they share the
    router's state directory (a shared volume, or the platform's own store later). Where they do not, turn off
    concurrent jobs on the job template (C(allow_simultaneous=false)) to serialise them.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.server_group
  - immutable.infra.router
  - immutable.infra.router.BACKEND
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the lease is free, held by this run, would be taken over, or who holds it; takes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
options:
  state:
    description: C(present) takes the lease, C(absent) drops it (only when this run holds it, unless O(force=true)).
    type: str
    default: present
    choices: [present, absent]
  ttl:
    description: Seconds a lease lives after its last renewal. It is renewed every O(ttl)/3 seconds while its owner runs.
    type: int
    default: 60
  orphan_timeout:
    description:
      - When the holder is dead on this machine, seconds to wait for its orphaned Ansible workers that are still
        running a task (for example a server group starting) before taking over. After that the take fails,
        naming their pids. Workers that finished and only block delivering their result to the dead run are not
        waited for; the takeover names them.
    type: int
    default: 120
  force:
    description: With O(state=absent), break the lease whoever holds it. Needs O(reason). Logged.
    type: bool
    default: false
  reason:
    description: Why the lease is broken; required with O(force=true) and written to the lease log.
    type: str
  platform:
    description:
      - The platform this run drives (see M(immutable.infra.server_group)). When given with O(state=present), a
        lease is refused, before anything is made, if the app/stack's router endpoint runs on another platform
        (its groups would not be seen there, and the router would drop them).
    type: str
"""

EXAMPLES = r"""
- name: Take the release lease of web/prod
  immutable.infra.release_lock:
    app: web
    stack: prod

- name: Drop it
  immutable.infra.release_lock:
    app: web
    stack: prod
    state: absent

- name: Break a lease held by a controller that died for good
  immutable.infra.release_lock:
    app: web
    stack: prod
    state: absent
    force: true
    reason: ci runner 12 was destroyed mid-release
"""

RETURN = r"""
lease_file:
  description: Where the lease lives.
  returned: always
  type: str
  sample: /root/.local/state/immutable.infra/router/leases/web-prod.json
lease_log:
  description: The append-only log (JSON lines) of takeovers and broken leases.
  returned: always
  type: str
  sample: /root/.local/state/immutable.infra/router/leases/log.jsonl
lease:
  description: The lease this run holds (or, in check mode, the one it would take over).
  returned: when a lease is held or taken
  type: dict
  sample:
    app: web
    stack: prod
    what: release of web/prod
    owner: {host: ci1, pid: 4242, start: 1234567, started: 1764477000.5, user: deploy}
    since: 1764477001.2
    expires: 1764477061.2
free:
  description: Whether the lease was free (with O(state=present)).
  returned: with state=present
  type: bool
  sample: true
would:
  description: What taking the lease does or would do, C(take), C(hold) (already this run's) or C(take over).
  returned: with state=present
  type: str
  sample: take over
takeover:
  description: The lease taken over, why it could be, and the orphaned workers waited for or left blocked.
  returned: when a lease was taken over
  type: dict
  sample:
    reason: its owner, pid 4242 on this host, is gone
    waited_for: [4250]
    stuck: []
    previous: {what: release of web/prod, owner: {host: ci1, pid: 4242}}
note:
  description: A sentence for the operator when a lease was (or would be) taken over.
  returned: when a lease was taken over
  type: str
  sample: "took over the lease of release of web/prod held by pid 4242 (...) on ci1, user deploy since ...: its owner is gone"
released:
  description: Whether O(state=absent) dropped this run's lease.
  returned: with state=absent
  type: bool
  sample: true
broken:
  description: The lease that O(force=true) broke (or would break).
  returned: when a lease was broken
  type: dict
  sample: {what: release of web/prod, owner: {host: ci1, pid: 4242}}
msg:
  description: What O(force=true) did.
  returned: with force=true
  type: str
  sample: "broke the lease of web/prod held by pid 4242 (...) on ci1, user deploy since ... (reason: runner destroyed)"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._lease import LOCK_ARGS


def main():
    module = AnsibleModule(
        argument_spec=LOCK_ARGS,
        required_if=[("force", True, ("reason",))],
        supports_check_mode=True,
    )
    module.fail_json(msg="immutable.infra.release_lock runs on the controller through its action plugin")


if __name__ == "__main__":
    main()
