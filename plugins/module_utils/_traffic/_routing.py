# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Traffic: which server groups of an app/stack take traffic, and how they do.

Order of every change: new servers are added with weight 0 and must be UP
in the router before any weight moves; only then do the wanted groups get
their weights and the rest drain to 0. The router is never left without a
healthy server carrying weight. After a switch the new groups can be watched
for a window (see _verify); a group that fails it is pulled at once and the
previous weights come back.

Policy only: the router is a RouterBackend (_backend; haproxy is _haproxy.Router),
the instances come from a Platform, and each server's address is where the
platform says the instance's service port is reached."""

from __future__ import annotations

import time

from ansible_collections.immutable.infra.plugins.module_utils._names import instance_group
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._traffic._backend import COUNTERS, ERROR_FIELDS, empty_counters
from ansible_collections.immutable.infra.plugins.module_utils._traffic._verify import (
    add, describe, group_counters, rollback_target, verify)


def _empty_group(weight):
    return dict(empty_counters(), weight=weight, servers=[], healthy=0, errors=0)


def _live(router, key):
    return router.stats(key) if router.running() else {"servers": {}, "total": {}}


def endpoint_report(router, app, stack):
    """Per-group health, weights and error counts of one endpoint, read live."""
    key = "%s/%s" % (app, stack)
    routes = router.load_routes()
    ep = routes["endpoints"].get(key)
    if ep is None:
        return None
    live = _live(router, key)
    groups = {g: _empty_group(w) for g, w in ep["groups"].items()}
    for name, srv in sorted(live["servers"].items()):
        g = groups.setdefault(instance_group(name), _empty_group(0))
        g["servers"].append({k: srv.get(k) for k in ("name", "status", "weight", "check", "up")})
        g["healthy"] += 1 if srv["up"] else 0
        for f in COUNTERS:
            g[f] = add(g[f], srv[f])
        g["errors"] = add(g["errors"], None if any(srv[f] is None for f in ERROR_FIELDS)
                          else sum(srv[f] for f in ERROR_FIELDS))
    backend = live["total"]
    enabled = sorted(n for n, g in groups.items() if g["weight"] > 0)
    reason = router.counters_unavailable
    counters = ({"available": False, "source": None, "reason": reason} if reason
                else {"available": True, "source": router.name})
    return {"app": app, "stack": stack, "endpoint": _url(ep), "platform": endpoint_platform(ep),
            "port": ep["port"], "groups": groups, "enabled": enabled, "backend": backend, "counters": counters,
            "history": ep.get("history", [])}


# Endpoints recorded before the platform was recorded all ran on podman.
LEGACY_PLATFORM = "podman"


def endpoint_platform(ep):
    """The platform an endpoint's groups run on, or None for no endpoint."""
    return None if ep is None else ep.get("platform") or LEGACY_PLATFORM


def check_platform(key, ep, platform_name):
    """Refuse to drive an endpoint's groups through another platform than the one they run on:
    its groups would look absent there, and the router would drop them (and the warm group)."""
    on = endpoint_platform(ep)
    if on is not None and platform_name and on != platform_name:
        raise ImmutableInfraError(
            "%s runs on the %s platform, not %s: give platform=%s (one app/stack lives on one platform; "
            "release to another stack to run it on %s)" % (key, on, platform_name, on, platform_name),
            endpoint_platform=on)


def _url(ep):
    host = ep.get("address", "127.0.0.1")
    return "http://%s:%d" % ("[%s]" % host if ":" in host else host, int(ep["port"]))


def _running_groups(platform, app, stack):
    by_group = {}
    for inst in platform.list_instances(app=app, stack=stack):
        if inst["state"] == "running":
            by_group.setdefault(inst["group"], []).append(inst)
    return by_group


def apply(router, platform, params, check_mode=False, check_target=None):
    """Set the weights of an app/stack's groups, or roll back to the group that carried
    traffic before; add and remove router servers to match instances; watch the groups
    that gained weight for a verify window and put the previous weights back if they fail.
    check_target(image reference, what is refused) raises when a rollback's target group runs
    (or would be recreated from) an image that must not be used any more (a revoked version)."""
    app, stack = params["app"], params["stack"]
    key = "%s/%s" % (app, stack)
    routes = router.load_routes()
    ep_before = routes["endpoints"].get(key)
    check_platform(key, ep_before, platform.name)
    if params["state"] == "absent":
        return _remove_endpoint(router, routes, key, check_mode)

    by_group = _running_groups(platform, app, stack)
    before_groups = (ep_before or {}).get("groups", {})
    result = {"changed": False, "previous": {g: w for g, w in before_groups.items() if w > 0}, "rollback": None,
              "verification": None, "planned": []}
    wanted = {g: int(w) for g, w in (params.get("groups") or {}).items()}
    if params.get("rollback") or params.get("rollback_group"):
        if wanted:
            raise ImmutableInfraError("give either groups or rollback, not both (groups: %s)" % sorted(wanted))
        if ep_before is None:
            raise ImmutableInfraError("%s has no router endpoint: nothing was released there, nothing to roll back" % key)
        result["rollback"] = rollback_target(key, ep_before, set(by_group), params.get("rollback_group"))
        to = result["rollback"]["to"]
        image = by_group[to][0]["image"] if by_group.get(to) else result["rollback"]["image"]
        if check_target and image:
            check_target(image, "cannot roll %s back to %s" % (key, to))
        if result["rollback"]["recreate"]:      # the caller recreates it from rollback.image, then names it in groups
            result.update(url=_url(ep_before), endpoint=endpoint_report(router, app, stack))
            return result
        wanted = {result["rollback"]["to"]: 100}
    bad = {g: w for g, w in wanted.items() if not 0 <= w <= 100}
    if bad:
        raise ImmutableInfraError("weights must be between 0 and 100: %s" % bad)
    if not any(w > 0 for w in wanted.values()):
        raise ImmutableInfraError("refusing to route %s with no group carrying weight: that is zero backends" % key)
    if ep_before is not None:
        port = ep_before["port"]
        if params.get("port") and int(params["port"]) != int(port):
            raise ImmutableInfraError("endpoint %s listens on port %s; moving it to %s is not supported"
                                      % (key, port, params["port"]))
    else:
        port = params.get("port") or params.get("new_endpoint_port")
        if not port:
            raise ImmutableInfraError("endpoint %s is new: give the port it listens on" % key)
        if not router.port_available(port):
            raise ImmutableInfraError("cannot route %s: port %s is already taken by another process" % (key, port))
    retire = set(params.get("retire") or [])
    clash = sorted(g for g in retire if wanted.get(g, 0) > 0)
    if clash:
        raise ImmutableInfraError("cannot retire %s from %s: asked to carry traffic too" % (", ".join(clash), key))
    for g, w in wanted.items():
        if w > 0 and not by_group.get(g):
            if not check_mode:
                raise ImmutableInfraError("server group %s has no running instance to send traffic to" % g)
            result["planned"].append(g)     # check mode: created by an earlier task of the same run

    weights = {g: 0 for g in before_groups}                     # everything not named drains
    weights.update(wanted)
    weights = {g: w for g, w in weights.items() if by_group.get(g) or w > 0}   # destroyed groups leave
    switched = _endpoint(router, platform, port, weights, by_group, params.get("health_check"), ep_before)
    final = dict(switched, groups={g: w for g, w in weights.items() if g not in retire},
                 servers={n: s for n, s in switched["servers"].items() if s["group"] not in retire})
    comparable = ("port", "groups", "servers", "health")
    changed = ep_before is None or any(ep_before.get(k) != final.get(k) for k in comparable)
    result.update(changed=changed, url=_url(final), diff={"before": _brief(ep_before), "after": _brief(final)})
    if not changed:
        result["endpoint"] = endpoint_report(router, app, stack)
        return result
    if final["groups"] != before_groups:
        entry = {"time": time.time(), "groups": final["groups"],
                 "images": {g: by_group[g][0]["image"] for g in final["groups"] if by_group.get(g)}}
        switched["history"] = final["history"] = (switched["history"] + [entry])[-50:]
    if check_mode:
        result["endpoint"] = None
        return result

    router.start()        # a no-op when it runs: routing an endpoint needs the router up
    timeout = params.get("wait_timeout") or 30
    baseline = _switch(router, routes, key, ep_before, switched, timeout)
    gained = sorted(g for g, w in weights.items() if w > before_groups.get(g, 0))
    if float(params.get("verify_seconds") or 0) > 0 and gained:
        v = verify(lambda: router.stats(key)["servers"], gained, baseline, float(params["verify_seconds"]),
                   int(params.get("max_errors") or 0), counters_unavailable=router.counters_unavailable)
        result["verification"] = v
        if not v["passed"]:
            _revert(router, routes, key, ep_before, switched, gained, v, params.get("keep_failed"))
    if final["servers"] != switched["servers"] or final["groups"] != switched["groups"]:
        for name in sorted(set(switched["servers"]) - set(final["servers"])):
            router.remove_server(key, name)
        routes["endpoints"][key] = final
        router.write(routes)
    router.save_state()
    result["endpoint"] = endpoint_report(router, app, stack)
    return result


def _endpoint(router, platform, port, weights, by_group, hc, ep_before):
    servers = {}
    for g, w in weights.items():
        members = by_group.get(g, [])
        for inst in members:
            where = platform.address(inst, inst["port"])
            if not where:
                raise ImmutableInfraError("instance %s of %s has no address for its port %s yet: the router cannot "
                                          "reach it" % (inst["name"], g, inst["port"]))
            servers[inst["name"]] = {"group": g, "address": where[0], "port": int(where[1]),
                                     "weight": router.server_weight(w, len(members))}
    health = {"path": (hc or {}).get("path", "/healthz"), "status": (hc or {}).get("status", 200),
              "interval_ms": int(float((hc or {}).get("interval", 0.5)) * 1000),
              "timeout_ms": int(float((hc or {}).get("timeout", 2.0)) * 1000), "rise": 1, "fall": 2}
    if ep_before is not None and not hc:
        health = ep_before.get("health", health)
    return {"port": int(port), "address": router.listen_address, "groups": weights, "servers": servers, "health": health,
            "history": list((ep_before or {}).get("history", [])), "platform": platform.name}


def _remove_endpoint(router, routes, key, check_mode):
    ep_before = routes["endpoints"].get(key)
    if ep_before is None:
        return {"changed": False, "endpoint": None}
    if not check_mode:
        del routes["endpoints"][key]
        router.write(routes)
        if router.running():          # a stopped router just starts without it
            router.reload()
    return {"changed": True, "endpoint": None, "diff": {"before": _brief(ep_before), "after": {}}}


def _brief(ep):
    if not ep:
        return {}
    return {"port": ep["port"], "groups": ep["groups"], "servers": sorted(ep["servers"])}


def _switch(router, routes, key, before, after, wait_timeout):
    """Make the router serve `after`; return the counters of its groups just before weights
    moved (the verify window's baseline). A new endpoint that fails is removed again."""
    carrying = [n for n, s in after["servers"].items() if s["weight"] > 0]
    routes["endpoints"][key] = after
    if before is None:
        router.write(routes)       # a new frontend needs a reload
        router.reload()
        try:
            _wait_up(router, key, carrying, wait_timeout)
        except ImmutableInfraError as exc:
            _remove_endpoint(router, routes, key, False)
            raise ImmutableInfraError(exc.msg + "; the new endpoint %s was removed again" % key, **exc.details)
        return group_counters(router.stats(key)["servers"], after["groups"])
    live = router.stats(key)["servers"]
    added = []
    for name, srv in sorted(after["servers"].items()):
        if name not in live:
            router.add_server(key, name, srv["address"], srv["port"], 0, after["health"])
            added.append(name)
    # New servers must pass the router's own check before they get any weight: never switch to an unhealthy group.
    try:
        _wait_up(router, key, carrying, wait_timeout)
    except ImmutableInfraError:
        for name in added:
            router.remove_server(key, name)
        raise
    # Record (and validate) the new servers at their current weights before any weight moves,
    # so that the write after the switch is of weights only and the verify window starts at once.
    routes["endpoints"][key] = dict(before, servers=dict(before["servers"], **{
        n: dict(s, weight=int(live[n]["weight"]) if n in live else 0) for n, s in after["servers"].items()}))
    router.write(routes)
    baseline = group_counters(router.stats(key)["servers"], after["groups"])
    # Raise weights before lowering others, so that some server always carries traffic.
    for name, srv in sorted(after["servers"].items(), key=lambda kv: -kv[1]["weight"]):
        router.set_weight(key, name, srv["weight"])
    for name in sorted(set(live) - set(after["servers"])):
        router.remove_server(key, name)
    routes["endpoints"][key] = after
    router.write(routes, validate=False)
    return baseline


def _revert(router, routes, key, before, switched, failing, v, keep_failed):
    """Verification failed: put the previous weights back (the old servers first), take the
    failing groups out of traffic (out of the router unless keep_failed), then raise."""
    head = "%s failed verification: %s" % (", ".join(failing), describe(v))
    if before is None:
        _remove_endpoint(router, routes, key, False)
        raise ImmutableInfraError(head + "; the endpoint %s was removed again (its first release: no traffic before)"
                                  % key, verification=v, reverted=True)
    live = router.stats(key)["servers"]
    restore = {n: s for n, s in before["servers"].items() if n in live}
    if not any(s["weight"] > 0 and live[n]["up"] for n, s in restore.items()):
        raise ImmutableInfraError(head + "; the previous groups have no server UP any more, so traffic stays on %s"
                                  % ", ".join(failing), verification=v, reverted=False)
    for name, srv in sorted(restore.items(), key=lambda kv: -kv[1]["weight"]):
        router.set_weight(key, name, srv["weight"])
    new = {n: s for n, s in switched["servers"].items() if n not in before["servers"]}
    for name in sorted(new):
        if keep_failed:
            router.set_weight(key, name, 0)
        else:
            router.remove_server(key, name)
    reverted = dict(before, servers=dict(restore))
    reverted["groups"] = {g: w for g, w in before["groups"].items() if w > 0 or any(
        s["group"] == g for s in restore.values())}
    if keep_failed:
        reverted["servers"].update({n: dict(s, weight=0) for n, s in new.items()})
        reverted["groups"].update({s["group"]: 0 for s in new.values()})
    routes["endpoints"][key] = reverted
    router.write(routes)
    router.save_state()
    back = sorted(g for g, w in before["groups"].items() if w > 0)
    raise ImmutableInfraError(head + "; traffic went back to %s; %s" % (
        ", ".join(back), ("%s kept at weight 0 (keep_failed)" if keep_failed else "%s left the router")
        % ", ".join(failing)), verification=v, reverted=True, previous={g: before["groups"][g] for g in back})


def _wait_up(router, key, names, timeout):
    if not names:
        return
    deadline = time.monotonic() + timeout
    while True:
        live = router.stats(key)["servers"]
        status = {n: "%s (check %s)" % (r["status"], r.get("check") or "none") for n, r in live.items()}
        down = [n for n in names if not live.get(n, {}).get("check_passed")]
        if not down:
            return
        if time.monotonic() > deadline:
            raise ImmutableInfraError("router health checks failed for %s within %ss (status: %s)" % (
                ", ".join(down), timeout, ", ".join("%s=%s" % (n, status.get(n, "absent")) for n in down)),
                unhealthy=down)
        time.sleep(0.05)
