# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of the ELBv2 router (_elbv2): names, tags, and the routes document
rebuilt from what AWS describes. No boto3 here, so the unit tests feed it
canned describe output.

Where the routes document lives in AWS (nothing on the controller):
  endpoint        a listener of the ALB, tagged infra.immutable.endpoint=<app>/<stack>;
                  its port is the endpoint's port
  groups          one target group per server group (target_group_name(group)), tagged
                  infra.immutable.app/.stack/.group/.image; its weight is the one of the
                  listener's weighted forward action (0 when it is not in it)
  servers         the targets of those groups (instance ids, registered by the group's
                  Auto Scaling group), named "<group>-<id without i->" like the platform names them
  health          the listener's tag infra.immutable.health (the policy's spec, base64 JSON);
                  the target groups' checks are that spec within ELBv2's limits (tg_health)
  platform        the listener's tag infra.immutable.platform
  history         the listener's tags infra.immutable.history.0/.1 = "<time>:<group>=<weight>+... ..."
                  (the groups that carried traffic in each switch, the newest that fit in two tags),
                  and infra.immutable.images.0-3 = "<group>=<image reference> ..." for the groups
                  they name (a rollback recreates a destroyed group from it)
"""

from __future__ import annotations

import base64
import hashlib
import json

from ansible_collections.immutable.infra.plugins.module_utils._names import LABEL_PREFIX

TAG_ENDPOINT = LABEL_PREFIX + "endpoint"
TAG_PLATFORM = LABEL_PREFIX + "platform"
TAG_HEALTH = LABEL_PREFIX + "health"
TAG_CREATED = LABEL_PREFIX + "created-by"       # on listeners this collection created (it may delete them)
TAG_HISTORY = LABEL_PREFIX + "history."        # history.0, history.1: the switches, oldest first
TAG_IMAGE = LABEL_PREFIX + "images."           # images.0 ...: "<group>=<image reference> ..."
HISTORY_TAGS = 2
IMAGE_TAGS = 4
TAG_VALUE_MAX = 256
# Identity tags a target group copies from its Auto Scaling group (when there).
TG_IDENTITY = ("app", "stack", "group", "image", "image-digest", "image-version")


def target_group_name(group):
    """ELBv2 names target groups with at most 32 letters, digits and hyphens: the group's
    own name when it fits, else its first 23 characters and a hash of the whole name."""
    if len(group) <= 32:
        return group
    return "%s-%s" % (group[:23].rstrip("-"), hashlib.sha1(group.encode()).hexdigest()[:8])


def target_id(server_name, group):
    """web-prod-v001-0a1b2c -> i-0a1b2c (the platform names instances <group>-<EC2 id without i->)."""
    return "i-" + server_name[len(group) + 1:]


def server_name(group, target):
    return "%s-%s" % (group, target[2:] if target.startswith("i-") else target)


def tg_health(health):
    """create/modify_target_group arguments for the policy's health spec, within ELBv2's limits
    (interval 5-300 s, timeout 2-120 s and below the interval, thresholds 2-10)."""
    interval = min(300, max(5, -(-int(health.get("interval_ms", 5000)) // 1000)))
    timeout = min(interval - 1, 120, max(2, -(-int(health.get("timeout_ms", 2000)) // 1000)))
    return {"HealthCheckProtocol": "HTTP", "HealthCheckPath": health.get("path", "/healthz"),
            "Matcher": {"HttpCode": str(health.get("status", 200))}, "HealthCheckIntervalSeconds": interval,
            "HealthCheckTimeoutSeconds": timeout, "HealthyThresholdCount": min(10, max(2, int(health.get("rise", 2)))),
            "UnhealthyThresholdCount": min(10, max(2, int(health.get("fall", 2))))}


def health_differs(tg, health):
    want = tg_health(health)
    return any(tg.get(k) != v for k, v in want.items())


def forward_action(weights):
    """The listener's default action: a weighted forward to the target groups (arn: weight).
    Stickiness off, stated, so that describe gives back what was set."""
    return [{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": arn, "Weight": int(w)} for arn, w in sorted(weights.items())],
        "TargetGroupStickinessConfig": {"Enabled": False}}}]


def forward_weights(listener):
    """{target group arn: weight} of a listener's forward default action ({} for another action)."""
    out = {}
    for action in listener.get("DefaultActions") or []:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:
            out.update({g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups})
        elif action.get("TargetGroupArn"):
            out[action["TargetGroupArn"]] = 1
    return out


def _pack(items, prefix, tags):
    """Items (oldest first) as at most `tags` tag values of at most 256 characters, space-separated:
    {prefix0: "...", prefix1: "..."}, the newest items kept when they do not all fit."""
    values, current = [], []
    for item in reversed(items):
        if len(item) > TAG_VALUE_MAX:
            continue
        if current and len(" ".join([item] + current)) > TAG_VALUE_MAX:
            values.append(current)
            current = []
            if len(values) == tags:
                break
        current.insert(0, item)
    if current and len(values) < tags:
        values.append(current)
    return {"%s%d" % (prefix, n): " ".join(v) for n, v in enumerate(reversed(values))}


def _unpack(tags, prefix):
    return [item for k in sorted((k for k in tags if k.startswith(prefix)), key=lambda k: int(k[len(prefix):] or 0))
            for item in tags[k].split()]


def _encode_health(health):
    return base64.b64encode(json.dumps(health or {}, sort_keys=True, separators=(",", ":")).encode()).decode()


def _decode_health(value):
    try:
        return json.loads(base64.b64decode(value or "e30=").decode())
    except ValueError:
        return {}


def listener_tags(key, ep, created=False):
    """The listener's tags that keep an endpoint's routes document (see the module's doc). At most
    10 tags (moto's quota, and ELBv2's before 2023), and only the characters ELBv2 allows in tag
    values (letters, digits, spaces and _ . : / = + - @): the health spec is base64 JSON, a switch
    is "<time>:<group>=<weight>+..." with the groups that carried traffic."""
    tags = {TAG_ENDPOINT: key, TAG_HEALTH: _encode_health(ep.get("health"))}
    if ep.get("platform"):
        tags[TAG_PLATFORM] = ep["platform"]
    if created:
        tags[TAG_CREATED] = "immutable.infra"
    history = list(ep.get("history") or [])
    tags.update(_pack(["%d:%s" % (int(float(e.get("time", 0))), "+".join(
        "%s=%d" % (g, w) for g, w in sorted(e.get("groups", {}).items()) if w > 0)) for e in history],
        TAG_HISTORY, HISTORY_TAGS))
    images = {}
    for entry in history:
        for g, image in (entry.get("images") or {}).items():
            images.pop(g, None)
            images[g] = image               # newest last
    tags.update(_pack(["%s=%s" % (g, image) for g, image in images.items() if image and " " not in image],
                      TAG_IMAGE, IMAGE_TAGS))
    return tags


def history_from(tags):
    """The history entries kept in a listener's tags (oldest first); a group's image is given to
    every entry that names the group."""
    images = dict(item.split("=", 1) for item in _unpack(tags, TAG_IMAGE) if "=" in item)
    out = []
    for item in _unpack(tags, TAG_HISTORY):
        when, _sep, pairs = item.partition(":")
        groups = {}
        for pair in filter(None, pairs.split("+")):
            g, _eq, w = pair.rpartition("=")
            groups[g] = int(w)
        out.append({"time": float(when) if when.isdigit() else 0.0, "groups": groups,
                    "images": {g: images[g] for g in groups if g in images}})
    return out


def endpoint_from(listener, tags, target_groups, address):
    """The routes document's endpoint rebuilt from AWS:
    listener     describe_listeners item (Port, DefaultActions)
    tags         the listener's tags {key: value}
    target_groups [{"group", "TargetGroupArn", "Port", "targets": [instance ids that run]}]
    address      where the endpoint is reached (the ALB's DNS name)."""
    weights = forward_weights(listener)
    groups, servers = {}, {}
    for tg in target_groups:
        g = tg["group"]
        groups[g] = weights.get(tg["TargetGroupArn"], 0)
        for t in tg["targets"]:
            servers[server_name(g, t["id"])] = {"group": g, "address": t["address"], "port": int(t["port"]),
                                                "weight": groups[g]}
    try:
        health = _decode_health(tags.get(TAG_HEALTH))
    except (TypeError, ValueError):
        health = {}
    ep = {"port": int(listener["Port"]), "address": address, "groups": groups, "servers": servers, "health": health,
          "history": history_from(tags)}
    if tags.get(TAG_PLATFORM):
        ep["platform"] = tags[TAG_PLATFORM]
    return ep
