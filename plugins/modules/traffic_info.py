#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: traffic_info
short_description: Read an app/stack endpoint's groups, weights, health and error counts from the router
version_added: 0.1.0
description:
  - Reads the router live - per server group its weight, how many servers pass the router's health checks,
    requests served, and error counts (C(http_5xx) responses, C(connect_errors) connection errors,
    C(response_errors) response errors, C(errors) their sum) that release gates compare over a window. The names
    are the same for every router backend.
  - The elbv2 router reads target health live; its request and error counters are CloudWatch metrics, which it does
    not read - they are null and C(counters) says why (C(available) false, C(reason)), never invented numbers.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.server_group
  - immutable.infra.router
  - immutable.infra.router.BACKEND
  - immutable.infra.attributes
  - immutable.infra.attributes.INFO_MODULE
options: {}
seealso:
  - module: immutable.infra.traffic
"""

EXAMPLES = r"""
- name: Read web/prod's traffic
  immutable.infra.traffic_info:
    app: web
    stack: prod
  register: web_prod
"""

RETURN = r"""
endpoint:
  description: The endpoint, or null when the router does not serve this app/stack.
  returned: always
  type: dict
  sample:
    app: web
    stack: prod
    endpoint: http://127.0.0.1:18080
    port: 18080
    enabled: [web-prod-v002]
    groups:
      web-prod-v001: {weight: 0, healthy: 1, requests: 1200, errors: 0, http_5xx: 0, connect_errors: 0,
                      response_errors: 0, servers: [{name: web-prod-v001-4f1c2a, up: true, status: UP, weight: 0,
                                                     check: L7OK}]}
      web-prod-v002: {weight: 100, healthy: 1, requests: 10, errors: 0, http_5xx: 0, connect_errors: 0,
                      response_errors: 0, servers: [{name: web-prod-v002-1a2b3c, up: true, status: UP, weight: 256,
                                                     check: L7OK}]}
    backend: {status: UP, requests: 1210, http_5xx: 0, connect_errors: 0, response_errors: 0}
    counters: {available: true, source: haproxy}
    history: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._module import ROUTER_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._names import check_name
from ansible_collections.immutable.infra.plugins.module_utils._traffic import ROUTER_BACKEND_ARGS, router_from, router_secrets
from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import endpoint_report


def main():
    module = AnsibleModule(
        argument_spec=dict(app=dict(type="str", required=True), stack=dict(type="str", required=True), **dict(ROUTER_ARGS, **ROUTER_BACKEND_ARGS)),
        supports_check_mode=True,
    )
    p = module.params
    module.no_log_values.update(router_secrets(p))

    def info():
        check_name("app", p["app"])
        check_name("stack", p["stack"])
        return {"changed": False, "endpoint": endpoint_report(router_from(p), p["app"], p["stack"])}

    run_module(module, info)


if __name__ == "__main__":
    main()
