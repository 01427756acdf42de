# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `platform` and `platform_options` options, defined once (the
immutable.infra.platform doc fragment documents them), and the one way a
module or plugin builds its platform from them."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._platforms import AVAILABLE, _implementation, get_platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

PLATFORM_ARGS = dict(
    platform=dict(type="str", default="podman", choices=list(AVAILABLE)),
    platform_options=dict(type="dict", default={}),
)


def platform_from(params, **defaults):
    """get_platform(params["platform"], **params["platform_options"]).

    defaults are options the caller can fill in when the user did not give them
    (server_group: the registry's TLS setting as validate_certs); each is used only
    by a platform that has that option and lets callers fill it (CALLER_DEFAULTS: the aws
    platform's validate_certs is AWS's, not the registry's). An unknown platform or option is an error
    naming it."""
    name = params.get("platform") or "podman"
    given = params.get("platform_options") or {}
    if not isinstance(given, dict):
        raise ImmutableInfraError("platform_options must be a mapping of option: value (got %r)" % (given,))
    impl = _implementation(name)                              # an unknown name fails here
    known = getattr(impl, "OPTIONS", ())
    fillable = known if getattr(impl, "CALLER_DEFAULTS", None) is None else impl.CALLER_DEFAULTS
    extra = {k: v for k, v in defaults.items() if k in fillable and given.get(k) is None and v is not None}
    return get_platform(name, **dict(given, **extra))         # an unknown option fails here
