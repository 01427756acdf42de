#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: router
short_description: Run the project's haproxy router on loopback, or check the elbv2 router's load balancer
version_added: 0.1.0
description:
  - Starts, stops, restarts or reloads haproxy in master-worker mode, configured from the routes
    M(immutable.infra.traffic) keeps in the router's state directory, so a restart or reload serves
    exactly what the runtime API was told.
  - The process is known by its pid file and stopped by that pid only.
  - With O(router_backend=elbv2) the router is the ALB named in O(router_options) - AWS runs it. Only
    C(started) applies - it checks that the load balancer exists and lists the app/stack endpoints
    (listeners) it serves; nothing changes.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.router
  - immutable.infra.router.BACKEND
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  state:
    description: C(started), C(stopped), C(restarted) or C(reloaded) (seamless, no connection dropped).
    type: str
    default: started
    choices: [started, stopped, restarted, reloaded]
"""

EXAMPLES = r"""
- name: Start the router
  immutable.infra.router:
    state: started
"""

RETURN = r"""
pid:
  description: pid of the haproxy master, or null when stopped (always null for elbv2).
  returned: always
  type: int
  sample: 4242
router_dir:
  description: The router's state directory (haproxy).
  returned: when router_backend is haproxy
  type: str
  sample: /root/.local/state/immutable.infra/router
endpoints:
  description: The app/stack endpoints the router serves.
  returned: always
  type: list
  elements: str
  sample: [web/prod, web/acme]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._module import ROUTER_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._traffic import ROUTER_BACKEND_ARGS, router_from, router_secrets


def main():
    module = AnsibleModule(
        argument_spec=dict(state=dict(type="str", default="started",
                                      choices=["started", "stopped", "restarted", "reloaded"]),
                           **dict(ROUTER_ARGS, **ROUTER_BACKEND_ARGS)),
        supports_check_mode=True,
    )
    state = module.params["state"]
    module.no_log_values.update(router_secrets(module.params))

    def converge():
        router = router_from(module.params)
        if module.params["router_backend"] == "elbv2":
            if state != "started":
                raise ImmutableInfraError("the elbv2 router is an AWS load balancer: it is never %s by this module "
                                          "(only state=started, which checks it)" % state)
            router.start()
            return {"changed": False, "pid": None, "endpoints": sorted(router.load_routes()["endpoints"])}
        pid = router.pid()
        changed = {"started": not pid, "stopped": bool(pid), "restarted": True, "reloaded": True}[state]
        if changed and not module.check_mode:
            if state in ("stopped", "restarted"):
                router.stop()
            if state in ("started", "restarted"):
                router.write(router.load_routes())
                router.start()
            if state == "reloaded":
                router.write(router.load_routes())
                router.reload()
        return {"changed": changed, "pid": router.pid(), "router_dir": router.state_dir,
                "endpoints": sorted(router.load_routes()["endpoints"])}

    run_module(module, converge)


if __name__ == "__main__":
    main()
