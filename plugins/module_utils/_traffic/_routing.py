# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Traffic: which server groups of an app/stack take traffic, and how they do.

Order of every change: new servers are added with weight 0 and must be UP
in the router before any weight moves; only then do the wanted groups get
their weights and the rest drain to 0. The router is never left without a
healthy server carrying weight."""

from __future__ import annotations

import time

from ansible_collections.immutable.infra.plugins.module_utils._service import port_in_use
from ansible_collections.immutable.infra.plugins.module_utils._traffic._haproxy import backend_name, server_weight
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

ERROR_FIELDS = ("hrsp_5xx", "econ", "eresp")


def _int(value):
    try:
        return int(value or 0)
    except ValueError:
        return 0


def group_of(server_name):
    """web-prod-v003-1a2b3c -> web-prod-v003."""
    return server_name.rsplit("-", 1)[0]


def _empty_group(weight):
    return dict({"weight": weight, "servers": [], "healthy": 0, "requests": 0, "errors": 0},
                **{f: 0 for f in ERROR_FIELDS})


def endpoint_report(router, app, stack):
    """Per-group health, weights and error counts of one endpoint, read live."""
    key = "%s/%s" % (app, stack)
    routes = router.load_routes()
    ep = routes["endpoints"].get(key)
    if ep is None:
        return None
    rows = router.runtime.stats(backend_name(app, stack)) if router.pid() else []
    groups = {g: _empty_group(w) for g, w in ep["groups"].items()}
    backend = {}
    for row in rows:
        if row["svname"] in ("FRONTEND", "BACKEND"):
            if row["svname"] == "BACKEND":
                backend = {"status": row["status"], "requests": _int(row["stot"]),
                           **{f: _int(row[f]) for f in ERROR_FIELDS}}
            continue
        g = groups.setdefault(group_of(row["svname"]), _empty_group(0))
        up = row["status"].startswith("UP")
        g["servers"].append({"name": row["svname"], "status": row["status"], "weight": _int(row["weight"]),
                             "check": row.get("check_status")})
        g["healthy"] += 1 if up else 0
        g["requests"] += _int(row["stot"])
        for f in ERROR_FIELDS:
            g[f] += _int(row[f])
        g["errors"] += sum(_int(row[f]) for f in ERROR_FIELDS)
    enabled = sorted(n for n, g in groups.items() if g["weight"] > 0)
    return {"app": app, "stack": stack, "endpoint": "http://%s:%d" % (ep.get("address", "127.0.0.1"), ep["port"]),
            "port": ep["port"], "groups": groups, "enabled": enabled, "backend": backend,
            "history": ep.get("history", [])}


def apply(router, platform, params, check_mode=False):
    """Set the weights of an app/stack's groups; add and remove router servers to match instances."""
    app, stack = params["app"], params["stack"]
    key = "%s/%s" % (app, stack)
    be = backend_name(app, stack)
    routes = router.load_routes()
    ep_before = routes["endpoints"].get(key)
    if params["state"] == "absent":
        if ep_before is None:
            return {"changed": False, "endpoint": None}
        if not check_mode:
            del routes["endpoints"][key]
            router.write(routes)
            if router.pid():          # a stopped router just starts without it
                router.reload()
        return {"changed": True, "endpoint": None, "diff": {"before": ep_before, "after": {}}}

    wanted = {g: int(w) for g, w in (params.get("groups") or {}).items()}
    bad = {g: w for g, w in wanted.items() if not 0 <= w <= 100}
    if bad:
        raise ImmutableInfraError("weights must be between 0 and 100: %s" % bad)
    if not any(w > 0 for w in wanted.values()):
        raise ImmutableInfraError("refusing to route %s with no group carrying weight: that is zero backends" % key)
    port = params.get("port") or (ep_before or {}).get("port")
    if not port:
        raise ImmutableInfraError("endpoint %s is new: give the port it listens on" % key)
    if ep_before is not None and params.get("port") and int(params["port"]) != int(ep_before["port"]):
        raise ImmutableInfraError("endpoint %s listens on port %s; moving it is not supported" % (key, ep_before["port"]))

    instances = [i for i in platform.list_instances(app=app, stack=stack) if i["state"] == "running"]
    by_group = {}
    for inst in instances:
        by_group.setdefault(inst["group"], []).append(inst)
    for g, w in wanted.items():
        if w > 0 and not by_group.get(g):
            raise ImmutableInfraError("server group %s has no running instance to send traffic to" % g)
    weights = dict((ep_before or {}).get("groups", {}))
    weights = {g: 0 for g in weights}                    # everything not named drains
    weights.update(wanted)
    weights = {g: w for g, w in weights.items() if by_group.get(g) or w > 0}   # destroyed groups leave
    servers = {}
    for g in weights:
        members = by_group.get(g, [])
        for inst in members:
            servers[inst["name"]] = {"group": g, "address": "127.0.0.1", "port": inst["host_port"],
                                     "weight": server_weight(weights[g], len(members))}
    hc = params.get("health_check") or {}
    ep_after = {
        "port": int(port), "address": "127.0.0.1", "groups": weights, "servers": servers,
        "health": {"path": hc.get("path", "/healthz"), "status": hc.get("status", 200),
                   "interval_ms": int(float(hc.get("interval", 0.5)) * 1000), "rise": 1, "fall": 2},
        "history": list((ep_before or {}).get("history", [])),
    }
    if ep_before is not None:
        ep_after["health"] = ep_before.get("health", ep_after["health"]) if not params.get("health_check") else ep_after["health"]
    comparable = ("port", "groups", "servers", "health")
    changed = ep_before is None or any(ep_before.get(k) != ep_after.get(k) for k in comparable)
    result = {"changed": changed, "diff": {"before": _brief(ep_before), "after": _brief(ep_after)}}
    if not changed:
        result["endpoint"] = endpoint_report(router, app, stack)
        return result
    if weights != (ep_before or {}).get("groups"):
        ep_after["history"] = (ep_after["history"] + [{"time": time.time(), "groups": weights, "images": {
            g: by_group[g][0]["image"] for g in weights if by_group.get(g)}}])[-50:]
    if check_mode:
        result["endpoint"] = None
        return result
    router.start()        # a no-op when it runs: routing an endpoint needs the router up
    routes["endpoints"][key] = ep_after
    if ep_before is None:
        if port_in_use("127.0.0.1", port):
            raise ImmutableInfraError("cannot route %s: port %s is already taken by another process" % (key, port))
        router.write(routes)       # a new frontend needs a reload
        router.reload()
    else:
        _apply_runtime(router, be, ep_before, ep_after, params.get("wait_timeout", 30))
        router.write(routes)
    _wait_up(router, be, [n for n, s in servers.items() if s["weight"] > 0], params.get("wait_timeout", 30))
    router.runtime.save_state(router.state_dir + "/server-state")
    result["endpoint"] = endpoint_report(router, app, stack)
    return result


def _brief(ep):
    if not ep:
        return {}
    return {"port": ep["port"], "groups": ep["groups"], "servers": sorted(ep["servers"])}


def _apply_runtime(router, be, before, after, wait_timeout):
    rt = router.runtime
    live = {r["svname"]: r for r in rt.stats(be) if r["svname"] not in ("FRONTEND", "BACKEND")}
    added = []
    for name, srv in sorted(after["servers"].items()):
        if name not in live:
            rt.add_server(be, name, srv["address"], srv["port"], 0)
            added.append(name)
    # New servers must be UP before they get any weight: never switch to an unhealthy group.
    carrying = [n for n, s in after["servers"].items() if s["weight"] > 0]
    try:
        _wait_up(router, be, carrying, wait_timeout)
    except ImmutableInfraError:
        for name in added:
            rt.remove_server(be, name)
        raise
    for name, srv in sorted(after["servers"].items(), key=lambda kv: -kv[1]["weight"]):
        rt.set_weight(be, name, srv["weight"])
    for name in sorted(set(live) - set(after["servers"])):
        rt.remove_server(be, name)


def _wait_up(router, be, names, timeout):
    if not names:
        return
    deadline = time.monotonic() + timeout
    while True:
        status = {r["svname"]: r["status"] for r in router.runtime.stats(be)}
        down = [n for n in names if not status.get(n, "").startswith("UP")]
        if not down:
            return
        if time.monotonic() > deadline:
            raise ImmutableInfraError("router health checks failed for %s within %ss (status: %s)" % (
                ", ".join(down), timeout, ", ".join("%s=%s" % (n, status.get(n, "absent")) for n in down)),
                unhealthy=down)
        time.sleep(0.1)
