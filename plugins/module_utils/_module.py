# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glue between AnsibleModule and the module_utils below it."""

from __future__ import annotations

import os

from ansible.module_utils.basic import env_fallback

from ansible_collections.immutable.infra.plugins.module_utils import _registry_auth
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

REGISTRY_ARGS = dict(
    registry=dict(type="str", default="127.0.0.1:5000"),
    validate_certs=dict(type="bool", aliases=["tls_verify"]),
    registry_auth_file=dict(type="path"),       # unset: podman's default files, REGISTRY_AUTH_FILE first
    registry_username=dict(type="str", fallback=(env_fallback, ["IMMUTABLE_INFRA_REGISTRY_USERNAME"])),
    registry_password=dict(type="str", no_log=True, aliases=["registry_token"],
                           fallback=(env_fallback, ["IMMUTABLE_INFRA_REGISTRY_PASSWORD"])),
    registry_ca_file=dict(type="path", fallback=(env_fallback, ["IMMUTABLE_INFRA_REGISTRY_CA_FILE"])),
    registry_ecr=dict(type="bool"),
    registry_aws_options=dict(type="dict", default={}),
)

ROUTER_ARGS = dict(router_dir=dict(type="path"))


def state_dir(*parts):
    """The project state directory ($IMMUTABLE_INFRA_STATE_DIR or ~/.local/state/immutable.infra)."""
    base = os.environ.get("IMMUTABLE_INFRA_STATE_DIR") or os.path.expanduser("~/.local/state/immutable.infra")
    return os.path.join(base, *parts)


def router_dir(params):
    return params.get("router_dir") or state_dir("router")


def run_module(module, fn):
    """Call fn() with the registry credentials of the module's registry_* options in
    effect (_registry_auth); exit with its result, or fail with the error's full result."""
    try:
        try:
            use_registry_access(module)
            result = fn()
        except ImmutableInfraError as exc:
            module.fail_json(**_warned(module, exc.result()))
        module.exit_json(**_warned(module, result))
    finally:
        _registry_auth.close_all()      # the temporary auth file and CA dir go before the module ends


def use_registry_access(module):
    """Register the access of a registry-facing module's options; its secrets never reach the output."""
    access = _registry_auth.from_params(module.params) if "registry_username" in module.params else None
    if access is None:
        return None
    _registry_auth.use(access)
    for secret in access.secrets() + _aws_secrets(module.params.get("registry_aws_options")):
        module.no_log_values.add(secret)
    return access


def _aws_secrets(options):
    from ansible_collections.immutable.infra.plugins.module_utils._aws import secrets_of
    return secrets_of(options)


def _warned(module, result):
    """Warnings in a result go through module.warn (passing them to exit_json is deprecated)."""
    result = dict(result)
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    return result
