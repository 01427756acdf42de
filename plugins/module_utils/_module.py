# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glue between AnsibleModule and the module_utils below it."""

from __future__ import annotations

import os

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

REGISTRY_ARGS = dict(
    registry=dict(type="str", default="127.0.0.1:5000"),
    validate_certs=dict(type="bool", aliases=["tls_verify"]),
)

ROUTER_ARGS = dict(router_dir=dict(type="path"))


def state_dir(*parts):
    """The project state directory ($IMMUTABLE_INFRA_STATE_DIR or ~/.local/state/immutable.infra)."""
    base = os.environ.get("IMMUTABLE_INFRA_STATE_DIR") or os.path.expanduser("~/.local/state/immutable.infra")
    return os.path.join(base, *parts)


def router_dir(params):
    return params.get("router_dir") or state_dir("router")


def run_module(module, fn):
    """Call fn(); exit with its result, or fail with the error's full result."""
    try:
        result = fn()
    except ImmutableInfraError as exc:
        module.fail_json(**_warned(module, exc.result()))
    module.exit_json(**_warned(module, result))


def _warned(module, result):
    """Warnings in a result go through module.warn (passing them to exit_json is deprecated)."""
    result = dict(result)
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    return result
