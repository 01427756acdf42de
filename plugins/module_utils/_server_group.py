# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server groups: N identical instances of one image version, named
<app>-<stack>-vNNN. A new image makes a new group; the same image returns
the group it already has. Instances are never changed: dead ones are
replaced, surplus ones removed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import LABEL_CHANNEL
from ansible_collections.immutable.infra.plugins.module_utils._names import check_name, group_name
from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import IMAGE_FORMATS
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._service import http_status

# The health_check option of server_group, defined once: the module's argument_spec uses it as is.
HEALTH_OPTIONS = dict(
    path=dict(type="str", default="/healthz"),
    port=dict(type="int"),
    status=dict(type="int", default=200),
    interval=dict(type="float", default=1.0),
    healthy_threshold=dict(type="int", default=2),
    timeout=dict(type="float", default=2.0),
)
HEALTH_DEFAULTS = {key: spec.get("default") for key, spec in HEALTH_OPTIONS.items()}


def health_spec(given, service_port):
    """The health check with defaults filled in; raises naming the bad field."""
    hc = dict(HEALTH_DEFAULTS)
    unknown = set(given or {}) - set(HEALTH_DEFAULTS)
    if unknown:
        raise ImmutableInfraError("bad health_check: unknown field(s) %s (known: %s)"
                                  % (", ".join(sorted(unknown)), ", ".join(sorted(HEALTH_DEFAULTS))))
    hc.update({k: v for k, v in (given or {}).items() if v is not None})
    if hc["port"] is None:
        hc["port"] = service_port
    problems = []
    if not isinstance(hc["path"], str) or not hc["path"].startswith("/"):
        problems.append("path must start with '/' (got %r)" % (hc["path"],))
    for key, lo, hi, kind in (("port", 1, 65535, int), ("status", 100, 599, int),
                              ("healthy_threshold", 1, 100, int), ("interval", 0.05, 300, float),
                              ("timeout", 0.05, 300, float)):
        try:
            value = kind(hc[key])
        except (TypeError, ValueError):
            problems.append("%s must be a number (got %r)" % (key, hc[key]))
            continue
        if not lo <= value <= hi:
            problems.append("%s must be between %s and %s (got %r)" % (key, lo, hi, hc[key]))
        hc[key] = value
    if problems:
        raise ImmutableInfraError("bad health_check: " + "; ".join(problems))
    return hc


def spread(zones, count, existing=()):
    """Zones for new instances: round-robin, filling the emptiest zone first."""
    load = {z: 0 for z in zones}
    for z in existing:
        if z in load:
            load[z] += 1
    out = []
    for _i in range(count):
        zone = min(zones, key=lambda z: (load[z], zones.index(z)))
        load[zone] += 1
        out.append(zone)
    return out


def health_url(platform, instance, hc):
    """The health check's URL of an instance, where the platform says its port is reached (None: not yet)."""
    where = platform.address(instance, hc["port"])
    if not where:
        return None
    host, port = where
    return "http://%s:%d%s" % ("[%s]" % host if ":" in host else host, int(port), hc["path"])


def check_format(platform, image, name=None):
    """Refuse an image version the platform cannot run (its `format`, absent = container), naming what to do."""
    fmt = image.get("format") or "container"
    wanted = getattr(platform, "image_format", "container")
    if fmt == wanted:
        return
    source = IMAGE_FORMATS.get(wanted, {}).get("source")
    others = IMAGE_FORMATS.get(fmt, {}).get("platforms", ())
    hints = (["bake the recipe's %s source" % source] if source else []) + ["use platform %s" % p for p in others]
    raise ImmutableInfraError("image %s is a %s image; the %s platform runs %s images%s" % (
        name or image.get("reference"), fmt, platform.name, wanted, " (%s)" % ", or ".join(hints) if hints else ""))


def wait_healthy(platform, instances, hc, wait_timeout, quick=0.05):
    """Wait until every instance answered the expected status healthy_threshold
    times in a row, one interval apart. An instance that does not answer at all
    yet (its service is still starting) is probed again every `quick` seconds,
    so a group counts from the moment it listens, not from the next interval.
    Fails fast when an instance exits; names each unhealthy one."""
    streak = {i["name"]: 0 for i in instances}
    last = {i["name"]: None for i in instances}
    due = {i["name"]: 0.0 for i in instances}
    deadline = time.monotonic() + wait_timeout
    next_dead_check = time.monotonic() + hc["interval"]
    pending = list(instances)
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(instances)))) as pool:
        while pending:
            batch = [i for i in pending if due[i["name"]] <= time.monotonic()]
            urls = [health_url(platform, i, hc) for i in batch]
            results = list(pool.map(lambda url: http_status(url, hc["timeout"]) if url else None, urls))
            now = time.monotonic()
            for inst, status in zip(batch, results):
                last[inst["name"]] = status
                streak[inst["name"]] = streak[inst["name"]] + 1 if status == hc["status"] else 0
                due[inst["name"]] = now + (hc["interval"] if status is not None else min(quick, hc["interval"]))
            pending = [i for i in pending if streak[i["name"]] < hc["healthy_threshold"]]
            if not pending:
                break
            if now > deadline:
                raise unhealthy_error(platform, pending, last, hc, "within %ss" % wait_timeout)
            if now >= next_dead_check:      # a platform look-up per silent instance: once an interval
                dead = [i for i in pending if last[i["name"]] is None and not _running(platform, i)]
                if dead:
                    raise unhealthy_error(platform, dead, last, hc, "(it stopped running)")
                next_dead_check = now + hc["interval"]
            time.sleep(max(0.0, min(due[i["name"]] for i in pending) - time.monotonic()))
    return {i["name"]: last[i["name"]] for i in instances}


def _running(platform, instance):
    try:
        return platform.instance(instance["name"])["state"] == "running"
    except ImmutableInfraError:
        return False


def unhealthy_error(platform, instances, last, hc, when):
    parts = []
    for i in instances:
        logs = platform.logs(i["name"], 5).replace("\n", " | ")
        parts.append("%s (last answer: %s%s)" % (i["name"], last[i["name"]] or "none",
                                                 "; logs: " + logs if logs else ""))
    return ImmutableInfraError("instances not healthy %s - expected HTTP %d on port %d%s: %s"
                               % (when, hc["status"], hc["port"], hc["path"], ", ".join(parts)),
                               unhealthy=[i["name"] for i in instances])


def groups_of(instances):
    """{group name: [instances]} in sequence order."""
    out = {}
    for inst in sorted(instances, key=lambda i: (i["sequence"], i["name"])):
        out.setdefault(inst["group"], []).append(inst)
    return out


def summary(name, instances, channel=None):
    """A group as the module returns it. Its channel is the one its instances were labelled with
    (released by channel), else `channel` (what this task resolved to the digest the group runs)."""
    first = instances[0] if instances else {}
    return {
        "name": name,
        "app": first.get("app"), "stack": first.get("stack"), "sequence": first.get("sequence"),
        "image": first.get("image"), "image_digest": first.get("image_digest"),
        "image_version": first.get("image_version"),
        "channel": (first.get("labels") or {}).get(LABEL_CHANNEL) or channel,
        "instances": [{k: i[k] for k in ("name", "zone", "state", "endpoint", "host_port", "instance_id")}
                      for i in instances],
    }


def _names_after(groups, target, seq):
    """The app/stack's group names, oldest first, with target in place."""
    seqs = {g: insts[0]["sequence"] for g, insts in groups.items() if insts}
    seqs[target] = seq
    return sorted(seqs, key=lambda g: (seqs[g], g))


def resolve_port(given, members, image, declared=None):
    """The service port of a group, as (port, source, warnings).

    An existing group keeps the port it runs (source `group`); else the
    `port` option (`option`); else what the image declares (`label`,
    `expose` or `default`, through declared(image) -> (port, source, warning)).
    """
    running = members[0].get("port") if members else None
    if running:
        warn = [] if not given or int(given) == int(running) else [
            "server group %s runs port %s and keeps it (port %s ignored): a new port needs a new group"
            % (members[0]["group"], running, given)]
        return int(running), "group", warn
    if given:
        return int(given), "option", []
    if image is None or declared is None:
        raise ImmutableInfraError("cannot tell the service port: give `port`")
    port, source, warning = declared(image)
    return port, source, [warning] if warning else []


def converge(platform, resolve_image, params, check_mode=False, declared_port=None, verify_image=None):
    """Make the server group for params['image'] (or params['group']) as asked.

    declared_port(image facts) -> (port, source, warning) gives the image's
    own service port when params['port'] is not set (see resolve_port).
    verify_image(image facts) -> dict checks the version's signature (see
    _signing.image_verifier) before anything is made, on every platform; it
    raises to refuse, or returns a dict with a `warning` when not enforced."""
    app, stack = check_name("app", params["app"]), check_name("stack", params["stack"])
    count, zones = params["count"], params["zones"] or ["zone-a"]
    if count < 0:
        raise ImmutableInfraError("count must be 0 or more (got %d)" % count)
    groups = groups_of(platform.list_instances(app=app, stack=stack))
    target, image = None, None
    if params.get("group"):
        target = params["group"]
        if target not in groups and params["state"] == "present" and not params.get("image"):
            raise ImmutableInfraError("server group %s does not exist; give image to create one" % target)
    if params.get("image"):
        image = resolve_image(params["image"])
        check_format(platform, image, params["image"])
        same = [g for g, insts in groups.items() if insts[0]["image_digest"] == image["digest"]]
        if target is None and same:
            target = same[-1]
    result = {"changed": False, "created": [], "removed": [], "replaced": []}
    if params["state"] == "absent":
        members = groups.get(target, []) if target else []
        result.update(changed=bool(members), group=summary(target, []) if target else None,
                      groups=[g for g in groups if g != target],
                      removed=[i["name"] for i in members],
                      diff={"before": summary(target, members) if members else {}, "after": {}})
        if members and not check_mode:
            platform.destroy_instances(result["removed"], params.get("stop_timeout", 5))
        elif target and not members:        # what a platform keeps of a group beside its instances
            result["changed"] = platform.remove_empty_group(target, check_mode)
        return result
    if target is None:
        if image is None:
            raise ImmutableInfraError("image is required to create a server group")
        seq = max([insts[0]["sequence"] for insts in groups.values()] or [0]) + 1
        target = group_name(app, stack, seq)
        members = []
    else:
        members = groups.get(target, [])
        seq = members[0]["sequence"] if members else int(target.rsplit("-v", 1)[1])
        if image is not None and members and members[0]["image_digest"] != image["digest"]:
            raise ImmutableInfraError("server group %s runs image %s, not %s: a new image needs a new group"
                                      % (target, members[0]["image_digest"], image["digest"]))
        if image is None and members:
            image = {"reference": members[0]["image"], "digest": members[0]["image_digest"],
                     "version": members[0]["image_version"]}
    signature = verify_image(image) if verify_image is not None and image is not None else None
    port, port_source, warnings = resolve_port(params.get("port"), members, image, declared_port)
    if signature is not None:
        result["signature"] = signature
        warnings = warnings + ([signature.pop("warning")] if signature.get("warning") else [])
    hc = health_spec(params.get("health_check"), port)
    result.update(port=port, port_source=port_source)
    if warnings:
        result["warnings"] = warnings
    # A platform that replaces dead instances itself (an Auto Scaling group) counts every member.
    self_healing = getattr(platform, "replaces_dead", False)
    dead = [i for i in members if i["state"] != "running" and not self_healing]
    alive = [i for i in members if i["state"] == "running" or self_healing]
    surplus = alive[count:] if len(alive) > count else []
    keep = alive[:count]
    zones_new = spread(zones, count - len(keep), [i["zone"] for i in keep])
    before = summary(target, members) if members else {}
    result["replaced"] = [i["name"] for i in dead]
    result["removed"] = [i["name"] for i in surplus]
    result["changed"] = bool(dead or surplus or zones_new)
    specs = [{"app": app, "stack": stack, "group": target, "sequence": seq, "image": image["reference"],
              "image_digest": image["digest"], "image_version": image.get("version") or "", "zone": z,
              "zones": list(zones), "amis": dict(image.get("amis") or {}),
              "port": port, "extra_ports": [hc["port"]] if hc["port"] != port else [],
              "labels": {LABEL_CHANNEL: image["channel"]} if image.get("channel") else {},
              "env": params.get("env") or {}} for z in zones_new]
    if check_mode:
        planned = {"name": target, "instances": len(keep) + len(specs), "image": image["reference"]}
        if image.get("channel"):
            planned["channel"] = image["channel"]
        result.update(group=summary(target, keep, image.get("channel")), would_create=len(specs),
                      groups=_names_after(groups, target, seq),
                      diff={"before": before, "after": planned})
        return result
    try:
        if specs:
            platform.pull(image["reference"])
        created = platform.create_instances(specs)
        result["created"] = [i["name"] for i in created]
        if dead or surplus:
            platform.destroy_instances([i["name"] for i in dead + surplus], params.get("stop_timeout", 5))
        now = keep + created
        if params.get("wait", True) and now:
            timeout = params.get("wait_timeout") or platform.boot_seconds
            ready = platform.wait_ready(now, hc, timeout)       # None: probe HTTP from here
            result["health"] = ready if ready is not None else wait_healthy(platform, now, hc, timeout)
    except ImmutableInfraError as exc:
        # Say which group failed, so that the caller can remove it.
        exc.details.setdefault("group", {"name": target, "sequence": seq, "image": image["reference"]})
        raise
    result.update(group=summary(target, now, image.get("channel")), health_check=hc, groups=_names_after(groups, target, seq),
                  diff={"before": before, "after": summary(target, now)})
    return result
