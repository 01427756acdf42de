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
  - The policy is the same for every router backend (O(router_backend)). With the project's haproxy (the default),
    changes go through haproxy's runtime API (no reload, no dropped request) and are persisted in the router's routes,
    so a reload or restart keeps them. A new endpoint (first release of an app/stack) reloads the router.
  - With C(elbv2), the endpoint is a listener of the ALB named in O(router_options), each server group a target group
    attached to the group's Auto Scaling group, and weights those of the listener's weighted forward action; the
    state (weights, history, images) lives in AWS, see the elbv2 notes of O(router_options).
  - Router servers are where the O(platform) says each instance's service port is reached.
  - Groups whose instances are gone are removed from the router.
  - A stopped router is started first (see M(immutable.infra.router)).
  - With O(verify_seconds), the groups that gained weight are watched after the switch. The router's counters
    are polled every 0.05 s; as soon as their errors (5xx responses, connection and response errors) exceed
    O(max_errors), or a group has no server UP, the previous weights come back (the old servers first) and the
    task fails naming the counts. A failed first release removes the endpoint it created.
  - With O(rollback), traffic goes back to the group that carried it before, chosen from the router's history
    and the running groups. When that group was destroyed, nothing moves and C(recreate) in RV(rollback) is true
    with the image the router recorded for it - recreate it with M(immutable.infra.server_group), then name it in O(groups).
  - A rollback onto a group whose image version is revoked (see M(immutable.infra.image_revoke)) is refused and
    nothing moves; the error names the version, the reason, who revoked it and when. The revocation is read from the
    registry named in the group's image reference. The automatic revert of a failed verify window is never refused.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.server_group
  - immutable.infra.platform
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
  groups:
    description:
      - Server group name to weight (0-100). Groups of the app/stack not named here drain to 0.
      - At least one group needs a weight above 0.
    type: dict
    default: {}
  port:
    description:
      - Port the endpoint listens on (on 127.0.0.1 for haproxy; the ALB listener's port for elbv2). Required the first
        time (or O(new_endpoint_port)), unless an elbv2 C(listener_arn) gives it.
      - A different port for an existing endpoint is refused.
    type: int
  new_endpoint_port:
    description: Port for the endpoint when it is new; an existing endpoint keeps its own port and ignores this.
    type: int
  verify_seconds:
    description:
      - After a change, watch the groups that gained weight for up to this many seconds (0 - no window).
      - The window ends early, and the change is undone, as soon as the errors exceed O(max_errors).
    type: float
    default: 0
  max_errors:
    description: Errors (5xx + connection + response errors) the verify window tolerates.
    type: int
    default: 0
  keep_failed:
    description: A group that fails verification stays in the router at weight 0 (for inspection) instead of leaving it.
    type: bool
    default: false
  rollback:
    description:
      - Send all traffic back to the group that carried it before the current one (newest in the router's history
        that still runs, else the newest running group out of traffic, else the newest in history, to be recreated).
      - Refused when there is no endpoint or no other group. Mutually exclusive with O(groups).
    type: bool
    default: false
  rollback_group:
    description: Roll back to this group instead of choosing one. Implies O(rollback).
    type: str
  validate_certs:
    description:
      - With O(rollback), how to reach the registry of the target group's image (its reference names the registry)
        to check that the version is not revoked - use TLS and verify the certificate.
      - When not set, plain HTTP for registries on loopback, TLS with verification everywhere else.
    type: bool
    aliases: [tls_verify]
  retire:
    description:
      - Groups to take out of the router once the change (and its verify window) succeeded, for example the groups a
        release's retention removes next. They must not be given weight in O(groups).
    type: list
    elements: str
    default: []
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
      timeout:
        description:
          - Seconds one check may take before it counts as failed. A slow answer is not a dead server
            (a VM under TCG can take a second while new VMs boot beside it).
        type: float
        default: 2.0
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

- name: Switch to the new group, watch it for 10 s, undo at the first error
  immutable.infra.traffic:
    app: web
    stack: prod
    groups:
      web-prod-v003: 100
    verify_seconds: 10
    max_errors: 0

- name: Roll back to the group that carried traffic before
  immutable.infra.traffic:
    app: web
    stack: prod
    rollback: true
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
      web-prod-v002: {weight: 100, healthy: 2, requests: 10, errors: 0, http_5xx: 0, connect_errors: 0,
                      response_errors: 0, servers: []}
url:
  description: The endpoint's address (also for a planned one in check mode).
  returned: when state is present
  type: str
  sample: http://127.0.0.1:18080
previous:
  description: The groups that carried traffic before the task, with their weights.
  returned: when state is present
  type: dict
  sample: {web-prod-v001: 100}
rollback:
  description: With O(rollback), the group chosen (C(to)), the groups that carried traffic (C(from)), the image the
    router recorded for it (C(image)) and whether it must be recreated first (C(recreate)). Null otherwise.
  returned: when state is present
  type: dict
  sample: {to: web-prod-v001, from: [web-prod-v002], image: "127.0.0.1:5000/web@sha256:0a1b", recreate: false}
verification:
  description:
    - The verify window's counts for the groups that gained weight - C(requests), C(errors) (the sum of the
      next three), C(http_5xx) (5xx responses), C(connect_errors) (failed connections to a server),
      C(response_errors) (broken responses), C(healthy) (fewest servers up in a group), C(seconds) watched,
      C(passed). The names are the same for every router backend. Null when there was no window.
    - On failure the same dict is returned with the error.
  returned: when state is present
  type: dict
  sample: {groups: [web-prod-v002], requests: 120, errors: 0, http_5xx: 0, connect_errors: 0, response_errors: 0, healthy: 2,
           seconds: 3.0, window: 3.0, max_errors: 0, passed: true}
planned:
  description: In check mode, named groups that have no instance yet (an earlier task of the run would create them).
  returned: when state is present
  type: list
  elements: str
  sample: [web-prod-v003]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import ROUTER_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._names import check_name
from ansible_collections.immutable.infra.plugins.module_utils._platforms._options import PLATFORM_ARGS, platform_from
from ansible_collections.immutable.infra.plugins.module_utils._revocation import check_reference
from ansible_collections.immutable.infra.plugins.module_utils._traffic import ROUTER_BACKEND_ARGS, router_from, router_secrets
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
                interval=dict(type="float", default=0.5), timeout=dict(type="float", default=2.0))),
            wait_timeout=dict(type="int", default=30),
            new_endpoint_port=dict(type="int"),
            verify_seconds=dict(type="float", default=0),
            max_errors=dict(type="int", default=0),
            keep_failed=dict(type="bool", default=False),
            rollback=dict(type="bool", default=False),
            rollback_group=dict(type="str"),
            validate_certs=dict(type="bool", aliases=["tls_verify"]),
            retire=dict(type="list", elements="str", default=[]),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            **dict(ROUTER_ARGS, **dict(ROUTER_BACKEND_ARGS, **PLATFORM_ARGS))
        ),
        supports_check_mode=True,
    )
    p = module.params
    module.no_log_values.update(router_secrets(p))

    def converge():
        check_name("app", p["app"])
        check_name("stack", p["stack"])

        def check_target(reference, doing):
            check_reference(reference, doing, lambda registry: Lifecycle(registry, p["validate_certs"]))

        return apply(router_from(p), platform_from(p), p, module.check_mode, check_target)

    run_module(module, converge)


if __name__ == "__main__":
    main()
