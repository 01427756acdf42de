#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: server_group
short_description: Create or remove a server group of identical instances of one image version
version_added: 0.1.0
description:
  - A server group is O(count) identical instances of one image version, named C(<app>-<stack>-vNNN), on the
    O(platform). On C(podman) an instance is a container started from the image pinned by digest, labelled
    with its identity, its service port published on C(127.0.0.1) only; on C(libvirt) it is a VM booted from an
    overlay of the VM image, its identity in the domain's metadata, its service port forwarded to C(127.0.0.1); on
    C(aws) the group is an EC2 Auto Scaling group of the same name, from a launch template pinned to the version's
    AMI, tagged with the identity.
  - A new image makes the next group. The same image again returns the group that already runs it,
    unchanged when all its instances are running.
  - Instances are never changed in place. Dead instances are replaced, surplus ones removed. On C(aws) the Auto
    Scaling group replaces dead instances itself; the task sets its desired capacity and terminates surplus
    instances, lowering it.
  - The task waits until every instance answered its health check O(health_check.healthy_threshold)
    times in a row. On C(aws) it waits until the Auto Scaling group has O(count) instances C(InService) and
    C(Healthy) instead (the controller does not reach private addresses); O(health_check) is then the target
    group's business (see M(immutable.infra.traffic)).
  - A revoked image version (see M(immutable.infra.image_revoke)) is refused before anything starts, naming the
    version, the reason, who revoked it and when - also when a group already runs it. Removing a group never is.
  - With O(channel), O(image) names the repository and the channel chooses the version (resolved by digest in the
    registry); a channel pointing at a revoked version is refused, naming the revocation. The instances are labelled
    C(infra.immutable.channel) and the group reports the channel and the digest.
  - With O(signature_policy), the version's GPG signature (see M(immutable.infra.image_sign)) is verified before
    anything starts, on every platform, also when a group already runs it; an unsigned version, a tampered
    signature, a signature made for another version or repository, or one by a key the policy does not trust is
    refused, naming the image, the digest and why. Removing a group never is.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.server_group
  - immutable.infra.health_check
  - immutable.infra.platform
  - immutable.infra.aws
  - immutable.infra.registry
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  image:
    description:
      - The image version, as in the catalog - C(web) (newest version), C(web:2), or a full reference
        pinned by digest C(127.0.0.1:5000/web@sha256:...). Resolved to a digest in the registry.
      - Required to create a group.
      - With O(channel), the repository only (C(web) or C(127.0.0.1:5000/web)).
    type: str
  channel:
    description:
      - Release the version this channel of the O(image) repository points at (for example C(production)), as
        moved by M(immutable.infra.image_channel). Resolved to a digest when the task runs; the same target again
        returns the group that already runs it, unchanged.
    type: str
  group:
    description: An existing group by name, for example to remove it or to repair its instance count.
    type: str
  count:
    description: Number of instances.
    type: int
    default: 1
  zones:
    description: Zones to spread the instances over, round-robin.
    type: list
    elements: str
    default: [zone-a]
  port:
    description:
      - The port the service listens on inside the instance. It is recorded on every instance, reached on
        C(127.0.0.1), and it is the default port of the health check.
      - Defaults to the port the image declares - its C(infra.immutable.port) label, else its one C(EXPOSE)d TCP
        port (read from the registry without pulling). An image exposing several ports and no label needs O(port).
        An image declaring none runs on C(8080) with a warning.
      - An existing group keeps the port it runs; a different O(port) is ignored with a warning.
    type: int
  env:
    description: Extra environment of every instance. C(INSTANCE_ID) and C(ZONE) are always set.
    type: dict
    default: {}
  wait:
    description: Wait until the group is healthy.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for health.
      - Defaults to the time an instance of the O(platform) usually needs to boot (C(60) on C(podman); more on
        C(libvirt), where a VM boots).
    type: int
  stop_timeout:
    description: Seconds an instance gets to stop before it is killed.
    type: int
    default: 5
  signature_policy:
    description:
      - Verify the version's signature before deploying it. The version must carry at least one signature, in the
        lookaside directory, of its manifest digest for its repository, made by one of O(signature_policy.keys).
      - Without this option, the policy in the JSON file named by the environment variable
        C(IMMUTABLE_INFRA_SIGNATURE_POLICY) (same fields) applies; without either, nothing is verified.
        O(ignore:signature_policy) can also be set once for a whole play with C(module_defaults).
    type: dict
    suboptions:
      keys:
        description:
          - The trusted public keys - paths of key files (armored or binary, as C(gpg --export) writes them) or
            armored key text.
        type: list
        elements: str
        required: true
      lookaside:
        description:
          - The signatures' directory (C(<lookaside>/<repository>@sha256=<hex>/signature-<n>), the layout podman and
            skopeo read). Defaults to C(sigstore) in the project state directory, where
            M(immutable.infra.image_bake) and M(immutable.infra.image_sign) store them.
        type: path
      require:
        description:
          - C(true) refuses a version that fails verification. C(false) only warns (to roll signing out).
        type: bool
        default: true
  state:
    description: C(present) or C(absent).
    type: str
    default: present
    choices: [present, absent]
seealso:
  - module: immutable.infra.server_group_info
  - module: immutable.infra.traffic
"""

EXAMPLES = r"""
- name: Run two instances of web version 2 for the prod stack
  immutable.infra.server_group:
    app: web
    stack: prod
    image: web:2
    count: 2
    zones: [zone-a, zone-b]
    health_check:
      path: /healthz
      interval: 0.5
  register: new_group

- name: Run only versions signed by the release key
  immutable.infra.server_group:
    app: web
    stack: prod
    image: web:3
    signature_policy:
      keys: [/etc/immutable-infra/release-key.pub]

- name: Remove an old group
  immutable.infra.server_group:
    app: web
    stack: prod
    group: web-prod-v001
    state: absent
"""

RETURN = r"""
group:
  description:
    - The server group after the task - its name, identity, image (pinned by digest, with C(image_digest) and
      C(image_version)), C(channel) (the channel it was released from, null when released by version) and instances.
  returned: always
  type: dict
  sample:
    name: web-prod-v002
    app: web
    stack: prod
    sequence: 2
    image: 127.0.0.1:5000/web@sha256:ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d
    image_digest: sha256:ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d
    image_version: "2"
    channel: production
    instances:
      - {name: web-prod-v002-1a2b3c, zone: zone-a, state: running, endpoint: "http://127.0.0.1:40123",
         host_port: 40123, instance_id: web-prod-v002-1a2b3c}
created:
  description: Instances started by this task.
  returned: always
  type: list
  elements: str
  sample: [web-prod-v002-1a2b3c]
replaced:
  description: Dead instances that were removed and replaced.
  returned: always
  type: list
  elements: str
  sample: []
removed:
  description: Instances removed (surplus, or the whole group with O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: []
groups:
  description: Names of all the app/stack's server groups after the task, oldest first.
  returned: always
  type: list
  elements: str
  sample: [web-prod-v001, web-prod-v002]
port:
  description: The service port of the group's instances.
  returned: when O(state=present)
  type: int
  sample: 8080
port_source:
  description:
    - Where the port came from - C(group) (the existing group's), C(option) (O(port)), C(label) (the image's
      C(infra.immutable.port) label), C(expose) (the image's one C(EXPOSE)) or C(default) (nothing declared, so C(8080)).
  returned: when O(state=present)
  type: str
  sample: expose
signature:
  description:
    - The verification of the version's signature - the signer's C(fingerprint), the signed C(identity), the
      signature C(path), the C(digest) and the C(trusted) fingerprints. With C(require=false) and a failed
      verification, C(verified=false) and the C(reasons).
  returned: when a signature policy applies and O(state=present)
  type: dict
  sample:
    verified: true
    fingerprint: BAE986A012B3FA5FB30835F0FB95E29AA651D11F
    identity: 127.0.0.1:5000/web:2
    path: /root/.local/state/immutable.infra/sigstore/web@sha256=ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d/signature-1
    digest: sha256:ca098dc5767b143ca583b8685652454da52fbce6228768020849bc8cba14db3d
    trusted: [BAE986A012B3FA5FB30835F0FB95E29AA651D11F]
health:
  description: The last health answer of each instance.
  returned: when the task waited for health
  type: dict
  sample: {web-prod-v002-1a2b3c: 200}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._aws import secrets_of
from ansible_collections.immutable.infra.plugins.module_utils._catalog import Catalog
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._platforms._options import PLATFORM_ARGS, platform_from
from ansible_collections.immutable.infra.plugins.module_utils._revocation import usable_image
from ansible_collections.immutable.infra.plugins.module_utils._server_group import HEALTH_OPTIONS, converge
from ansible_collections.immutable.infra.plugins.module_utils._signing import POLICY_OPTIONS, image_verifier


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            stack=dict(type="str", required=True),
            image=dict(type="str"),
            channel=dict(type="str"),
            group=dict(type="str"),
            count=dict(type="int", default=1),
            zones=dict(type="list", elements="str", default=["zone-a"]),
            port=dict(type="int"),
            env=dict(type="dict", default={}),
            health_check=dict(type="dict", default={}, options=HEALTH_OPTIONS),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int"),
            stop_timeout=dict(type="int", default=5),
            signature_policy=dict(type="dict", options=POLICY_OPTIONS),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            **dict(REGISTRY_ARGS, **PLATFORM_ARGS)
        ),
        required_one_of=[("image", "group")],
        required_by={"channel": "image"},
        supports_check_mode=True,
    )
    p = module.params
    module.no_log_values.update(secrets_of(p["platform_options"]))
    catalog = Catalog(p["registry"], p["validate_certs"])

    def lifecycle_for(registry):
        return Lifecycle(registry, p["validate_certs"] if registry == p["registry"] else None)

    def group():
        platform = platform_from(p, validate_certs=catalog.validate_certs)
        resolve = usable_image(catalog.resolve, lifecycle_for, p["registry"], p["channel"], p["state"] == "present",
                               "cannot start instances of")
        verify = image_verifier(catalog.client, p["signature_policy"]) if p["state"] == "present" else None
        return converge(platform, resolve, p, module.check_mode, declared_port=catalog.service_port,
                        verify_image=verify)

    run_module(module, group)


if __name__ == "__main__":
    main()
