# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  platform:
    description:
      - Where the instances of server groups run. The same policy (a new image makes a new group, health waits,
        red/black through the router) holds on every platform.
      - C(podman) - an instance is a container started from a container image, its service port published on
        C(127.0.0.1) only.
      - C(libvirt) - an instance is a libvirt domain booted from a qcow2 overlay of a VM image (the image's
        C(infra.immutable.format) label is C(vm)), its service port forwarded to C(127.0.0.1) only.
      - An image of the wrong format for the platform is refused before anything is created.
    type: str
    default: podman
    choices: [podman, libvirt]
  platform_options:
    description:
      - Options of the chosen O(platform). An option the platform does not know is an error naming it.
      - "C(podman): C(podman) (the podman executable, default C(podman)), C(validate_certs) (pull over TLS with
        verification; M(immutable.infra.server_group) defaults it to the registry's TLS setting)."
      - "C(libvirt): C(uri) (the libvirt connection URI), C(state_dir) (where overlays and the project's libvirtd
        state live), C(cache_dir) (the local cache of VM image disks), C(memory) (MiB per instance), C(vcpus),
        C(accelerator) (C(kvm) or C(tcg); detected when not given), C(validate_certs) (fetch VM images over TLS
        with verification; M(immutable.infra.server_group) defaults it to the registry's TLS setting)."
    type: dict
    default: {}
"""
