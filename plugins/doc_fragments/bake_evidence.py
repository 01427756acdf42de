# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # Modules that bake image versions (image_bake, base_image): what the bake proves about the image
    # around its publish step (_evidence): the seal check, the SBOM, the signature.
    DOCUMENTATION = r"""
options:
  seal_check:
    description:
      - Refuse to publish an image that still holds SSH host keys (C(/etc/ssh/ssh_host_*)), private keys (PEM or
        OpenSSH C(PRIVATE KEY) blocks, C(id_*) key files in home directories, C(/etc/ssl/private)), a non-empty
        C(/etc/machine-id) or regular C(/var/lib/dbus/machine-id), shell histories or cloud credentials (C(.aws),
        gcloud, C(.azure), C(.docker/config.json) with auths, C(.kube/config), C(.netrc), ...).
      - It looks in C(/etc), C(/root), C(/home), C(/var/lib), C(/opt) and C(/srv). The bake fails naming every finding;
        nothing is tagged or pushed and the built image is removed. The C(immutable.infra.seal) role removes these
        when applied last in the recipe.
    type: bool
    default: true
  seal_allow:
    description: Image paths the seal check accepts (a directory accepts everything under it).
    type: list
    elements: str
    default: []
  signing:
    description:
      - GPG simple signing of the published version, stored in the lookaside directory; see
        M(immutable.infra.image_sign).
      - Give the key as O(signing.key_file) or O(signing.key); neither the key nor its passphrase is logged.
    type: dict
    suboptions:
      key_file:
        description: An armored GPG secret key file.
        type: path
      key:
        description: The armored GPG secret key itself (for example from a vault or an AWX credential).
        type: str
      passphrase:
        description: The key's passphrase.
        type: str
      fingerprint:
        description: The fingerprint of the key to sign with, when the key material holds several.
        type: str
  lookaside:
    description:
      - The signatures' lookaside directory (sigstore layout). Defaults to the state directory's C(sigstore).
    type: path
"""
