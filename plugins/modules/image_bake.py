#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_bake
short_description: Bake a golden image from a Packer recipe, once per set of inputs
version_added: 0.1.0
description:
  - Runs a Packer HCL2 recipe whose C(ansible) provisioner applies Ansible roles, then tags the resulting
    container image as the next image version and pushes it to the registry that holds the catalog.
  - Bake once. The input fingerprint covers the recipe's files, var files, the roles its playbooks apply,
    O(fingerprint_paths), variable values, the parent image digest, the selected sources and the collection
    version. When the catalog already holds a version with that fingerprint, it is returned with C(changed=false)
    and Packer does not run. O(force=true) bakes anew.
  - Image facts ride as OCI labels - C(org.opencontainers.image.version), C(.created), C(.revision),
    C(.base.digest), C(.base.name), C(infra.immutable.recipe), C(infra.immutable.fingerprint) and
    C(infra.immutable.bake-id).
  - Versions are whole numbers counting up from C(1) unless O(version) names one. A version is never overwritten.
  - Packer's C(docker) builder is driven through podman; no Docker engine is needed.
  - 'A recipe can emit a container image (a C(docker) source) and a VM image (a C(qemu) source). Each selected source
    is its own image version with its own fingerprint: the container output goes to the repository O(name), the VM
    output to O(name)C(-vm). Packer runs once per output the catalog lacks; the others are returned unchanged.'
  - 'A VM output is baked by the C(qemu) builder on the parent VM image (fetched by digest into the local cache,
    C(~/.cache/immutable-infra/vm-images)), with KVM where it really runs guests and TCG otherwise. Its qcow2 disk is
    packaged with the parent''s kernel and initrd as an OCI image (C(/disk/disk.qcow2), C(/boot/vmlinuz),
    C(/boot/initrd.img)) labelled C(infra.immutable.format=vm) and C(infra.immutable.kernel-args), plus the
    C(custom_data) of the recipe''s C(manifest) post-processor (for example C(infra.immutable.port)).'
  - A failed bake returns Packer's error lines and tags or pushes nothing.
  - A revoked parent version (see M(immutable.infra.image_revoke)) is refused before Packer runs, naming the version,
    the reason, who revoked it and when - also when the catalog already holds a version of these inputs.
  - 'Ancestry: every version records its parent by digest (C(org.opencontainers.image.base.digest)). With
    O(parent_channel) the parent is the version that channel of the O(parent) repository points at, and the version
    is labelled C(infra.immutable.parent-channel): M(immutable.infra.image_info) then reports it out of date once the
    channel moves on, and C(playbooks/rebake_children.yml) bakes it again. Bake once still holds - the new parent is a
    new input.'
  - Runs on the controller (or wherever Packer runs); use C(delegate_to) or a C(localhost) play.
  - Bakes started together on one host are safe. A bake of inputs another bake is baking waits for it and returns
    its version unchanged; bakes of different inputs each reserve their own version. The locks are C(flock) files
    under C($IMMUTABLE_INFRA_STATE_DIR/bake-locks), dropped by the kernel when a bake dies. Bakes on separate hosts
    (AWX jobs in their own containers) share no locks - put that directory on shared storage that supports
    C(flock), or turn C(allow_simultaneous) off on the job template. The push still refuses to overwrite a version,
    and a version pushed by another host at the same moment fails the bake with a clear error.
  - Warns when the committed image's command is still the build shell (the C(docker) builder commits
    C(run_command)'s C(/bin/sh) as C(CMD)); reset it with C("CMD []") in the source's C(changes).
  - A failed bake removes its build container (named C(build_name)) even when Packer never started it.
  - 'Evidence at bake, read from the built image''s files without running it (a container image is mounted with
    C(podman image mount); of a VM image''s disk only the needed paths are copied out with C(debugfs)): the seal
    check (O(seal_check)) and a CycloneDX 1.6 JSON SBOM of its Debian packages (with their source packages) and
    Python distributions. The SBOM is stored beside the version as the tag C(sha256-<hex>.sbom); the same image gives
    the same SBOM, byte for byte. A bake the catalog already holds completes the version when it lacks its SBOM (a
    bake killed right after its push, or a version baked before SBOMs) or, with O(signing), that key''s signature.'
  - 'A recipe''s C(amazon-ebs) source (O(only) C(ami) or its name) bakes an AMI: built in the first of O(ami_regions),
    copied by Packer to the others, on the AWS account of O(aws). Its image version is a small OCI image in the same
    catalog, repository O(name)C(-ami), with the labels of every version plus C(infra.immutable.format=ami) and one
    C(infra.immutable.ami.<region>=ami-...) per region (read back as the C(amis) fact of M(immutable.infra.image_info)).
    The regions and O(ami_communicator) are inputs of the fingerprint; a no-op bake makes no AMI. The AMIs and their
    snapshots are tagged, in every region, with the version, fingerprint, recipe, bake id, repository and
    C(infra.immutable.state) (C(unpublished) until the catalog version is pushed, then C(published)). A bake that died
    between the AMI and the push left AMIs tagged C(unpublished): the next bake of the same inputs adopts them
    (C(adopted) in its output) instead of making new ones. An AMI version has no SBOM (its volume cannot be read
    offline; see docs/aws-bake.md). The collection passes the Packer variables C(aws_region), C(aws_ami_regions),
    C(aws_endpoint_ec2), C(aws_ami_name) and C(aws_ami_tags); credentials go to Packer through its environment.'
  - 'The recipe contract: the collection passes the Packer variables C(parent_image) (the parent pinned by digest),
    C(image_labels) (a map the recipe applies as C(LABEL) changes), C(image_version) and C(build_name) (a unique
    name for the build container). See the collection README.'
  - 'For a VM source it also passes C(parent_disk), C(parent_kernel), C(parent_initrd) and C(parent_kernel_args) (the
    parent VM image in the local cache; the disk is read only), C(accelerator) (C(kvm) or C(tcg)),
    C(ssh_private_key_file) and C(ssh_public_key_file) (a key pair for this bake; give the public half to the guest
    as qemu C(-fw_cfg name=opt/immutable/authorized_keys,file=...)), C(vm_output_dir) (the qemu builder''s
    C(output_directory)), C(vm_serial_log) (a file for the serial console, kept beside O(log_file)) and
    C(vm_manifest) (where a C(manifest) post-processor writes its C(custom_data) labels).'
requirements:
  - boto3 and botocore for AMI bakes
  - python-debian and cyclonedx-python-lib (the SBOM), on the host the module runs on
  - qemu-img and debugfs (e2fsprogs) to read a VM image's disk
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.bake_evidence
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: Runs C(packer validate) and reports whether a bake would happen.
  diff_mode:
    support: full
    details: Shows the catalog's versions before and after the bake.
  idempotent:
    support: full
options:
  recipe:
    description:
      - The name of a recipe shipped in the collection's C(packer/) directory (for example C(web)),
        or a path to a recipe directory holding C(*.pkr.hcl) files.
    type: str
    required: true
  name:
    description: Repository name of the image in the registry. Defaults to the recipe directory's name.
    type: str
  parent:
    description:
      - The parent image, by C(name) (its newest version), C(name:version) or C(name@sha256:...),
        with or without a registry prefix. Resolved to a digest before the bake and passed as C(parent_image).
      - For a VM source the parent is its C(-vm) repository (C(immutable/base) -> C(immutable/base-vm), its newest
        version) unless O(vm_parent) is given.
    type: str
  parent_channel:
    description:
      - Bake on the version this channel of the O(parent) repository points at (for example C(production)); O(parent)
        then names the repository only (C(immutable/base)). The recipe's VM source takes the same channel of its
        C(-vm) parent repository.
      - The channel is an input of the fingerprint (with the digest it resolves to) and is recorded on the baked
        versions as the label C(infra.immutable.parent-channel).
      - A channel pointing at a revoked version is refused.
    type: str
  vm_parent:
    description:
      - The parent VM image of the recipe's VM source, like O(parent). Needed when O(parent) pins a version.
    type: str
  version:
    description: The version to give the new image. Defaults to the next whole number.
    type: str
  var_files:
    description: Packer var files, relative to the recipe directory or absolute.
    type: list
    elements: path
    default: []
  variables:
    description: Packer variable values. They are inputs of the fingerprint.
    type: dict
    default: {}
  only:
    description:
      - Bake only these sources of the recipe - by source name (C(docker.container), C(qemu.vm)) or by format
        (C(container), C(vm)); C([container, vm]) bakes both.
      - Empty bakes the recipe's container source (every source when it has none), so a recipe that gains a
        C(qemu) source does not make existing bakes boot VMs.
    type: list
    elements: str
    default: []
  force:
    description: Bake even when a version with the same fingerprint exists.
    type: bool
    default: false
  log_file:
    description:
      - Where Packer's output goes, line by line, while the bake runs (follow it with C(tail -f)).
      - Defaults to a temporary file removed after the bake.
    type: path
  log_dir:
    description:
      - A directory for the bake's log. The action plugin picks a new file in it (C(<recipe>-<UTC time>-<id>.log)),
        creates the directory and says which file to follow before Packer starts. An empty string means the state
        directory's C(bake-logs).
      - Ignored when O(log_file) is set.
    type: path
  fingerprint_paths:
    description:
      - More files or directories whose content is an input of the image.
      - The action plugin adds the roles the recipe's playbooks apply, with their dependencies.
    type: list
    elements: path
    default: []
  collections_paths:
    description:
      - Collection search paths for the Packer C(ansible) provisioner (C(ANSIBLE_COLLECTIONS_PATH)).
      - The action plugin fills in the controller's own paths.
    type: list
    elements: path
  collection_version:
    description: The immutable.infra version, an input of the fingerprint. Filled in by the action plugin.
    type: str
  revision:
    description: Source revision recorded in C(org.opencontainers.image.revision). Defaults to the recipe's git commit.
    type: str
  timeout:
    description: Seconds a bake may take before it is stopped.
    type: int
    default: 3600
  packer_path:
    description: The Packer executable.
    type: path
    default: packer
  aws:
    description:
      - AWS connection options of an AMI bake, the keys every AWS-facing option of the collection takes
        (C(platform_options) of the aws platform, C(router_options) of the elbv2 router). Not inputs of the
        fingerprint. Unknown regions and missing credentials fail before anything is made.
      - Without keys boto3's and Packer's usual sources apply (C($AWS_ACCESS_KEY_ID), C($AWS_PROFILE), an instance
        role). Credentials reach Packer through its environment, never a var file; C(access_key), C(secret_key)
        and C(session_token) are never logged.
    type: dict
    default: {}
    suboptions:
      region:
        description: Default build region when O(ami_regions) is empty.
        type: str
      endpoint_url:
        description: An EC2 endpoint other than AWS's (for example a moto server); passed to Packer as C(aws_endpoint_ec2).
        type: str
      access_key:
        description: Access key id.
        type: str
      secret_key:
        description: Secret access key.
        type: str
      session_token:
        description: Session token of temporary credentials.
        type: str
      profile:
        description: A profile of the AWS shared configuration.
        type: str
      validate_certs:
        description: Verify the endpoint's TLS certificate.
        type: bool
  ami_regions:
    description:
      - Regions of an AMI bake - the first builds the AMI, Packer copies it to the others (C(ami_regions)). A region
        the copy does not reach fails the bake and nothing is published. Defaults to O(aws.region) (or C($AWS_REGION)).
    type: list
    elements: str
    default: []
  ami_communicator:
    description:
      - C(ssh) runs the recipe's provisioner (its roles, the seal role last) on the build instance over SSH, as a
        real bake does. C(none) runs the recipe's C(<source>-offline) variant, which provisions nothing - for
        endpoints whose instances cannot be reached (a moto server). An input of the fingerprint.
    type: str
    choices: [ssh, none]
    default: ssh
seealso:
  - module: immutable.infra.image_info
  - module: immutable.infra.base_image
"""

EXAMPLES = r"""
- name: Bake the example web recipe on the base image
  immutable.infra.image_bake:
    recipe: web
    parent: immutable/base
    variables:
      web_message: hello
    log_file: /tmp/bake-web.log

- name: Bake the web recipe's VM image (repository web-vm, on immutable/base-vm)
  immutable.infra.image_bake:
    recipe: web
    parent: immutable/base
    only: [qemu.vm]

- name: Bake web on whatever base version the production channel points at (rebaked when it moves)
  immutable.infra.image_bake:
    recipe: web
    parent: immutable/base
    parent_channel: production

- name: Bake the web recipe's AMI in us-east-1 and copy it to eu-west-1 (repository web-ami)
  immutable.infra.image_bake:
    recipe: web
    only: [ami]
    ami_regions: [us-east-1, eu-west-1]
    variables:
      aws_subnet_id: subnet-0123456789abcdef0

- name: Bake a recipe kept in your own repository, as version 2024.06.1
  immutable.infra.image_bake:
    recipe: "{{ playbook_dir }}/../packer/api"
    parent: 127.0.0.1:5000/immutable/base:3
    version: 2024.06.1
    var_files:
      - prod.pkrvars.hcl
"""

RETURN = r"""
image:
  description: The image version baked or found. Null in check mode when a bake would happen.
  returned: always
  type: dict
  sample:
    version: "2"
    tag: "2"
    digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    reference: 127.0.0.1:5000/web@sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    repository: 127.0.0.1:5000/web
    created: "2026-11-29T19:30:00Z"
    revision: 4f2d1c0e
    recipe: web
    fingerprint: sha256:1d6e0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c
    parent_digest: sha256:2ec58878c37464e5c46383bd77dfe349c38253131156e8951830e21579c58ac4
    parent_name: 127.0.0.1:5000/immutable/base
    bake_id: 0f1e2d3c4b5a
    labels: {}
format:
  description: The format of the (first) output, C(container), C(vm) or C(ami).
  returned: always
  type: str
  sample: container
outputs:
  description:
    - One entry per selected source, in the recipe's order (the top-level keys describe the first) -
      C(source), C(format), C(name) (its repository), C(fingerprint), C(parent), C(parent_channel), C(image),
      C(changed), and C(version) when it was or would be baked; an AMI output baked now also has C(amis)
      (region to AMI id) and C(adopted) (true when it published AMIs a dead bake had left).
  returned: always
  type: list
  elements: dict
  sample:
    - {source: docker.container, format: container, name: web, changed: false, image: {version: "2"}}
    - {source: qemu.vm, format: vm, name: web-vm, changed: true, version: "1", image: {version: "1"}}
version:
  description: The version that was or would be baked. Absent when an existing version is returned.
  returned: when a bake happens or would happen
  type: str
  sample: "2"
fingerprint:
  description: The input fingerprint.
  returned: always
  type: str
  sample: sha256:1d6e0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c
parent:
  description: The resolved parent image version, or null.
  returned: always
  type: dict
  sample: {digest: "sha256:2ec5...", reference: "127.0.0.1:5000/immutable/base@sha256:2ec5..."}
parent_channel:
  description: The channel of the parent repository the parent was resolved from (O(parent_channel)), or null.
  returned: always
  type: str
  sample: production
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 12.4
packer_seconds:
  description: Seconds Packer ran.
  returned: when a bake happened
  type: float
  sample: 9.8
artifacts:
  description: Packer's artifacts, parsed from its machine-readable output.
  returned: when a bake happened
  type: list
  elements: dict
  sample: [{build: container, index: 0, id: "c54fe6d68d1a...", builder_id: packer.post-processor.docker-import, files: []}]
log_file:
  description: Packer's log of this bake.
  returned: when a bake happened
  type: str
  sample: /tmp/bake-web.log
sbom:
  description:
    - The SBOM stored beside the (first) baked version - its component count, counts by type, the SBOM's own digest,
      its tag, whether it was stored now, and the seconds reading the image and building it took.
    - When the catalog already holds the version but not its SBOM (a bake killed right after its push, or a version
      baked before SBOMs), the SBOM is read from the published image and stored now (without a seal check, since the
      version is published already); null when nothing was stored.
  returned: always
  type: dict
  sample: {components: 118, types: {deb: 118}, digest: "sha256:4919ab72...", tag: "sha256-9c1e5c5d....sbom",
           changed: true, seconds: 0.3}
signature:
  description:
    - The signature of the (first) version (key fingerprint, path in the lookaside), made now or found (C(changed)
      false), or null without O(signing). A version the catalog holds is signed too when it lacks that key's signature.
  returned: always
  type: dict
  sample: {fingerprint: 0A1B2C3D4E5F60718293A4B5C6D7E8F901234567, path: /var/lib/immutable-infra/sigstore/web@sha256=9c1e/signature-1,
           changed: true}
commands:
  description: The Packer commands that ran (or, in check mode, validated).
  returned: when a bake happens or would happen
  type: list
  elements: list
  sample: [["packer", "build", "-machine-readable", "."]]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.immutable.infra.plugins.module_utils import _sbom
from ansible_collections.immutable.infra.plugins.module_utils._bake import bake_recipe
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._evidence import EVIDENCE_ARGS


def main():
    argument_spec = dict(
        recipe=dict(type="str", required=True),
        name=dict(type="str"),
        parent=dict(type="str"),
        parent_channel=dict(type="str"),
        vm_parent=dict(type="str"),
        version=dict(type="str"),
        var_files=dict(type="list", elements="path", default=[]),
        variables=dict(type="dict", default={}),
        only=dict(type="list", elements="str", default=[]),
        force=dict(type="bool", default=False),
        log_file=dict(type="path"),
        log_dir=dict(type="path"),
        fingerprint_paths=dict(type="list", elements="path", default=[]),
        collections_paths=dict(type="list", elements="path"),
        collection_version=dict(type="str"),
        revision=dict(type="str"),
        timeout=dict(type="int", default=3600),
        packer_path=dict(type="path", default="packer"),
        aws=dict(type="dict", default={}, options=dict(
            region=dict(type="str"), endpoint_url=dict(type="str"), access_key=dict(type="str", no_log=True),
            secret_key=dict(type="str", no_log=True), session_token=dict(type="str", no_log=True),
            profile=dict(type="str"), validate_certs=dict(type="bool"))),
        ami_regions=dict(type="list", elements="str", default=[]),
        ami_communicator=dict(type="str", choices=["ssh", "none"], default="ssh"),
        **dict(EVIDENCE_ARGS, **REGISTRY_ARGS)
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    for library, present, error in (("python-debian", _sbom.HAS_DEBIAN, _sbom.DEBIAN_IMPORT_ERROR),
                                    ("cyclonedx-python-lib", _sbom.HAS_CYCLONEDX, _sbom.CYCLONEDX_IMPORT_ERROR)):
        if not present:
            module.fail_json(msg=missing_required_lib(library) + " (the SBOM written at bake)", exception=str(error))

    def bake():
        result = bake_recipe(module.params, check_mode=module.check_mode)
        for warning in result.pop("warnings", []):
            module.warn(warning)
        return result

    run_module(module, bake)


if __name__ == "__main__":
    main()
