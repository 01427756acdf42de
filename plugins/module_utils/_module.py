# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glue between AnsibleModule and the module_utils below it."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

REGISTRY_ARGS = dict(
    registry=dict(type="str", default="127.0.0.1:5000"),
    validate_certs=dict(type="bool", aliases=["tls_verify"]),
)


def run_module(module, fn):
    """Call fn(); exit with its result, or fail with the error's full result."""
    try:
        result = fn()
    except ImmutableInfraError as exc:
        module.fail_json(**exc.result())
    module.exit_json(**result)
