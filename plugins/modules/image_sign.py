#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_sign
short_description: Sign an image version with GPG simple signing, or verify its signature against a policy
version_added: 0.2.0
description:
  - With O(state=signed), signs the manifest digest of an image version of the catalog for its docker reference
    (C(<registry>/<name>:<version>)) with a GPG key, as C(podman push --sign-by) would, and stores the signature in a
    lookaside directory beside the registry (C(<lookaside>/<name>@sha256=<hex>/signature-<n>), the layout podman and
    skopeo read). A version already signed by the same key is left alone. Versions baked with
    M(immutable.infra.image_bake)'s O(immutable.infra.image_bake#module:signing) are signed at bake; this module signs
    versions baked before, or adds an operator's signature.
  - With O(state=verified), checks the version against a signature policy, as
    M(immutable.infra.server_group) does before a deploy, and fails naming the image, the digest and why when it is
    unsigned, tampered with, signed for another version or repository, or signed by a key the policy does not trust.
  - The key is imported into a throwaway GnuPG home removed after the task; neither the key nor its passphrase
    appears in process arguments, results or logs. Signatures are made and checked by C(skopeo standalone-sign) and
    C(skopeo standalone-verify).
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  name:
    description: The repository of the version, for example C(web).
    type: str
    required: true
  version:
    description: The version (tag). Without O(version) or O(digest), the newest version.
    type: str
  digest:
    description: The version by its manifest digest C(sha256:...).
    type: str
  state:
    description: C(signed) signs the version; C(verified) only checks it against O(signature_policy).
    type: str
    default: signed
    choices: [signed, verified]
  signing:
    description: The signing key, for O(state=signed).
    type: dict
    suboptions:
      key_file:
        description: A file holding the private key (armored or binary, as C(gpg --export-secret-keys) writes it).
        type: path
      key:
        description: The private key as armored text (from a vault, for example).
        type: str
      passphrase:
        description: The key's passphrase, if it has one.
        type: str
      fingerprint:
        description: Which secret key signs, when the key material holds several.
        type: str
  signature_policy:
    description: The verification policy for O(state=verified), as M(immutable.infra.server_group) takes it.
    type: dict
    suboptions:
      keys:
        description: The trusted public keys - key file paths or armored key text.
        type: list
        elements: str
        required: true
      lookaside:
        description: The signatures' directory; defaults to O(lookaside).
        type: path
      require:
        description: C(false) reports a failed verification as a warning instead of failing.
        type: bool
        default: true
  lookaside:
    description:
      - The signatures' directory. Defaults to C(sigstore) in the project state directory
        (C($IMMUTABLE_INFRA_STATE_DIR), else C(~/.local/state/immutable.infra)).
    type: path
seealso:
  - module: immutable.infra.image_bake
  - module: immutable.infra.server_group
"""

EXAMPLES = r"""
- name: Sign web version 3 with the release key
  immutable.infra.image_sign:
    name: web
    version: "3"
    signing:
      key_file: /etc/immutable-infra/release-key.asc
      passphrase: "{{ vault_release_key_passphrase }}"

- name: Check that the newest web version is signed by the release key
  immutable.infra.image_sign:
    name: web
    state: verified
    signature_policy:
      keys: [/etc/immutable-infra/release-key.pub]
"""

RETURN = r"""
image:
  description: The version's facts (reference pinned by digest, version, digest).
  returned: always
  type: dict
  sample:
    reference: 127.0.0.1:5000/web@sha256:ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d
    version: "3"
    digest: sha256:ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d
signature:
  description:
    - The signature - the key C(fingerprint), the signed C(identity) and C(digest), and its C(path). With
      O(state=verified) also C(verified) and the C(trusted) fingerprints.
  returned: always
  type: dict
  sample:
    fingerprint: BAE986A012B3FA5FB30835F0FB95E29AA651D11F
    identity: 127.0.0.1:5000/web:3
    digest: sha256:ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d
    path: /root/.local/state/immutable.infra/sigstore/web@sha256=ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d/signature-1
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._catalog import Catalog
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._signing import (
    POLICY_OPTIONS, SIGNING_OPTIONS, sign_or_verify)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str"),
            digest=dict(type="str"),
            state=dict(type="str", default="signed", choices=["signed", "verified"]),
            signing=dict(type="dict", options=SIGNING_OPTIONS),
            signature_policy=dict(type="dict", options=POLICY_OPTIONS),
            lookaside=dict(type="path"),
            **REGISTRY_ARGS
        ),
        mutually_exclusive=[("version", "digest")],
        required_if=[("state", "signed", ("signing",)), ("state", "verified", ("signature_policy",))],
        supports_check_mode=True,
    )
    p = module.params

    def sign():
        return sign_or_verify(Catalog(p["registry"], p["validate_certs"]), p, module.check_mode)

    run_module(module, sign)


if __name__ == "__main__":
    main()
