# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The router backend a module runs the traffic policy over, chosen by options:
`router_backend` (haproxy, the embedded default, or elbv2) and `router_options`
(the backend's own settings), defined once here and documented by the
immutable.infra.router doc fragment. haproxy keeps its state in `router_dir`."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

BACKENDS = ("haproxy", "elbv2")

ROUTER_BACKEND_ARGS = dict(
    router_backend=dict(type="str", default="haproxy", choices=list(BACKENDS)),
    router_options=dict(type="dict", default={}),
)


def router_from(params):
    """The RouterBackend the params ask for. elbv2 is scoped to the params' app/stack when
    given (it reads and writes only that endpoint's listener and target groups)."""
    name = params.get("router_backend") or "haproxy"
    options = params.get("router_options") or {}
    if not isinstance(options, dict):
        raise ImmutableInfraError("router_options must be a mapping of option: value (got %r)" % (options,))
    if name == "haproxy":
        if options:
            raise ImmutableInfraError("router_options %s are for the elbv2 router; the haproxy router takes "
                                      "router_dir" % ", ".join(sorted(options)))
        from ansible_collections.immutable.infra.plugins.module_utils._module import router_dir
        from ansible_collections.immutable.infra.plugins.module_utils._traffic._haproxy import Router
        return Router(router_dir(params))
    if name == "elbv2":
        from ansible_collections.immutable.infra.plugins.module_utils._traffic._elbv2 import Elbv2Router
        scope = "%s/%s" % (params["app"], params["stack"]) if params.get("app") and params.get("stack") else None
        return Elbv2Router(options, scope=scope)
    raise ImmutableInfraError("unknown router_backend %r (known: %s)" % (name, ", ".join(BACKENDS)))


def router_secrets(params):
    """Secret values among the router options, for a module to mask (no_log)."""
    from ansible_collections.immutable.infra.plugins.module_utils._aws import secrets_of
    return secrets_of(params.get("router_options") or {})
