# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The haproxy router: its configuration, its runtime API, its process.

Desired routing lives in routes.json in the router's state directory; the
configuration file is rendered from it, so a reload or a restart serves
exactly what the runtime API was told. Weights and servers change through
the runtime API (no reload, no dropped request); only a new or removed
endpoint needs a (seamless, master-worker) reload.

Router is the haproxy RouterBackend: haproxy's own names (`show stat` columns
such as svname, stot, hrsp_5xx, econ, eresp) are turned into the backend's
neutral records here and nowhere else."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import socket
import time

from ansible_collections.immutable.infra.plugins.module_utils import _service as svc
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run
from ansible_collections.immutable.infra.plugins.module_utils._traffic._backend import RouterBackend

# haproxy `show stat` column -> neutral counter name.
_COUNTERS = {"stot": "requests", "hrsp_5xx": "http_5xx", "econ": "connect_errors", "eresp": "response_errors"}


def backend_name(app, stack):
    return "be_%s_%s" % (app, stack)


def server_weight(group_weight, servers_in_group):
    """haproxy weight of each server so that groups share traffic by their weights
    (0-100), whatever their sizes. haproxy weights are 0..256."""
    if group_weight <= 0 or servers_in_group <= 0:
        return 0
    return max(1, min(256, int(math.ceil(group_weight * 2.56 / servers_in_group))))


def check_args(health):
    """A server's check settings from an endpoint's health spec. Servers added through the
    runtime API do not inherit `default-server`, so both paths use this. `downinter` makes
    a new server's first check run within 100 ms (it starts UP with no check done)."""
    inter = int(health.get("interval_ms", 500))
    return "check inter %dms downinter %dms fall %d rise %d" % (
        inter, min(inter, 100), int(health.get("fall", 2)), int(health.get("rise", 1)))


def check_timeout(health):
    """How long one check may take, in ms: the health check's own timeout. Without
    `timeout check` haproxy gives a check only `inter`, so a server that is merely
    slow for a moment (a busy VM under TCG) would be marked DOWN at 200 ms."""
    return int(health.get("timeout_ms") or max(2000, int(health.get("interval_ms", 500))))


def check_passed(row):
    """UP in a `show stat` row, after at least one completed check (a new server shows UP before any)."""
    return row.get("status", "").startswith("UP") and row.get("check_status", "").lstrip("* ") not in ("INI", "")


def _count(value):
    try:
        return int(value or 0)
    except ValueError:
        return 0


def server_record(row):
    """A `show stat` server row as the neutral live server record (see _backend)."""
    rec = {"name": row["svname"], "weight": _count(row.get("weight")), "status": row.get("status", ""),
           "check": row.get("check_status") or None, "up": row.get("status", "").startswith("UP"),
           "check_passed": check_passed(row)}
    rec.update({name: _count(row.get(col)) for col, name in _COUNTERS.items()})
    return rec


def endpoint_stats(rows):
    """`show stat` rows of one backend -> {"servers": {name: record}, "total": {...}}."""
    servers, total = {}, {}
    for row in rows:
        if row["svname"] == "BACKEND":
            total = dict({name: _count(row.get(col)) for col, name in _COUNTERS.items()}, status=row.get("status", ""))
        elif row["svname"] != "FRONTEND":
            servers[row["svname"]] = server_record(row)
    return {"servers": servers, "total": total}


def render_config(state_dir, routes):
    """haproxy.cfg for the routes: one frontend and backend per app/stack."""
    lines = [
        "# Rendered by immutable.infra from routes.json; edits are overwritten.",
        "global",
        "    stats socket %s mode 600 level admin expose-fd listeners" % os.path.join(state_dir, "admin.sock"),
        "    server-state-file %s" % os.path.join(state_dir, "server-state"),
        "    log stderr format short local0 notice",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    load-server-state-from-file global",
        "    retries 2",
        "    option redispatch 1",
        "",
    ]
    for key in sorted(routes.get("endpoints", {})):
        ep = routes["endpoints"][key]
        app, stack = key.split("/")
        be = backend_name(app, stack)
        hc = ep.get("health", {})
        lines += [
            "frontend fe_%s_%s" % (app, stack),
            "    bind %s:%d" % (ep.get("address", "127.0.0.1"), int(ep["port"])),
            "    default_backend %s" % be,
            "",
            "backend %s" % be,
            "    balance roundrobin",
            "    option httpchk GET %s" % hc.get("path", "/healthz"),
            "    http-check expect status %d" % int(hc.get("status", 200)),
            "    timeout check %dms" % check_timeout(hc),
            "    default-server %s" % check_args(hc),
        ]
        for name in sorted(ep.get("servers", {})):
            srv = ep["servers"][name]
            lines.append("    server %s %s:%d weight %d" % (name, srv["address"], int(srv["port"]), int(srv["weight"])))
        lines.append("")
    return "\n".join(lines) + "\n"


def parse_stat(csv_text):
    """`show stat` CSV -> list of dicts (header starts with '# ')."""
    text = csv_text.lstrip("# ")
    return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]


class Runtime:
    """haproxy's runtime API over its admin socket."""

    def __init__(self, sock_path):
        self.sock_path = sock_path

    def cmd(self, line, timeout=5.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.sock_path)
            s.sendall((line + "\n").encode())
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except OSError as exc:
            raise ImmutableInfraError("router runtime API at %s did not answer %r: %s" % (self.sock_path, line, exc))
        finally:
            s.close()
        return b"".join(chunks).decode(errors="replace")

    def checked(self, line, ok=("",)):
        out = self.cmd(line).strip()
        if out and not any(out.startswith(o) for o in ok if o):
            raise ImmutableInfraError("router refused %r: %s" % (line, out))
        return out

    def answers(self):
        try:
            return "Name: HAProxy" in self.cmd("show info", timeout=1.0)
        except ImmutableInfraError:
            return False

    def stats(self, backend=None):
        rows = parse_stat(self.cmd("show stat"))
        return [r for r in rows if backend is None or r["pxname"] == backend]

    def add_server(self, backend, name, address, port, weight, check="check"):
        self.checked("add server %s/%s %s:%d weight %d %s" % (backend, name, address, int(port), int(weight), check),
                     ok=("New server registered",))
        self.checked("enable health %s/%s" % (backend, name))
        self.checked("enable server %s/%s" % (backend, name))

    def set_weight(self, backend, name, weight):
        self.checked("set weight %s/%s %d" % (backend, name, int(weight)))

    def remove_server(self, backend, name, timeout=10.0):
        """Take a server out of traffic (maintenance), then delete it once its last
        connections closed: haproxy refuses to delete a server that still has some.
        Returns False if it is still there (in maintenance, taking no traffic) after timeout."""
        self.checked("disable server %s/%s" % (backend, name))
        deadline = time.monotonic() + timeout
        while True:
            out = self.cmd("del server %s/%s" % (backend, name)).strip()
            if out.startswith("Server deleted") or not out or "No such server" in out:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def save_state(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.cmd("show servers state"))
        os.replace(tmp, path)


def _backend(key):
    return backend_name(*key.split("/", 1))


class Router(RouterBackend):
    """The project's haproxy: state directory, process, routes; the haproxy RouterBackend."""

    name = "haproxy"

    def __init__(self, state_dir, binary="haproxy"):
        self.state_dir = os.path.abspath(state_dir)
        self.binary = binary
        self.cfg = os.path.join(self.state_dir, "haproxy.cfg")
        self.routes_file = os.path.join(self.state_dir, "routes.json")
        self.pidfile = os.path.join(self.state_dir, "haproxy.pid")
        self.log_file = os.path.join(self.state_dir, "haproxy.log")
        self.runtime = Runtime(os.path.join(self.state_dir, "admin.sock"))

    @property
    def argv(self):
        return [self.binary, "-W", "-db", "-f", self.cfg]

    def pid(self):
        return svc.status(self.argv, self.pidfile)

    def load_routes(self):
        try:
            with open(self.routes_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"endpoints": {}}
        except ValueError as exc:
            raise ImmutableInfraError("router routes file %s is not valid JSON: %s" % (self.routes_file, exc))

    def write(self, routes, validate=True):
        """Validate and write the configuration, then routes.json (atomically).
        validate=False is for a change of weights only, over a configuration
        that was validated with the same servers (it saves a haproxy process)."""
        os.makedirs(self.state_dir, exist_ok=True)
        text = render_config(self.state_dir, routes)
        tmp = self.cfg + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        rc, out, err = run([self.binary, "-c", "-q", "-f", tmp], check=False, what="haproxy -c") if validate else (0, "", "")
        if rc != 0:
            os.unlink(tmp)
            raise ImmutableInfraError("router configuration is invalid: %s" % (err or out).strip(), cmd=[self.binary, "-c"])
        os.replace(tmp, self.cfg)
        rtmp = self.routes_file + ".new"
        with open(rtmp, "w") as f:
            json.dump(routes, f, indent=1, sort_keys=True)
        os.replace(rtmp, self.routes_file)

    def start(self, timeout=15.0):
        if self.pid():
            return None
        if not os.path.exists(self.cfg):
            self.write(self.load_routes())
        for path in (self.runtime.sock_path,):
            if os.path.exists(path):
                os.unlink(path)
        pid = svc.start(self.argv, self.pidfile, self.log_file, self.state_dir)
        self._wait(self.runtime.answers, timeout, "the router did not open its runtime API")
        return pid

    def stop(self):
        pid = self.pid()
        if pid:
            if self.runtime.answers():   # so that a restart brings servers back in the state they had
                self.runtime.save_state(os.path.join(self.state_dir, "server-state"))
            svc.stop(pid, self.argv, self.pidfile)
        return pid

    def reload(self, timeout=15.0):
        """Seamless reload: the master re-reads the configuration; listeners are handed over."""
        pid = self.pid()
        if not pid:
            raise ImmutableInfraError("the router is not running (no live haproxy for %s)" % self.pidfile)
        if self.runtime.answers():
            self.runtime.save_state(os.path.join(self.state_dir, "server-state"))
        before = self._worker_pids(pid)
        os.kill(pid, signal.SIGUSR2)
        self._wait(lambda: self._worker_pids(pid) - before and self.runtime.answers(), timeout,
                   "the router did not come back after a reload: %s" % svc.tail(self.log_file))

    @staticmethod
    def _worker_pids(master):
        """Children of the haproxy master, from /proc (no procps needed)."""
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(master) and fields[0] not in ("Z", "X"):
                found.add(int(entry))
        return found

    @staticmethod
    def _wait(cond, timeout, msg):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise ImmutableInfraError(msg)
            time.sleep(0.05)

    # ------------------------------------------------------------ RouterBackend
    def running(self):
        return bool(self.pid())

    def port_available(self, port):
        return not svc.port_in_use(self.listen_address, port)

    def server_weight(self, group_weight, servers_in_group):
        return server_weight(group_weight, servers_in_group)

    def stats(self, key):
        return endpoint_stats(self.runtime.stats(_backend(key)))

    def add_server(self, key, name, address, port, weight, health):
        self.runtime.add_server(_backend(key), name, address, port, weight, check_args(health))

    def set_weight(self, key, name, weight):
        self.runtime.set_weight(_backend(key), name, weight)

    def remove_server(self, key, name):
        return self.runtime.remove_server(_backend(key), name)

    def save_state(self):
        self.runtime.save_state(os.path.join(self.state_dir, "server-state"))
