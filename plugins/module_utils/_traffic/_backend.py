# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The router seam: what the traffic policy (_routing, _verify) needs from a
router, with neutral names. haproxy (_haproxy.Router) is one backend; ELBv2
target groups are the next. A backend passes RouterConformance in
tests/unit/plugins/module_utils/test_conformance.py. A router's own names
(haproxy's `svname`, `hrsp_5xx`, `econ`, ...) never leave its backend.

An endpoint is an app/stack, named by its key "<app>/<stack>".

The routes document (load_routes / write) is the desired routing, which the
backend keeps where it keeps state:
  {"endpoints": {key: {"port", "address", "groups": {group: weight 0-100},
   "servers": {instance name: {"group", "address", "port", "weight"}},
   "health": {"path", "status", "interval_ms", "rise", "fall"}, "history": [...]}}}
Server weights in it are the backend's own (server_weight()); 0 takes no traffic.

A server's live record (stats()["servers"][name]):
  name, weight   the instance name and its live weight
  up             it takes traffic when it has weight (it passed its health checks)
  check_passed   up after at least one completed health check (a new server may
                 count as up before its first check)
  status, check  the router's own words for its state and last check, for messages
  requests, http_5xx, connect_errors, response_errors
                 counters since the server was added; None when the backend cannot read
                 them (its counters_unavailable says why): never invented
The endpoint's total (stats()["total"]): status, requests and the same error
counters, or {} when the router has none.
"""

from __future__ import annotations

# The error counters every backend reports, in the order messages name them.
ERROR_FIELDS = ("http_5xx", "connect_errors", "response_errors")
COUNTERS = ("requests",) + ERROR_FIELDS


class RouterBackend:
    """What every router backend implements. Methods raise ImmutableInfraError naming the failure."""

    name = None
    # Where endpoints listen (a local router) and where it reaches instances from.
    listen_address = "127.0.0.1"
    # Why the request and error counters are None, for a backend that cannot read them.
    counters_unavailable = None

    def running(self):
        """True when the router serves (its process or service is up)."""
        raise NotImplementedError

    def start(self):
        """Make the router serve; a no-op when it already does."""
        raise NotImplementedError

    def reload(self):
        """Serve what write() stored, without dropping a connection (new or removed endpoints)."""
        raise NotImplementedError

    def load_routes(self):
        """The routes document; {"endpoints": {}} when there is none yet."""
        raise NotImplementedError

    def write(self, routes, validate=True):
        """Store the routes document (validated unless only weights changed since the last validation)."""
        raise NotImplementedError

    def port_available(self, port):
        """True when a new endpoint can listen on port."""
        return True

    def server_weight(self, group_weight, servers_in_group):
        """The weight of each server of a group of that size carrying group_weight (0-100) of the traffic."""
        raise NotImplementedError

    def stats(self, key):
        """{"servers": {name: live server record}, "total": {...}} of an endpoint, read live."""
        raise NotImplementedError

    def add_server(self, key, name, address, port, weight, health):
        """Add a server to a routed endpoint at weight, checked with the endpoint's health spec."""
        raise NotImplementedError

    def set_weight(self, key, name, weight):
        raise NotImplementedError

    def remove_server(self, key, name):
        """Take a server out of traffic, then out of the router once its connections closed."""
        raise NotImplementedError

    def save_state(self):
        """Persist live server state so that a restart serves the same (a no-op where the router keeps it)."""
        return None


def empty_counters():
    return {f: 0 for f in COUNTERS}
