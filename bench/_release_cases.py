# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cases bench/release.py measures, and what they need: the platform's
playbooks (release, rollback, decommission) for an app of the bench's own,
containers started by podman directly (floor) or updated in place by the
web role (in place), health and version probes over HTTP, a client on the
endpoint while a release runs, and reading the ansible.posix.json output."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import random
import string
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from _common import HOST, TOP, BenchError, play_doc, remove_containers, stop_process, tail

SERVICE_PORT = 8080
HEALTH_PATH = "/healthz"
HEALTH_INTERVAL = 0.5      # release.yml's release_health_check.interval
START_WORKERS = 4          # the podman platform starts 4 instances at a time
POLL = 0.05                # how finely the floor and in-place cases watch for health

INPLACE_PLAYBOOK = """\
---
# The conventional, mutable way: change the running servers in place.
- name: Update the web service in place
  hosts: inplace
  gather_facts: false
  roles:
    - role: immutable.infra.web
"""


def podman(argv, env, timeout=120):
    """A short podman command from a worker thread: (rc, stdout, stderr)."""
    proc = subprocess.run(["podman"] + argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


# ------------------------------------------------------------------ HTTP
def http_get(port, path, timeout=2.0):
    """(status, body) of GET http://127.0.0.1:port/path on a new connection; (None, error) when nothing answered."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc)
    finally:
        conn.close()


def served_version(port):
    status, body = http_get(port, "/version")
    if status != 200:
        return None
    try:
        return str(json.loads(body).get("version"))
    except (ValueError, AttributeError):
        return None


def wait_all_ok(ports, timeout=120):
    """Seconds until every port answered GET /healthz with 200 (each is
    probed every POLL seconds until it did)."""
    started = time.monotonic()
    pending = list(ports)
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(pending)))) as pool:
        while pending:
            answers = list(pool.map(lambda p: http_get(p, HEALTH_PATH, timeout=1.0)[0], pending))
            pending = [p for p, status in zip(pending, answers) if status != 200]
            if not pending:
                break
            if time.monotonic() - started > timeout:
                raise BenchError("%d container(s) did not answer %s within %ss" % (len(pending), HEALTH_PATH, timeout))
            time.sleep(POLL)
    return time.monotonic() - started


class Loadgen:
    """playbooks/files/loadgen.py as a child process: `workers` clients, each
    pausing so that together they send about `rate` requests per second, a new
    connection each (so each is routed anew); counts failures and versions."""

    def __init__(self, port, rate, workdir, env, workers=4):
        self.stop_file = os.path.join(workdir, "loadgen-%s.stop" % time.monotonic_ns())
        self.out = self.stop_file[:-5] + ".json"
        self.argv = [sys.executable, os.path.join(TOP, "playbooks", "files", "loadgen.py"), "--url",
                     "http://%s:%d/version" % (HOST, port), "--stop-file", self.stop_file, "--out", self.out,
                     "--duration", "600", "--concurrency", str(workers), "--pause", "%.3f" % (workers / rate)]
        self.env = env
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def stop(self):
        if self.proc is None:
            return None
        with open(self.stop_file, "w"):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, grace=5)
        self.proc = None
        try:
            with open(self.out) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None
        return {"requests": doc.get("requests"), "failed": doc.get("failed"), "versions": doc.get("versions"),
                "errors": doc.get("errors", [])[:5]}


# ------------------------------------------------------------ ansible output
def _ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def tasks_of(doc):
    """[(name, seconds, {host: result})] in run order; seconds from the callback's duration start/end."""
    out = []
    for play in (doc or {}).get("plays", []):
        for task in play.get("tasks", []):
            info = task.get("task", {})
            dur = info.get("duration", {})
            seconds = round(_ts(dur["end"]) - _ts(dur["start"]), 3) if dur.get("start") and dur.get("end") else None
            out.append((info.get("name", ""), seconds, task.get("hosts", {})))
    return out


def play_seconds(doc):
    total = 0.0
    for play in (doc or {}).get("plays", []):
        dur = play.get("play", {}).get("duration", {})
        if dur.get("start") and dur.get("end"):
            total += _ts(dur["end"]) - _ts(dur["start"])
    return round(total, 3)


def first_task(tasks, prefix):
    for name, seconds, hosts in tasks:
        if name.startswith(prefix):
            return seconds, hosts.get("localhost", {})
    return None, {}


def failure(tasks, out, err):
    for name, _sec, hosts in tasks:
        for host, res in hosts.items():
            if res.get("failed") or res.get("unreachable"):
                return "%s [%s]: %s" % (name, host, str(res.get("msg"))[:400])
    return tail(out, err)[:600]


# ---------------------------------------------------------------- the cases
class Bench:
    def __init__(self, args, env, runner, workdir, registry):
        self.args, self.env, self.runner, self.workdir, self.registry = args, env, runner, workdir, registry
        self.app = "bench" + "".join(random.choice(string.ascii_lowercase + string.digits) for _i in range(8))
        self.refs = {}            # version -> image reference pinned by digest in the bench registry
        self.stacks = {}          # stack -> endpoint port
        self.names = set()        # containers the bench started itself (floor, in place)
        self.load_dir = os.path.join(workdir, "load")
        os.makedirs(self.load_dir, exist_ok=True)

    # -- the platform's playbooks
    def playbook(self, name, extra, timeout=600):
        argv = ["ansible-playbook", os.path.join(TOP, "playbooks", name)]
        for key, value in extra.items():
            argv += ["-e", "%s=%s" % (key, value)]
        rc, out, err, seconds = self.runner.run(argv, timeout=timeout)
        doc = play_doc(out)
        tasks = tasks_of(doc)
        if rc != 0:
            raise BenchError("%s %s failed (rc=%s): %s" % (name, " ".join("%s=%s" % kv for kv in extra.items()),
                                                           rc, failure(tasks, out, err)))
        return seconds, doc, tasks

    def release(self, stack, version, count):
        extra = {"app": self.app, "stack": stack, "image": "web:%s" % version, "release_count": count,
                 "release_verify_seconds": 0, "release_keep": 2, "release_port": self.stacks[stack],
                 "catalog_registry": self.registry}
        seconds, doc, tasks = self.playbook("release.yml", extra)
        sg_seconds, sg = first_task(tasks, "Create the new server group")
        sw_seconds, sw = first_task(tasks, "Move traffic to")
        ret = [s for n, s, _h in tasks if n == "Remove old groups" and s]
        return {
            "seconds": round(seconds, 3), "play_seconds": play_seconds(doc),
            "server_group_seconds": sg_seconds, "switch_seconds": sw_seconds,
            "retention_seconds": round(sum(ret), 3) if ret else None,
            "group": (sg.get("group") or {}).get("name"), "created": len(sg.get("created") or []),
            "switched": bool(sw.get("changed")),
            "tasks": [[n, s] for n, s, _h in tasks],
        }

    def rollback(self, stack):
        extra = {"app": self.app, "stack": stack, "catalog_registry": self.registry}
        seconds, doc, tasks = self.playbook("rollback.yml", extra)
        sw_seconds, sw = first_task(tasks, "Move traffic back to")
        names = [n for n, _s, _h in tasks if n.startswith("Move traffic back to")]
        return {"seconds": round(seconds, 3), "play_seconds": play_seconds(doc), "switch_seconds": sw_seconds,
                "switched": bool(sw.get("changed")), "task": names[0] if names else None,
                "tasks": [[n, s] for n, s, _h in tasks]}

    def decommission(self, stack, group=None):
        extra = {"app": self.app, "stack": stack}
        if group:
            extra["decommission_group"] = group
        else:
            extra["decommission_force"] = "true"
        return self.playbook("decommission.yml", extra)[0]

    def load(self, port):
        if self.args.load == "none":
            return None
        workers = 4 if self.args.load == "loadgen" else 1
        return Loadgen(port, self.args.rate, self.load_dir, self.env, workers).start()

    # -- containers of our own
    def start_containers(self, names, image, as_root=False):
        """Start containers 4 at a time, then read their host ports with one
        `podman ps` (not one lookup per container): {name: host port}."""
        def one(name):
            self.names.add(name)
            argv = ["run", "-d", "--name", name, "-p", "%s::%d" % (HOST, SERVICE_PORT)]
            if as_root:
                argv += ["--user", "root"]
            rc, out, err = podman(argv + [image], self.env)
            if rc != 0:
                raise BenchError("podman run %s failed: %s" % (name, (err or out).strip()[-300:]))

        with ThreadPoolExecutor(max_workers=START_WORKERS) as pool:
            list(pool.map(one, names))
        prefix = os.path.commonprefix(names)
        rc, out, err = podman(["ps", "--format", "json", "--filter", "name=^%s" % prefix], self.env)
        if rc != 0:
            raise BenchError("podman ps failed: %s" % (err or out).strip()[-300:])
        ports = {}
        for entry in json.loads(out or "[]"):
            name = (entry.get("Names") or [""])[0]
            for mapping in entry.get("Ports") or []:
                if name in names and int(mapping.get("container_port") or 0) == SERVICE_PORT and mapping.get("host_port"):
                    ports[name] = int(mapping["host_port"])
        missing = sorted(set(names) - set(ports))
        if missing:
            raise BenchError("no published port for %s" % ", ".join(missing))
        return ports

    def remove_containers(self, names):
        remove_containers(self.runner, names)
        self.names.difference_update(names)

    def floor(self, count, tag):
        names = ["%s-floor-%s-%d" % (self.app, tag, i) for i in range(count)]
        started = time.monotonic()
        try:
            ports = self.start_containers(names, self.refs["2"])
            started_s = time.monotonic() - started
            wait_all_ok(list(ports.values()))
            up = time.monotonic() - started
        finally:
            self.remove_containers(names)
        return {"seconds": round(up + HEALTH_INTERVAL, 3), "all_ok_seconds": round(up, 3),
                "start_seconds": round(started_s, 3)}

    def inplace(self, count, tag):
        names = ["%s-inplace-%s-%d" % (self.app, tag, i) for i in range(count)]
        inventory = os.path.join(self.workdir, "inplace-%s.ini" % tag)
        playbook = os.path.join(self.workdir, "inplace.yml")
        with open(playbook, "w") as f:
            f.write(INPLACE_PLAYBOOK)
        with open(inventory, "w") as f:
            # The image runs as user web; the podman connection's put_file then
            # chowns as that user and fails for ansible_user=root (containers.podman
            # 1.18), so these containers run as root, as a mutable server's
            # configuration management would.
            f.write("[inplace]\n%s\n\n[inplace:vars]\nansible_connection=containers.podman.podman\n"
                    "ansible_python_interpreter=/usr/bin/python3\n" % "\n".join(names))
        extra = json.dumps({"web_image_version": "2", "web_message": "updated in place by bench/release.py"})
        try:
            ports = self.start_containers(names, self.refs["1"], as_root=True)   # untimed
            wait_all_ok(list(ports.values()))
            started = time.monotonic()
            rc, out, err, play_s = self.runner.run(["ansible-playbook", "-i", inventory, "-f", str(min(count, 10)),
                                                    "-e", extra, playbook])
            doc = play_doc(out)
            if rc != 0:
                raise BenchError("in-place playbook failed (rc=%s): %s" % (rc, failure(tasks_of(doc), out, err)))
            t_restart = time.monotonic()

            def restart(name):
                rc, out, err = podman(["restart", name], self.env)
                if rc != 0:
                    raise BenchError("podman restart %s failed: %s" % (name, (err or out).strip()[-300:]))

            with ThreadPoolExecutor(max_workers=START_WORKERS) as pool:
                list(pool.map(restart, names))
            restart_s = time.monotonic() - t_restart
            wait_s = wait_all_ok(list(ports.values()))
            seconds = time.monotonic() - started
            versions = [served_version(p) for p in ports.values()]
            stats = (doc or {}).get("stats", {})
        finally:
            self.remove_containers(names)
        return {"seconds": round(seconds, 3), "playbook_seconds": round(play_s, 3), "restart_seconds": round(restart_s, 3),
                "wait_seconds": round(wait_s, 3), "changed_per_host": sorted({s.get("changed", 0) for s in stats.values()}),
                "valid": all(v == "2" for v in versions) and len(stats) == count,
                "versions": sorted(set(str(v) for v in versions))}
