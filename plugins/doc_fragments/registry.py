# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  registry:
    description:
      - The OCI registry that holds the catalog of image versions, as C(host:port).
      - The project's own registry (see the P(immutable.infra.registry#role) role) listens on C(127.0.0.1:5000).
    type: str
    default: 127.0.0.1:5000
  validate_certs:
    description:
      - Use TLS and verify the registry's certificate.
      - When not set, plain HTTP is used for registries on loopback (C(127.0.0.0/8), C(localhost), C(::1))
        and TLS with verification everywhere else, as Docker does.
    type: bool
    aliases: [tls_verify]
  registry_auth_file:
    description:
      - An auth file in the form podman and skopeo use (C(containers-auth.json), as written by
        C(podman login --authfile)) holding the credentials of O(registry) (C(auths.<registry>.auth), base64 of
        C(user:password), or C(identitytoken)). It is passed to C(podman)/C(skopeo) as C(--authfile).
      - When not set, the auth files podman and skopeo read by default apply (C(REGISTRY_AUTH_FILE) first).
      - See the "Shared registry" section of C(docs/registry.md).
    type: path
  registry_username:
    description:
      - User name for O(registry); requires O(registry_password). Takes precedence over O(registry_auth_file).
      - Falls back to C(IMMUTABLE_INFRA_REGISTRY_USERNAME).
      - The credentials are written to a temporary auth file (mode C(0600), in a private temporary directory
        removed when the task ends); they never appear in process arguments, results or logs.
    type: str
  registry_password:
    description:
      - Password or token for O(registry_username) (a Harbor robot account's secret, a GitLab deploy token, ...).
      - Falls back to C(IMMUTABLE_INFRA_REGISTRY_PASSWORD). Never logged.
    type: str
    aliases: [registry_token]
  registry_ca_file:
    description:
      - A PEM CA bundle to trust for the TLS certificate of O(registry) (a private CA); podman and skopeo get it
        through C(--cert-dir). Given, the registry is spoken to over TLS with verification, even on loopback.
      - Falls back to C(IMMUTABLE_INFRA_REGISTRY_CA_FILE).
    type: path
  registry_ecr:
    description:
      - Log in to an Amazon ECR registry (C(<account>.dkr.ecr.<region>.amazonaws.com)) with a token from
        C(ecr get_authorization_token), obtained with the AWS credentials (O(registry_aws_options), else the
        usual AWS environment variables, profile or instance role).
      - When not set, true exactly when O(registry) is an ECR host name.
    type: bool
  registry_aws_options:
    description:
      - AWS connection options for the ECR login (C(region), C(endpoint_url), C(access_key), C(secret_key),
        C(session_token), C(profile), C(validate_certs)). The region defaults to the one in the ECR host name.
    type: dict
    default: {}
"""
