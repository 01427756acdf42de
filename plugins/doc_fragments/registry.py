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
"""
