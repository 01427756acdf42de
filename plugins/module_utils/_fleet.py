# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet as inventory data: instances read from podman labels, grouped.

Pure functions over the output of `podman ps -a --format json` (plus the
configured user of the selected instances, from one batched `podman container
inspect`), so the inventory plugin stays thin and the grouping is testable
with a captured fixture. Traffic state is not in the labels; it comes from
the router's state file (group -> weight) when there is one.
"""

from __future__ import annotations

import json
import re

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

LABEL_PREFIX = "infra.immutable."
# Every instance container carries these (set by the platform code).
LABELS = ("app", "stack", "group", "sequence", "image", "image-digest", "image-version",
          "zone", "instance-id", "port")
# Label -> hostvar; sequence and port become integers.
_HOSTVARS = {
    "app": "immutable_app",
    "stack": "immutable_stack",
    "group": "immutable_group",
    "sequence": "immutable_sequence",
    "image": "immutable_image",
    "image-digest": "immutable_image_digest",
    "image-version": "immutable_image_version",
    "zone": "immutable_zone",
    "port": "immutable_port",
}
_INT_LABELS = ("sequence", "port")
# Published on every interface: reach it on loopback.
_ANY_ADDRESS = ("", "0.0.0.0", "::")
_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")

TRAFFIC_ENABLED = "enabled"
TRAFFIC_DISABLED = "disabled"
TRAFFIC_UNROUTED = "unrouted"


def ps_argv(podman="podman"):
    """The one podman call the fleet is read with: every container that belongs to a server group."""
    return [podman, "ps", "-a", "--format", "json", "--filter", "label=%sgroup" % LABEL_PREFIX]


def parse_ps(stdout):
    """The containers from `podman ps --format json` output (podman prints nothing or null for none)."""
    text = (stdout or "").strip()
    if not text:
        return []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ImmutableInfraError("podman ps printed invalid JSON: %s" % exc, stdout=stdout)
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ImmutableInfraError("podman ps printed %s, expected a list of containers" % type(doc).__name__,
                                  stdout=stdout)
    return [c for c in doc if isinstance(c, dict)]


def list_containers(podman="podman", timeout=120):
    """Every server-group container on this host, as podman reports them."""
    _rc, out, _err = run(ps_argv(podman), timeout=timeout, what="podman ps")
    return parse_ps(out)


def inspect_argv(podman, names):
    return [podman, "container", "inspect", "--format", "json"] + list(names)


def parse_users(stdout):
    """{container name: configured user ('' for the image default)} from `podman container inspect --format json`."""
    try:
        doc = json.loads(stdout or "[]")
    except ValueError:
        return {}
    users = {}
    for c in doc if isinstance(doc, list) else []:
        if isinstance(c, dict) and c.get("Name"):
            users[c["Name"]] = str((c.get("Config") or {}).get("User") or "")
    return users


def container_users(names, podman="podman", timeout=120):
    """The configured user of each named container, in one call.

    A container removed since `podman ps` makes podman exit non-zero but
    still print the others, so only a call that yields nothing is an error.
    """
    if not names:
        return {}
    rc, out, err = run(inspect_argv(podman, names), check=False, timeout=timeout, what="podman container inspect")
    users = parse_users(out)
    if rc != 0 and not users:
        detail = (err or out).strip().splitlines()
        raise ImmutableInfraError("podman container inspect failed (rc=%d): %s" % (rc, detail[-1] if detail else "no output"),
                                  cmd=inspect_argv(podman, names), rc=rc, stdout=out, stderr=err)
    return users


def is_root(user):
    return (user or "").split(":")[0] in ("", "root", "0")


def connection_vars(name, user=None):
    """How Ansible reaches an instance: the podman connection, as the container's own user.

    containers.podman.podman copies module files in as root; a non-root
    container user can only run them when the connection knows the user (it
    then chowns them). Temporary files go in a private directory under /tmp,
    removed after each task, so a check leaves no file behind in the
    instance (a sealed image's service user may have no home either).
    """
    hostvars = {"ansible_connection": "containers.podman.podman", "ansible_host": name, "ansible_remote_tmp": "/tmp"}
    if not is_root(user):
        hostvars["ansible_user"] = user
    return hostvars


def sanitize(name):
    """A group name Ansible accepts: anything but letters, digits and _ becomes _."""
    return _UNSAFE_GROUP_CHARS.sub("_", str(name))


def container_name(container):
    """The container's name (podman 4 lists Names; older formats give a string)."""
    names = container.get("Names")
    if isinstance(names, list):
        names = names[0] if names else None
    return names or container.get("Name") or None


def published_port(ports, container_port, protocol="tcp"):
    """(host address, host port) that publishes container_port/protocol, or None.

    podman 4.3 lists mappings as {host_ip, container_port, host_port, range,
    protocol}; a range maps container_port+i to host_port+i.
    """
    try:
        wanted = int(container_port)
    except (TypeError, ValueError):
        return None
    for mapping in ports or []:
        if not isinstance(mapping, dict) or (mapping.get("protocol") or "tcp") != protocol:
            continue
        try:
            first = int(mapping["container_port"])
            host_first = int(mapping["host_port"])
            count = int(mapping.get("range") or 1)
        except (KeyError, TypeError, ValueError):
            continue
        if first <= wanted < first + count and host_first:
            return (mapping.get("host_ip") or "", host_first + wanted - first)
    return None


def endpoint(ports, container_port):
    """http://ADDRESS:PORT where the instance's service is published, or None."""
    found = published_port(ports, container_port)
    if not found:
        return None
    address, port = found
    if address in _ANY_ADDRESS:
        address = "127.0.0.1"
    elif ":" in address:
        address = "[%s]" % address
    return "http://%s:%d" % (address, port)


def _int_or_raw(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def instance(container):
    """(name, hostvars) of one instance container, or None when it is not one (no group label or name)."""
    labels = container.get("Labels") or {}
    name = container_name(container)
    if not name or not labels.get(LABEL_PREFIX + "group"):
        return None
    hostvars = connection_vars(name, container.get("User"))
    hostvars.update({
        "immutable_instance_id": labels.get(LABEL_PREFIX + "instance-id") or name,
        "immutable_state": str(container.get("State") or "unknown").lower(),
        "immutable_labels": dict(labels),
    })
    for label, var in _HOSTVARS.items():
        value = labels.get(LABEL_PREFIX + label)
        if value in (None, ""):
            continue
        hostvars[var] = _int_or_raw(value) if label in _INT_LABELS else value
    url = endpoint(container.get("Ports"), hostvars.get("immutable_port"))
    if url:
        hostvars["immutable_endpoint"] = url
    return name, hostvars


def _label_key(key):
    key = str(key)
    return key if "." in key else LABEL_PREFIX + key


def matches(labels, filters):
    """True when labels satisfy every filter: {app: web} or {"infra.immutable.zone": [zone-a, zone-b]}.

    Short keys name infra.immutable.* labels; a list value matches any of its items.
    """
    labels = labels or {}
    for key, wanted in (filters or {}).items():
        have = labels.get(_label_key(key))
        if have is None:
            return False
        choices = wanted if isinstance(wanted, (list, tuple)) else [wanted]
        if str(have) not in [str(c) for c in choices]:
            return False
    return True


def parse_router_state(doc):
    """{group: weight} from the router's state document.

    The document is {"endpoints": {"<app>/<stack>": {"groups": {"<group>": weight}}}};
    entries that do not fit are skipped, so a partly written file still helps.
    """
    weights = {}
    endpoints = doc.get("endpoints") if isinstance(doc, dict) else None
    if not isinstance(endpoints, dict):
        raise ValueError("no 'endpoints' mapping")
    for ep in endpoints.values():
        groups = ep.get("groups") if isinstance(ep, dict) else None
        if not isinstance(groups, dict):
            continue
        for group, weight in groups.items():
            if isinstance(weight, bool):
                continue
            try:
                weight = int(weight)
            except (TypeError, ValueError):
                continue
            weights[str(group)] = max(weight, weights.get(str(group), 0))
    return weights


def load_router_state(path):
    """({group: weight}, None) from the router's state file, or (None, why not) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return parse_router_state(doc), None
    except (OSError, ValueError) as exc:
        return None, "cannot read the router state file %s (%s): instances get no traffic state" % (path, exc)


def traffic(group, weights):
    """enabled (weight > 0), disabled (weight 0) or unrouted (not in the router)."""
    if group not in weights:
        return TRAFFIC_UNROUTED
    return TRAFFIC_ENABLED if weights[group] > 0 else TRAFFIC_DISABLED


def group_names(hostvars):
    """The groups an instance belongs to, from its hostvars (sanitised, in a fixed order)."""
    app = hostvars.get("immutable_app")
    names = []
    if app is not None:
        names.append("app_%s" % app)
        if hostvars.get("immutable_stack") is not None:
            names.append("stack_%s_%s" % (app, hostvars["immutable_stack"]))
    if hostvars.get("immutable_group") is not None:
        names.append("group_%s" % hostvars["immutable_group"])
    if app is not None and hostvars.get("immutable_image_version") is not None:
        names.append("version_%s_%s" % (app, hostvars["immutable_image_version"]))
    if hostvars.get("immutable_zone") is not None:
        names.append("zone_%s" % hostvars["immutable_zone"])
    if hostvars.get("immutable_state") is not None:
        names.append("state_%s" % hostvars["immutable_state"])
    if hostvars.get("immutable_traffic") is not None:
        names.append("traffic_%s" % hostvars["immutable_traffic"])
    return [sanitize(n) for n in names]


def _order(item):
    name, hv = item
    seq = hv.get("immutable_sequence")
    return (str(hv.get("immutable_app", "")), str(hv.get("immutable_stack", "")),
            seq if isinstance(seq, int) else -1, name)


def select(containers, filters=None):
    """The containers that are server-group instances matching filters."""
    return [c for c in containers
            if instance(c) is not None and matches(c.get("Labels"), filters)]


def fleet(containers, filters=None, weights=None):
    """The inventory: {"hosts": {name: hostvars}, "groups": {group: [names]}}.

    A container's "User" (from container_users) makes the connection use it.
    weights ({group: weight}, from the router) adds immutable_traffic and
    immutable_traffic_weight; None means traffic state is unknown.
    """
    found = []
    for container in containers:
        inst = instance(container)
        if inst is None or not matches(inst[1]["immutable_labels"], filters):
            continue
        name, hostvars = inst
        if weights is not None and "immutable_group" in hostvars:
            group = hostvars["immutable_group"]
            hostvars["immutable_traffic"] = traffic(group, weights)
            if group in weights:
                hostvars["immutable_traffic_weight"] = weights[group]
        found.append((name, hostvars))
    hosts, groups = {}, {}
    for name, hostvars in sorted(found, key=_order):
        hosts[name] = hostvars
        for group in group_names(hostvars):
            groups.setdefault(group, []).append(name)
    return {"hosts": hosts, "groups": groups}
