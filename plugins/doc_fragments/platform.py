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
      - C(aws) - a server group is an EC2 Auto Scaling group named like the group, started from a launch template of
        the same name pinned to the version's AMI in the region (the image's C(infra.immutable.format) label is C(ami),
        its AMI ids in C(infra.immutable.ami.<region>) labels), spread over the subnets of the zones, its identity in
        tags propagated to the instances. The group waits for its instances to be C(InService) and C(Healthy) in the
        ASG instead of probing them over HTTP (their addresses are private). The ASG replaces dead instances; surplus
        goes by lowering the desired capacity; removing the group detaches its target groups, scales it to 0,
        deletes it, then its launch template. An instance is named C(<group>-<EC2 id without i->). See C(docs/aws.md).
      - An image of the wrong format for the platform is refused before anything is created.
    type: str
    default: podman
    choices: [podman, libvirt, aws]
  platform_options:
    description:
      - Options of the chosen O(platform). An option the platform does not know is an error naming it.
      - "C(podman): C(podman) (the podman executable, default C(podman)), C(validate_certs) (pull over TLS with
        verification; M(immutable.infra.server_group) defaults it to the registry's TLS setting)."
      - "C(libvirt): C(uri) (the libvirt connection URI; default C(qemu:///system) as root, which the project
        starts libvirtd and virtlogd for when nothing answers, else C(qemu:///session)), C(state_dir) (instance
        overlays and console logs; default C(${XDG_STATE_HOME:-~/.local/state}/immutable-infra/libvirt); the
        daemons' own state is in C(/run/immutable-infra/libvirt)), C(cache_dir) (the local read-only cache of VM
        image disks; default C(${XDG_CACHE_HOME:-~/.cache}/immutable-infra/vm-images)), C(memory) (MiB per
        instance, default C(512)), C(vcpus) (default C(2)), C(accelerator) (C(auto), the default, uses KVM only
        where a probe guest really runs under it, else TCG; or C(kvm), C(tcg)), C(validate_certs) (fetch VM images
        over TLS with verification; M(immutable.infra.server_group) defaults it to the registry's TLS setting)."
      - "C(aws): the AWS connection keys (C(region), C(endpoint_url), C(access_key), C(secret_key), C(session_token),
        C(profile), C(validate_certs); see C(docs/aws.md)), and C(subnets) (required to create a group:
        C({availability zone: subnet id}); every zone of the group needs one, and each subnet must really be in the
        zone it is listed under), C(instance_type) (default C(t3.micro)), C(security_groups) (a list of security
        group ids), C(iam_instance_profile) (a name or ARN), C(key_name) (an EC2 key pair; none by default:
        production instances get no key), C(user_data) (text, passed base64-encoded), C(ssh_user) (the
        C(ansible_user) the fleet inventory gives its hosts). C(validate_certs) is AWS's own, not the registry's."
    type: dict
    default: {}
"""
