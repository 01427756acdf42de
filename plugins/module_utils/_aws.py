# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS connections, shared by the aws platform, the ELBv2 router backend, AMI
bakes and ECR logins: one way to build boto3 clients from the connection
options (AWS_OPTIONS, documented by the immutable.infra.aws doc fragment), and
one way to turn botocore's errors into an ImmutableInfraError naming the call.

boto3 is imported lazily: `ansible-test sanity` imports module_utils without
it, and only a run that asks for AWS needs it."""

from __future__ import annotations

import os

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    HAS_BOTO3 = True
except ImportError:          # reported by need_boto3() when AWS is asked for
    boto3 = None
    HAS_BOTO3 = False

# Connection options every AWS-facing part accepts (platform_options, router_options,
# the aws_* options of modules): names as amazon.aws uses them.
AWS_OPTIONS = ("region", "endpoint_url", "access_key", "secret_key", "session_token", "profile", "validate_certs")

# The environment variables amazon.aws and boto3 read, for the error naming what is missing.
_CREDENTIAL_HINT = ("give access_key/secret_key (or a profile), or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                    "or AWS_PROFILE, or run where an instance role provides them")


def need_boto3():
    if not HAS_BOTO3:
        raise ImmutableInfraError("boto3 is required for AWS (the aws platform, the elbv2 router, AMI bakes, ECR): "
                                  "run make setup or pip install boto3")


def region_of(options):
    """The region asked for: the option, else AWS_REGION / AWS_DEFAULT_REGION; an error when none."""
    region = (options or {}).get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ImmutableInfraError("no AWS region: give region (platform_options/router_options/aws_region) "
                                  "or set AWS_REGION")
    return region


class Session:
    """boto3 clients for one region and one set of credentials (options: AWS_OPTIONS)."""

    def __init__(self, options=None, region=None):
        need_boto3()
        options = dict(options or {})
        unknown = sorted(k for k, v in options.items() if k not in AWS_OPTIONS and v is not None)
        if unknown:
            raise ImmutableInfraError("unknown AWS connection option(s) %s (known: %s)"
                                      % (", ".join(unknown), ", ".join(AWS_OPTIONS)))
        self.options = options
        self.region = region or region_of(options)
        self.endpoint_url = options.get("endpoint_url") or None
        kw = {"region_name": self.region}
        if options.get("profile"):
            kw["profile_name"] = options["profile"]
        if options.get("access_key") or options.get("secret_key"):
            kw.update(aws_access_key_id=options.get("access_key"), aws_secret_access_key=options.get("secret_key"),
                      aws_session_token=options.get("session_token"))
        try:
            self._session = boto3.session.Session(**kw)
        except botocore.exceptions.BotoCoreError as exc:
            raise ImmutableInfraError("cannot open an AWS session in %s: %s" % (self.region, exc))
        self._clients = {}

    def client(self, service):
        if service not in self._clients:
            verify = self.options.get("validate_certs")
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint_url, verify=None if verify is None else bool(verify),
                config=botocore.config.Config(retries={"max_attempts": 5, "mode": "standard"}))
        return self._clients[service]

    def check_credentials(self):
        """Raise naming what to do when no credentials can be found (before anything is made)."""
        if self._session.get_credentials() is None:
            raise ImmutableInfraError("AWS credentials missing for region %s: %s" % (self.region, _CREDENTIAL_HINT))

    def call(self, service, operation, what=None, **kwargs):
        """client(service).<operation>(**kwargs), with botocore errors turned into
        ImmutableInfraError naming the call (what) and AWS's own code and message."""
        try:
            return getattr(self.client(service), operation)(**kwargs)
        except Exception as exc:            # botocore raises many unrelated types
            raise aws_error(exc, what or "%s %s" % (service, operation), self.region)

    def pages(self, service, operation, key, what=None, **kwargs):
        """Every item under `key` of a paginated call."""
        try:
            out = []
            for page in self.client(service).get_paginator(operation).paginate(**kwargs):
                out.extend(page.get(key) or [])
            return out
        except Exception as exc:
            raise aws_error(exc, what or "%s %s" % (service, operation), self.region)


def error_code(exc):
    """AWS's error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None) or {}
    return (response.get("Error") or {}).get("Code")


def aws_error(exc, what, region=None):
    """An ImmutableInfraError for a failed AWS call: credentials, endpoint or AWS's own error."""
    if isinstance(exc, ImmutableInfraError):
        return exc
    where = " in %s" % region if region else ""
    if HAS_BOTO3 and isinstance(exc, (botocore.exceptions.NoCredentialsError,
                                      botocore.exceptions.PartialCredentialsError)):
        return ImmutableInfraError("AWS credentials missing for %s%s: %s" % (what, where, _CREDENTIAL_HINT))
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return ImmutableInfraError("cannot reach AWS for %s%s: %s" % (what, where, exc))
    code = error_code(exc)
    if code:
        message = (exc.response.get("Error") or {}).get("Message") or str(exc)
        return ImmutableInfraError("%s failed%s: %s: %s" % (what, where, code, message), aws_error_code=code)
    return ImmutableInfraError("%s failed%s: %s" % (what, where, exc))


# Connection options whose values are secrets: modules add them to no_log_values.
SECRET_OPTIONS = ("secret_key", "session_token")


def secrets_of(options):
    """The secret values among connection options (to mask in a module's output)."""
    return [str(v) for k, v in (options or {}).items() if k in SECRET_OPTIONS and v]
