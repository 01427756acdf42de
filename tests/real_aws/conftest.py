"""Opt-in smoke tests on REAL AWS (they cost money and need network): skipped unless
IMMUTABLE_INFRA_REAL_AWS=1 and AWS credentials are found. Never run by scripts/test.sh or CI.

They reuse the integration fixtures (hermetic HOME/state, the project's registry on loopback),
loaded from tests/integration/conftest.py under another module name."""
from __future__ import annotations

import importlib.util
import os

import pytest

_spec = importlib.util.spec_from_file_location(
    "integration_conftest", os.path.join(os.path.dirname(__file__), "..", "integration", "conftest.py"))
integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(integration)

workdir, env, ansible, registry = integration.workdir, integration.env, integration.ansible, integration.registry
apps = integration.apps
TOP = integration.TOP


def real_aws_reason():
    """Why the real-AWS tests are skipped, or None when they run."""
    if os.environ.get("IMMUTABLE_INFRA_REAL_AWS") != "1":
        return "real AWS tests are opt-in: set IMMUTABLE_INFRA_REAL_AWS=1 (they make and delete AMIs, and cost money)"
    try:
        import boto3
    except ImportError:
        return "boto3 is not installed"
    if boto3.session.Session().get_credentials() is None:
        return "no AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role)"
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        return "no AWS region: set AWS_REGION"
    return None


def pytest_collection_modifyitems(config, items):
    reason = real_aws_reason()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))
