# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  router_dir:
    description:
      - State directory of the project's haproxy router, the router backend the traffic policy runs over
        (configuration, C(routes.json), runtime socket, pid file).
      - Defaults to C($IMMUTABLE_INFRA_STATE_DIR/router), else C(~/.local/state/immutable.infra/router).
    type: path
"""

    # The router backend choice (_traffic.ROUTER_BACKEND_ARGS): modules that take it
    # extend immutable.infra.router.BACKEND as well.
    BACKEND = r"""
options:
  router_backend:
    description:
      - The router the traffic policy runs over - C(haproxy), the project's haproxy on loopback (state in O(router_dir)),
        or C(elbv2), an AWS Application Load Balancer (state in AWS, see O(router_options)).
    type: str
    default: haproxy
    choices: [haproxy, elbv2]
  router_options:
    description:
      - Settings of the C(elbv2) router (none for haproxy) - the AWS connection keys C(region), C(endpoint_url),
        C(access_key), C(secret_key), C(session_token), C(profile), C(validate_certs) (as in the C(platform_options) of the
        C(aws) platform; secrets are masked; missing credentials fail before anything changes), and
        C(load_balancer) (required - the ALB's name or ARN; it must exist, see C(playbooks/aws_network.yml)),
        C(listener_arn) (an existing listener of that ALB to use for this app/stack; one that does not exist is an
        error; default - the listener this collection created and tagged for the app/stack, else a new one on the
        endpoint port), C(vpc_id) (for new target groups; default the ALB's), C(poll_interval) (seconds between two
        reads of target health, default 1).
      - "One listener per app/stack, one target group per server group (named from the group, tagged with
        C(infra.immutable.app), C(.stack), C(.group), C(.image)) attached to the Auto Scaling group named like the
        server group; weights are those of the listener's weighted forward action (0-100 per group). The endpoint's
        health check, platform, weight history and images are tags of the listener. Nothing is kept on the
        controller. See docs/aws-elbv2.md."
      - An unknown key is an error naming it.
    type: dict
    default: {}
"""
