# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet
short_description: The fleet of server groups as inventory, one host per instance
version_added: 0.1.0
description:
  - Reads every instance that belongs to a server group on the O(platform) through the platform code the release
    modules use, and makes each one a host named by its instance id (the container or domain name).
  - Connection host variables come from the platform. On C(podman) (one C(podman ps -a --format json) lists the
    fleet), hosts connect with P(containers.podman.podman#connection), so ad-hoc read-only checks run inside the
    instances. One C(podman container inspect) of the selected instances finds the user each container runs as; a
    non-root user becomes C(ansible_user), because the connection can only run modules as a non-root user it knows
    of. C(ansible_remote_tmp) is C(/tmp), because a sealed image's service user may have no home directory, and the
    private temporary directory Ansible makes there is removed after each task, so a check leaves no file behind.
  - On C(aws) (one C(describe_auto_scaling_groups) by the identity tags and one C(describe_instances) list the
    fleet), a host is named C(<group>-<EC2 id without i->); it connects over SSH to its private IP
    (C(ansible_host)), as C(ssh_user) of O(platform_options) (C(ansible_user)) when given. Run from inside the VPC
    (AWX there) or add a bastion with C(ansible_ssh_common_args). C(immutable_state) is C(running) when the instance
    is C(InService) and C(Healthy) in its Auto Scaling group, else its lifecycle state in lower case (C(pending),
    C(terminating), ...). The C(amazon.aws.aws_ec2) configuration C(playbooks/inventory/aws_ec2.aws_ec2.yml) makes
    the same groups without this collection's code (see C(docs/aws.md)).
  - "Host variables: C(immutable_app), C(immutable_stack), C(immutable_group), C(immutable_sequence) (int),
    C(immutable_image) (pinned by digest), C(immutable_image_digest), C(immutable_image_version), C(immutable_zone),
    C(immutable_instance_id), C(immutable_port) (the container port, int), C(immutable_endpoint)
    (C(http://127.0.0.1:<host port>), where the port is reached), C(immutable_state) (C(running), or the
    platform's state such as C(exited)), C(immutable_labels) (all the container's labels) and, when the router state
    is known, C(immutable_traffic) (C(enabled), C(disabled) or C(unrouted)) and C(immutable_traffic_weight)."
  - "Groups (names sanitised: anything but letters, digits and C(_) becomes C(_)): C(app_<app>),
    C(stack_<app>_<stack>), C(group_<group>) (for example C(group_web_prod_v003)), C(version_<app>_<image version>),
    C(zone_<zone>), C(state_<state>), and C(traffic_enabled), C(traffic_disabled), C(traffic_unrouted) when the
    router state is known."
  - The inventory source is a YAML file whose name ends in C(fleet.yml) or C(fleet.yaml).
author:
  - immutable.infra maintainers (@immutable-infra)
requirements:
  - the platform's tools on the controller (podman, or libvirt; boto3 for aws)
  - on C(podman), the containers.podman collection, for the connection the hosts use
extends_documentation_fragment:
  - immutable.infra.platform
  - immutable.infra.aws
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: The name of this plugin; marks the file as a fleet inventory source.
    type: str
    required: true
    choices: [immutable.infra.fleet]
  podman_path:
    description:
      - The podman executable that lists the containers; the same as O(platform_options) C(podman), which wins.
      - Hosts also connect with it (C(ansible_podman_executable)) when it is not the default.
    type: str
  filters:
    description:
      - Keep only the instances whose labels match every entry.
      - A key without a dot names an C(infra.immutable.*) label (C(app), C(stack), C(group), C(zone),
        C(image-version), ...); a key with a dot is a full label name.
      - A list value matches any of its items.
    type: dict
    default: {}
  router_state_file:
    description:
      - 'The traffic router''s state file: the project''s haproxy router keeps it as C(routes.json) in its state
        directory (C($IMMUTABLE_INFRA_STATE_DIR/router), else C(~/.local/state/immutable.infra/router)). Only
        C({"endpoints": {"<app>/<stack>": {"groups": {"<group>": <weight>}}}}) is read; other keys are ignored.'
      - When it is given and readable, instances of a group with weight above 0 are C(enabled), with weight 0
        C(disabled), and C(unrouted) when the router does not know their group.
      - A missing or unreadable file gives a warning and no traffic state; the inventory is still built.
      - Not cached, so traffic state is always current even with O(cache=true).
    type: path
notes:
  - With O(cache=true) the cached instance list (after O(filters)) is reused until O(cache_timeout); C(--flush-cache)
    reads the platform again.
  - A stopped podman instance keeps its published host port, so C(immutable_endpoint) is set for it too; it answers only
    while C(immutable_state) is C(running). Target C(state_running) for commands.
seealso:
  - plugin: containers.podman.podman
    plugin_type: connection
    description: How the hosts of this inventory are reached.
"""

EXAMPLES = r"""
# fleet.yml: every instance of the web app
plugin: immutable.infra.fleet
filters:
  app: web

# vm-fleet.yml: the VMs of the web app
plugin: immutable.infra.fleet
platform: libvirt
filters:
  app: web

# aws-fleet.yml: the web app's instances in the Auto Scaling groups of one region (credentials from the
# environment, a profile or an instance role), reached by SSH to their private addresses as admin
plugin: immutable.infra.fleet
platform: aws
platform_options:
  region: eu-west-1
  ssh_user: admin
filters:
  app: web

# prod-fleet.yml: the prod stack, traffic state from the router, extra groups
plugin: immutable.infra.fleet
filters:
  app: web
  stack: prod
router_state_file: ~/.local/state/immutable.infra/router/routes.json
keyed_groups:
  - key: immutable_labels['infra.immutable.recipe'] | default('none')
    prefix: recipe
groups:
  serving: immutable_state == 'running' and immutable_traffic == 'enabled'
compose:
  health_url: immutable_endpoint ~ '/healthz'

# Then, for example:
#   ansible-inventory -i fleet.yml --graph
#   ansible -i fleet.yml 'app_web:&state_running' -m ansible.builtin.command -a 'cat /opt/web/image.json'
"""

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.immutable.infra.plugins.module_utils._fleet import fleet, group_names, load_router_state, select
from ansible_collections.immutable.infra.plugins.module_utils._platforms._options import platform_from
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# What the cache keeps of each instance: all the grouping needs (ports by number would not survive JSON).
_UNCACHED = ("ports",)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "immutable.infra.fleet"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("fleet.yml", "fleet.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)

        try:
            platform = self._platform()
        except ImmutableInfraError as exc:
            raise AnsibleParserError("fleet inventory: %s" % exc.msg)
        instances = self._instances(platform, path, cache)
        weights = None
        if self.get_option("router_state_file"):
            weights, why_not = load_router_state(self.get_option("router_state_file"))
            if why_not:
                self.display.warning(why_not)

        data = fleet(instances, filters=self.get_option("filters"), weights=weights, connection=platform.connection)
        strict = self.get_option("strict")
        for name, hostvars in data["hosts"].items():
            self.inventory.add_host(name)
            for group in group_names(hostvars):
                self.inventory.add_group(group)
                self.inventory.add_host(name, group=group)
            # Labels are set by whoever starts a container: never templates.
            hostvars = wrap_var(hostvars)
            for key, value in hostvars.items():
                self.inventory.set_variable(name, key, value)
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)

    def _platform(self):
        options = dict(self.get_option("platform_options") or {})
        if self.get_option("podman_path"):
            options.setdefault("podman", self.get_option("podman_path"))
        return platform_from({"platform": self.get_option("platform"), "platform_options": options})

    def _instances(self, platform, path, cache):
        """The selected instances with their users, read by the platform code, or from the inventory cache."""
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        if use_cache and cache:
            try:
                return self._cache[cache_key]
            except KeyError:
                pass
        try:
            instances = select(platform.list_instances(), self.get_option("filters"))
            users = platform.users([i["name"] for i in instances])
        except ImmutableInfraError as exc:
            detail = (exc.stderr or "").strip()
            raise AnsibleParserError("fleet inventory: %s%s" % (exc.msg, ("\n" + detail) if detail else ""))
        instances = [dict({k: v for k, v in i.items() if k not in _UNCACHED}, user=users.get(i["name"], ""))
                     for i in instances]
        if use_cache:
            self._cache[cache_key] = instances
        return instances
