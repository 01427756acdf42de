#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: traffic
short_description: Choose which server groups of an app/stack take traffic, and with what weights
version_added: 0.1.0
description:
  - Sets the weights of the named server groups on the app/stack's router endpoint and drains every other
    group of it to weight 0 (kept in the router, running, for an instant fallback).
  - Order of a change - instances of newly named groups are added to the router with weight 0 and must pass
    the router's health checks before any weight moves; then the named groups get their weights, then the rest drain.
    The router is never left without a healthy server carrying weight.
  - Changes go through haproxy's runtime API (no reload, no dropped request) and are persisted in the router's
    routes, so a reload or restart keeps them. A new endpoint (first release of an app/stack) reloads the router.
  - Groups whose instances are gone are removed from the router.
  - A stopped router is started first (see M(immutable.infra.router)).
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.server_group
  - immutable.infra.router
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  groups:
    description:
      - Server group name to weight (0-100). Groups of the app/stack not named here drain to 0.
      - At least one group needs a weight above 0.
    type: dict
    default: {}
  port:
    description: Port the endpoint listens on, on 127.0.0.1. Required the first time.
    type: int
  health_check:
    description: How the router checks servers. Only given keys change the endpoint's check.
    type: dict
    suboptions:
      path:
        description: HTTP path.
        type: str
        default: /healthz
      status:
        description: Expected status.
        type: int
        default: 200
      interval:
        description: Seconds between checks.
        type: float
        default: 0.5
  wait_timeout:
    description: Seconds new servers get to pass the router's health checks.
    type: int
    default: 30
  state:
    description: C(present) routes the endpoint; C(absent) removes it from the router.
    type: str
    default: present
    choices: [present, absent]
seealso:
  - module: immutable.infra.traffic_info
  - module: immutable.infra.server_group
"""

EXAMPLES = r"""
- name: Send all of web/prod's traffic to the new group, drain the rest
  immutable.infra.traffic:
    app: web
    stack: prod
    port: 18080
    groups:
      web-prod-v002: 100

- name: Canary - one tenth to the new group
  immutable.infra.traffic:
    app: web
    stack: prod
    groups:
      web-prod-v002: 90
      web-prod-v003: 10
"""

RETURN = r"""
endpoint:
  description: The endpoint after the change, as M(immutable.infra.traffic_info) reports it. Null in check mode.
  returned: always
  type: dict
  sample:
    app: web
    stack: prod
    endpoint: http://127.0.0.1:18080
    port: 18080
    enabled: [web-prod-v002]
    groups:
      web-prod-v002: {weight: 100, healthy: 2, requests: 10, errors: 0, hrsp_5xx: 0, econ: 0, eresp: 0, servers: []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._module import ROUTER_ARGS, router_dir, run_module
from ansible_collections.immutable.infra.plugins.module_utils._platforms._podman import PodmanPlatform
from ansible_collections.immutable.infra.plugins.module_utils._server_group import check_name
from ansible_collections.immutable.infra.plugins.module_utils._traffic._haproxy import Router
from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import apply


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            stack=dict(type="str", required=True),
            groups=dict(type="dict", default={}),
            port=dict(type="int"),
            health_check=dict(type="dict", options=dict(
                path=dict(type="str", default="/healthz"), status=dict(type="int", default=200),
                interval=dict(type="float", default=0.5))),
            wait_timeout=dict(type="int", default=30),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            **ROUTER_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params

    def converge():
        check_name("app", p["app"])
        check_name("stack", p["stack"])
        return apply(Router(router_dir(p)), PodmanPlatform(), p, module.check_mode)

    run_module(module, converge)


if __name__ == "__main__":
    main()
