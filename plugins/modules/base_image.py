#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: base_image
short_description: Build a minimal Debian base image from Debian packages only
version_added: 0.1.0
description:
  - Builds a root file system with C(mmdebstrap) from the configured Debian mirror, imports it with podman,
    and pushes it to the registry as an image version. No image is pulled from anywhere.
  - Bake once, like M(immutable.infra.image_bake). The fingerprint covers suite, variant, packages, mirror
    and the collection version; when the catalog holds a version with it, that version is returned unchanged.
    O(force=true) builds anew; O(refresh=true) builds anew only when the apt sources serve new packages.
  - Golden images name this image as their parent.
  - With O(format=vm) it builds a bootable Debian 12 VM image instead - a qcow2 disk (ext4, no partition table) with
    the cloud kernel, systemd, C(python3) and OpenSSH, and a small initramfs (virtio, ext4 and C(qemu_fw_cfg) only) -
    packaged as an OCI image (C(/disk/disk.qcow2), C(/boot/vmlinuz), C(/boot/initrd.img), labels
    C(infra.immutable.format=vm) and C(infra.immutable.kernel-args)) so the catalog versions it like any image.
  - 'The VM implements the guest contract: C(immutable-identity.service) reads the qemu fw_cfg entries
    C(opt/immutable/instance-id), C(opt/immutable/hostname), C(opt/immutable/env) (C(KEY=VALUE) lines, written to
    C(/run/immutable/env) for services with C(EnvironmentFile=-/run/immutable/env)) and C(opt/immutable/authorized_keys)
    (installed for root with an ed25519 host key; C(sshd) runs only then). Network: systemd-networkd, DHCP on the
    first NIC. Console on C(ttyS0).'
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.bake_evidence
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the catalog's versions before and after the bake.
  idempotent:
    support: full
options:
  name:
    description: Repository name of the base image in the registry. Defaults to C(immutable/base), or C(immutable/base-vm) with O(format=vm).
    type: str
  format:
    description:
      - C(container) builds a container image, C(vm) a bootable VM image. The format is an input of the fingerprint.
      - For C(vm) the packages a bootable guest needs are added to O(packages).
    type: str
    default: container
    choices: [container, vm]
  suite:
    description: Debian suite.
    type: str
    default: bookworm
  variant:
    description: mmdebstrap variant.
    type: str
    default: minbase
    choices: [extract, custom, essential, apt, required, minbase, buildd, important, debootstrap, standard]
  packages:
    description: Packages added to the variant. C(python3) is needed for Ansible to provision images built on it.
    type: list
    elements: str
    default: [python3]
  mirror:
    description: Debian mirror URL. Defaults to the mirror apt on this machine is configured for.
    type: str
  apt_sources:
    description:
      - Extra apt sources for the build, one-line C(sources.list) entries such as
        C(deb [trusted=yes] file:///srv/repo ./) or a security mirror. An input of the fingerprint.
      - They serve the build only and are left out of the image. C(file://) repositories are mounted into the
        build with mmdebstrap's C(file-mirror-automount) hook.
      - Container bases only.
    type: list
    elements: str
    default: []
  refresh:
    description:
      - Make the package indexes the sources serve now an input of the fingerprint (their sha256, read with
        C(apt-get update) into a temporary directory; the machine's apt state is not touched). The base is baked
        again when a source publishes new packages (a security fix), and stays a no-op while nothing changed.
      - The sources are the mirror as mmdebstrap uses it (O(mirror), else C(deb.debian.org) with C(-updates) and
        C(-security) for a stable suite) plus O(apt_sources). The digest is labelled C(infra.immutable.apt-indexes).
      - The first refresh after bakes without it bakes once (the fingerprint gains the digest).
    type: bool
    default: false
  version:
    description: The version to give the new image. Defaults to the next whole number.
    type: str
  force:
    description: Build even when a version with the same fingerprint exists.
    type: bool
    default: false
  revision:
    description: Source revision recorded in C(org.opencontainers.image.revision).
    type: str
  collection_version:
    description: The immutable.infra version, an input of the fingerprint. Filled in by the action plugin.
    type: str
  timeout:
    description: Seconds the root file system build may take.
    type: int
    default: 1800
seealso:
  - module: immutable.infra.image_bake
"""

EXAMPLES = r"""
- name: Build the base image
  immutable.infra.base_image:
    name: immutable/base

- name: Build the base VM image (immutable/base-vm)
  immutable.infra.base_image:
    format: vm

- name: Rebuild it to pick up security updates
  immutable.infra.base_image:
    force: true

- name: Bake again only when the sources (here with a local repository) publish new packages
  immutable.infra.base_image:
    packages: [python3, immutable-canary]
    apt_sources: ["deb [trusted=yes] file:///srv/repo ./"]
    refresh: true
"""

RETURN = r"""
sbom:
  description:
    - The SBOM stored beside the version (component count, counts by type, its digest and tag, whether it was stored
      now). A version the catalog holds gets its SBOM when it lacks one (a bake killed right after its push).
  returned: always
  type: dict
  sample: {components: 118, types: {deb: 118}, digest: "sha256:4919ab72...", tag: "sha256-9c1e5c5d....sbom", changed: true}
signature:
  description: The version's signature with O(signing) (key fingerprint, path in the lookaside, changed), else null.
  returned: always
  type: dict
  sample: {fingerprint: 0A1B2C3D4E5F60718293A4B5C6D7E8F901234567, path: /root/.local/state/immutable.infra/sigstore/immutable/base@sha256=9c1e/signature-1,
           changed: true}
image:
  description: The base image version built or found (see M(immutable.infra.image_bake)). Null in check mode when a build would happen.
  returned: always
  type: dict
  sample: {version: "1", digest: "sha256:2ec5...", reference: "127.0.0.1:5000/immutable/base@sha256:2ec5..."}
fingerprint:
  description: The input fingerprint.
  returned: always
  type: str
  sample: sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5
apt_indexes:
  description: The digest of the package indexes of the sources (with O(refresh=true)), else null.
  returned: always
  type: str
  sample: sha256:0556fd63b0014037e1972ee1a5932156b85fffdc9a73046c3d862b5665054810
version:
  description: The version that was or would be built.
  returned: when a build happens or would happen
  type: str
  sample: "1"
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 38.2
commands:
  description: The commands that ran, or would run in check mode.
  returned: when a build happens or would happen
  type: list
  elements: list
  sample: [["mmdebstrap", "--variant=minbase", "bookworm", "rootfs.tar"]]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._base_image import build_base_image
from ansible_collections.immutable.infra.plugins.module_utils._evidence import EVIDENCE_ARGS
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module

VARIANTS = ["extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard"]


def main():
    argument_spec = dict(
        name=dict(type="str"),
        format=dict(type="str", default="container", choices=["container", "vm"]),
        suite=dict(type="str", default="bookworm"),
        variant=dict(type="str", default="minbase", choices=VARIANTS),
        packages=dict(type="list", elements="str", default=["python3"]),
        mirror=dict(type="str"),
        apt_sources=dict(type="list", elements="str", default=[]),
        refresh=dict(type="bool", default=False),
        version=dict(type="str"),
        force=dict(type="bool", default=False),
        revision=dict(type="str"),
        collection_version=dict(type="str"),
        timeout=dict(type="int", default=1800),
        **dict(EVIDENCE_ARGS, **REGISTRY_ARGS)
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, lambda: build_base_image(module.params, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
