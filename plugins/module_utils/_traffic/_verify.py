# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verify window after a switch, and the choice of a rollback target:
pure policy over the router's per-server counters and recorded history.

The window is bounded by errors as well as by time: it polls the router's
counters (the neutral names of _backend) every VERIFY_POLL seconds and ends as soon as the new groups' error
delta exceeds the allowed count, so a failing group is pulled within a poll
or two of crossing the threshold instead of at the end of the window."""

from __future__ import annotations

import time

from ansible_collections.immutable.infra.plugins.module_utils._names import instance_group
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._traffic._backend import ERROR_FIELDS, empty_counters

VERIFY_POLL = 0.05


def add(a, b):
    """a + b for counters, None (unavailable) when either is."""
    return None if a is None or b is None else a + b


def group_counters(servers, groups):
    """{group: requests, errors by kind, healthy servers} summed over the live servers of each named group.
    servers: {name: live server record} (RouterBackend.stats()["servers"]). A counter a server
    has as None (its router cannot read it) is None for its group."""
    out = {g: dict(empty_counters(), errors=0, healthy=0) for g in groups}
    for name, srv in servers.items():
        g = out.get(instance_group(name))
        if g is None:
            continue
        for f in ("requests",) + ERROR_FIELDS:
            value = srv.get(f, 0)
            g[f] = add(g[f], None if value is None else int(value or 0))
        g["healthy"] += 1 if srv.get("up") else 0
    for g in out.values():
        g["errors"] = None if any(g[f] is None for f in ERROR_FIELDS) else sum(g[f] for f in ERROR_FIELDS)
    return out


def window_delta(baseline, now):
    """What the groups did since baseline: requests and errors summed (None when a group's are
    unavailable); healthy is the fewest healthy servers of any one group (each group must keep one)."""
    delta = {}
    for k in ("requests", "errors") + ERROR_FIELDS:
        total = 0
        for g in now:
            total = add(total, add(now[g][k], None if now[g][k] is None else -(baseline.get(g, {}).get(k) or 0)))
        delta[k] = total
    delta["healthy"] = min(now[g]["healthy"] for g in now) if now else 0
    return delta


def verify(read_servers, groups, baseline, seconds, max_errors, clock=time.monotonic, sleep=time.sleep,
           counters_unavailable=None):
    """Watch the groups for up to `seconds`; stop early when their errors exceed max_errors
    or a group has no healthy server. Returns the window's counts with passed True/False.
    When the router has no counters (counters None), the window judges health alone and says
    so (judged "health only", counters_unavailable: the router's reason)."""
    started = clock()
    while True:
        delta = window_delta(baseline, group_counters(read_servers(), groups))
        elapsed = clock() - started
        delta.update(groups=sorted(groups), max_errors=max_errors, seconds=round(elapsed, 2), window=seconds)
        if delta["errors"] is None:
            delta.update(judged="health only", counters_unavailable=counters_unavailable or "the router has no counters")
        if delta["errors"] is not None and delta["errors"] > max_errors:
            return dict(delta, passed=False, reason="%d errors, allowed %d" % (delta["errors"], max_errors))
        if delta["healthy"] == 0:
            return dict(delta, passed=False, reason="a group has no healthy server")
        if elapsed >= seconds:
            return dict(delta, passed=True)
        sleep(VERIFY_POLL)


def describe(v):
    """One line naming the window's counts, for messages."""
    if v.get("errors") is None:
        return "health only (%s): fewest healthy servers in a group %d over %.2fs of a %ss window" % (
            v.get("counters_unavailable") or "the router has no counters", v["healthy"], v["seconds"], v["window"])
    return "%d errors (5xx %d, connection %d, response %d) in %d requests over %.2fs of a %ss window, allowed %d" % (
        v["errors"], v["http_5xx"], v["connect_errors"], v["response_errors"], v["requests"], v["seconds"], v["window"], v["max_errors"])


def rollback_target(key, ep, running, named=None):
    """The group a rollback goes to: the named one, else the newest group in the router's
    history that carried traffic before the current one and still runs, else the newest
    running group out of traffic, else the newest one in history (to be recreated).
    Returns {to, from, image (recorded for it, or None), recreate}."""
    enabled = sorted(g for g, w in ep["groups"].items() if w > 0)
    history = ep.get("history", [])
    if named:
        if named in enabled:
            raise ImmutableInfraError("%s has no group to roll back to (%s already carries the traffic); traffic stays on %s"
                                      % (key, named, ", ".join(enabled)))
        target = named
    else:
        previous = []
        for entry in reversed(history):
            for g, w in sorted(entry.get("groups", {}).items()):
                if w > 0 and g not in enabled and g not in previous:
                    previous.append(g)
        disabled = [g for g in sorted(running) if g not in enabled]
        target = (next((g for g in previous if g in running), None) or (disabled[-1] if disabled else None)
                  or (previous[0] if previous else None))
        if not target:
            raise ImmutableInfraError("%s has no other group to roll back to; traffic stays on %s"
                                      % (key, ", ".join(enabled) or "nothing"))
    images = [e["images"][target] for e in history if target in e.get("images", {})]
    image = images[-1] if images else None
    recreate = target not in running
    if recreate and not image:
        raise ImmutableInfraError("server group %s of %s is not running and the router recorded no image for it: "
                                  "nothing to roll back to" % (target, key))
    return {"to": target, "from": enabled, "image": image, "recreate": recreate}
