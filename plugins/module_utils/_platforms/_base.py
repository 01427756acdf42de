# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform seam: where instances of a server group run.

Every policy above this package (converge a server group, route traffic,
retire old groups, the fleet inventory) talks to a platform only through
`Platform`. A new platform is one new file here, one branch in get_platform and
the shared conformance cases passing (PlatformConformance in
tests/unit/plugins/module_utils/test_conformance.py: subclass it with a fake
of the new platform); never an `if` in the policy.

The instance record, returned by list_instances / instance / create_instances:

  name           unique instance name (podman container, libvirt domain,
                 "<group>-<EC2 id without i->" on aws)
  id             the platform's own id of it
  app, stack, group, sequence, zone, instance_id
                 identity, read back from where the platform keeps it (podman
                 labels, libvirt domain metadata, EC2 tags): see _names.IDENTITY
  image, image_digest, image_version
                 the image version it was made from, pinned by digest
  port           the service port inside the instance
  host, host_port
                 where the service port is reached from the controller
  ports          {port inside: port reached on host} for every forwarded port
  endpoint       "http://host:host_port" or None while it has no address
  state          "running" when it is up; anything else is dead to the policy
  created        creation time as the platform reports it
  labels         the raw identity labels/tags/metadata

Instance names are "<group>-<suffix>" on every platform (the router and the
verify window find an instance's group from its name: _names.instance_group).

The inventory adds "user" (from users()) to a record before connection() reads it.

A create spec (one per new instance) has app, stack, group, sequence, image
(reference pinned by digest), image_digest, image_version, zone, port,
extra_ports (more ports to forward, e.g. a separate health port; image_test
adds 22 for SSH into a VM), env ({NAME: value} for the service) and
stop_timeout; zones (every zone of the group, so a platform that places instances
itself, an Auto Scaling group, spans them all) and amis ({region: AMI id} of an ami
image version). Optional: labels ({full label name: value}, more facts the
instance carries beside its identity, read back in the record's labels, e.g.
the channel it was released from or the owner of image_test's throwaway
instance), authorized_keys (OpenSSH public keys, a list or one
text) that a VM installs for root, starting sshd (libvirt: fw_cfg
opt/immutable/authorized_keys, as at bake time); only image_test sets it, for
its throwaway VM; a production instance never gets a key. Container platforms
ignore it (they are reached without SSH).
"""

from __future__ import annotations

# What each image format is baked from and which platforms run it: for the error
# that refuses an image of the wrong format, naming what to do instead.
IMAGE_FORMATS = {
    "container": {"source": "docker", "platforms": ("podman",)},
    "vm": {"source": "qemu", "platforms": ("libvirt",)},
    "ami": {"source": "amazon-ebs", "platforms": ("aws",)},
}


class Platform:
    """What every platform implements. Methods raise ImmutableInfraError naming the failure."""

    name = None
    # Seconds a new instance of this platform usually needs to answer: the default
    # health wait of a server group is at least this (a VM boots slower than a container).
    boot_seconds = 60
    # The image format its instances start from: "container" or "vm" (an image
    # version's `format` fact, from its infra.immutable.format label, absent = container).
    image_format = "container"
    # The get_platform options (platform_options) it accepts.
    OPTIONS = ()
    # The options a caller may fill in when the user did not give them (platform_from's
    # defaults, e.g. the registry's TLS setting as validate_certs); None: any of OPTIONS.
    CALLER_DEFAULTS = None
    # True when the platform replaces dead instances itself (an Auto Scaling group): the
    # policy then counts every member toward the instances wanted and never replaces one.
    replaces_dead = False

    def list_instances(self, app=None, stack=None, group=None):
        """Every instance (any state) matching the filters, in (app, stack, sequence, name) order."""
        raise NotImplementedError

    def instance(self, name):
        """The record of one instance; raises when it does not exist."""
        raise NotImplementedError

    def pull(self, reference):
        """Make sure the image version (pinned by digest) can start instances here."""
        raise NotImplementedError

    def create_instances(self, specs):
        """Start one instance per spec; return their records. An instance that failed
        to start is removed again before this raises: nothing is left behind."""
        raise NotImplementedError

    def destroy_instances(self, names, timeout=5):
        """Stop (gracefully for up to timeout seconds) and remove instances; return the names."""
        raise NotImplementedError

    def logs(self, name, lines=20):
        """The last lines an instance printed (console or service), '' when there are none."""
        raise NotImplementedError

    def address(self, instance, port):
        """(host, port) where the controller reaches the instance's `port`, or None."""
        host_port = (instance.get("ports") or {}).get(int(port))
        return (instance.get("host") or "127.0.0.1", int(host_port)) if host_port else None

    def users(self, names):
        """{instance name: the user its service runs as} when the platform can tell, else {}."""
        return {}

    def wait_ready(self, instances, health_check, timeout):
        """Wait until the instances are ready by the platform's own measure and return
        {name: status}; None (the default) leaves it to the policy, which probes each
        instance's health check over HTTP from the controller (server_group.wait_healthy).
        A platform whose instances the controller cannot reach (aws: private addresses)
        waits on its own health signal instead, and raises naming the instances not ready."""
        return None

    def remove_empty_group(self, group, check_mode=False):
        """Remove what is left of a group that has no instance (an Auto Scaling group scaled to 0,
        a launch template a crash left behind); True when something was (or would be) removed.
        Platforms whose groups are only their instances have nothing to remove."""
        return False

    def connection(self, instance):
        """Inventory host variables to reach the instance with Ansible (read-only checks), or {}.
        instance may carry "user" (from users())."""
        return {}
