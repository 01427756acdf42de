# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet as inventory data: instances (as the platform code reads them)
grouped into Ansible groups.

Pure functions over the platform's instance records (`Platform.list_instances`),
with the connection host variables the platform gives (`Platform.connection`),
so the inventory plugin stays thin, knows no platform, and the grouping is
testable with captured platform output. Traffic state is not in the labels; it
comes from the router's state file (group -> weight) when there is one.
"""

from __future__ import annotations

import json
import re

from ansible_collections.immutable.infra.plugins.module_utils._names import label

# Instance field -> hostvar (identity fields as the platform parses them).
_HOSTVARS = {
    "app": "immutable_app",
    "stack": "immutable_stack",
    "group": "immutable_group",
    "sequence": "immutable_sequence",
    "image": "immutable_image",
    "image_digest": "immutable_image_digest",
    "image_version": "immutable_image_version",
    "zone": "immutable_zone",
    "port": "immutable_port",
    "endpoint": "immutable_endpoint",
}
_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")

TRAFFIC_ENABLED = "enabled"
TRAFFIC_DISABLED = "disabled"
TRAFFIC_UNROUTED = "unrouted"


def sanitize(name):
    """A group name Ansible accepts: anything but letters, digits and _ becomes _."""
    return _UNSAFE_GROUP_CHARS.sub("_", str(name))


def instance(inst, connection=None):
    """(name, hostvars) of one instance, or None when it is not one (no group label or name).

    connection(inst) gives the host variables that reach it (Platform.connection).
    Identity fields the instance does not carry (0 for sequence and port) give no hostvar.
    """
    name = inst.get("name")
    if not name or not inst.get("group"):
        return None
    hv = dict(connection(inst) if connection else {})
    hv.update({
        "immutable_instance_id": inst.get("instance_id") or name,
        "immutable_state": str(inst.get("state") or "unknown").lower(),
        "immutable_labels": dict(inst.get("labels") or {}),
    })
    for key, var in _HOSTVARS.items():
        if inst.get(key) not in (None, "", 0):
            hv[var] = inst[key]
    return name, hv


def matches(labels, filters):
    """True when labels satisfy every filter: {app: web} or {"infra.immutable.zone": [zone-a, zone-b]}.

    Short keys name infra.immutable.* labels; a list value matches any of its items.
    """
    labels = labels or {}
    for key, wanted in (filters or {}).items():
        have = labels.get(label(key))
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


def select(instances, filters=None):
    """The instances that are server-group instances matching filters."""
    return [i for i in instances if i.get("name") and i.get("group") and matches(i.get("labels"), filters)]


def fleet(instances, filters=None, weights=None, connection=None):
    """The inventory: {"hosts": {name: hostvars}, "groups": {group: [names]}}.

    connection(instance) gives each host's connection variables (Platform.connection).
    weights ({group: weight}, from the router) adds immutable_traffic and
    immutable_traffic_weight; None means traffic state is unknown.
    """
    found = []
    for inst in select(instances, filters):
        name, hv = instance(inst, connection)
        if weights is not None:
            group = hv["immutable_group"]
            hv["immutable_traffic"] = traffic(group, weights)
            if group in weights:
                hv["immutable_traffic_weight"] = weights[group]
        found.append((name, hv))
    hosts, groups = {}, {}
    for name, hv in sorted(found, key=_order):
        hosts[name] = hv
        for group in group_names(hv):
            groups.setdefault(group, []).append(name)
    return {"hosts": hosts, "groups": groups}
