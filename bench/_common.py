# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What bench/bake.py and bench/release.py share: running children in their
own session, the project's registry on a port of the bench's own, the
environment of a hermetic run, podman storage bookkeeping, and summaries and
results files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that cleanup runs."""


def _on_sigterm(_signum, _frame):
    raise Interrupted()


def catch_sigterm():
    """From now on SIGTERM raises Interrupted, so that cleanup runs."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def ignore_signals():
    """Let cleanup finish: SIGTERM and SIGINT are ignored until restore_signals()."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def restore_signals():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def log(msg=""):
    print(msg, flush=True)


def cli(main):
    """Run main() as the script: exit 1 on BenchError, 130 when interrupted."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print("bench: error: %s" % exc, file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted):
        print("bench: interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)


# ------------------------------------------------------------------ processes
def stop_process(proc, grace):
    """SIGINT to the child's own process group (ansible-playbook runs its
    rescue and always sections, Packer removes its build container), then
    SIGKILL if it does not finish."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Runner:
    """Runs children in their own session, so an interrupt stops the whole
    tree we started (ansible-playbook -> modules -> packer, podman) and
    nothing else. `timeout` is the default per run, `grace` how long an
    interrupted child may take to clean up."""

    def __init__(self, env, timeout=600, grace=30):
        self.env, self.timeout, self.grace = env, timeout, grace

    def run(self, argv, cwd=None, env=None, timeout=None, out_file=None):
        """Return (rc, stdout, stderr, seconds). With out_file, stdout and
        stderr both go to that file, and its text is returned as stdout."""
        timeout = timeout or self.timeout
        out = open(out_file, "w") if out_file else subprocess.PIPE
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=cwd or TOP, env=env or self.env, stdout=out,
                                    stderr=subprocess.STDOUT if out_file else subprocess.PIPE,
                                    text=True, start_new_session=True)
        except FileNotFoundError:
            if out_file:
                out.close()
            raise BenchError("%s is not installed (not on PATH); run `make setup`" % argv[0])
        try:
            text, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, self.grace)
            raise BenchError("%s timed out after %ss" % (" ".join(argv[:3]), timeout))
        except BaseException:
            stop_process(proc, self.grace)
            raise
        finally:
            if out_file:
                out.close()
        seconds = time.monotonic() - started
        if out_file:
            with open(out_file) as f:
                text = f.read()
        return proc.returncode, text or "", err or "", seconds

    def check(self, argv, what, **kw):
        """The stdout of a run that must succeed."""
        rc, out, err, _s = self.run(argv, **kw)
        if rc != 0:
            raise BenchError("%s failed (rc=%s): %s" % (what, rc, tail(out, err)))
        return out


def tail(out, err, lines=5):
    """The last lines of a failed child's stderr (else stdout), on one line."""
    return " | ".join((err.strip() or out.strip()).splitlines()[-lines:])


def tool_version(runner, argv):
    try:
        rc, out, err, _s = runner.run(argv, timeout=60)
    except BenchError:
        return None
    text = out.strip() or err.strip()
    return text.splitlines()[0] if rc == 0 and text else None


# ------------------------------------------------------------------ registry
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Registry:
    """The project's registry, started by playbooks/registry.yml (the registry
    role, as the integration tests do) on a free loopback port under the
    bench's state directory, and stopped by its pid file the same way."""

    PLAYBOOK = os.path.join(TOP, "playbooks", "registry.yml")

    def __init__(self, state_dir, env):
        self.dir = os.path.join(state_dir, "registry")
        self.runner = Runner(env, timeout=120)
        self.proc = None  # .pid of the running registry (release.py logs it)
        self.port = None

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)

    def _converge(self, state):
        argv = ["ansible-playbook", self.PLAYBOOK, "-e", json.dumps(
            {"registry_port": self.port, "registry_state_dir": self.dir, "registry_state": state})]
        rc, out, err, _s = self.runner.run(argv)
        return None if rc == 0 else failed_task(play_doc(out)) or tail(out, err)

    def start(self):
        error = None
        for _attempt in range(3):  # the free port may be taken meanwhile: try another
            self.port = free_port()
            error = self._converge("started")
            if error is None:
                with open(os.path.join(self.dir, "registry.pid")) as f:
                    self.proc = types.SimpleNamespace(pid=int(f.read().split()[0]))
                return
        raise BenchError("the bench registry did not start (playbooks/registry.yml): %s" % error)

    def stop(self):
        if self.port is None or not os.path.exists(os.path.join(self.dir, "registry.pid")):
            return
        error = self._converge("stopped")
        if error is not None:
            log("bench: stopping the registry failed: %s" % error)
        self.proc = None


# --------------------------------------------------------- the hermetic run
def require_collection():
    if not os.path.isdir(os.path.join(TOP, ".cache", "collections", "ansible_collections", "immutable", "infra")):
        raise BenchError("the collection link is missing; run `make setup` first")


def bench_env(tmp):
    """The hermetic environment of a run, the same as the integration tests':
    the checkout's settings from scripts/env.sh (venv, ansible.cfg, podman
    config), a temporary HOME, ANSIBLE_HOME and IMMUTABLE_INFRA_STATE_DIR
    under tmp, and ansible-playbook writing JSON."""
    out = subprocess.run(["bash", "-c", '. "$1" && env -0', "env.sh", os.path.join(TOP, "scripts", "env.sh")],
                         capture_output=True, check=True).stdout.decode()
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    home = os.path.join(tmp, "home")
    env.update({
        "HOME": home,
        "ANSIBLE_HOME": os.path.join(home, ".ansible"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(tmp, "ansible-tmp"),
        "IMMUTABLE_INFRA_STATE_DIR": os.path.join(tmp, "state"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    })
    for d in (home, env["IMMUTABLE_INFRA_STATE_DIR"]):
        os.makedirs(d, exist_ok=True)
    return env


def setup(prefix, timeout=600, grace=30):
    """A temporary directory, its environment, a Runner and a (not yet
    started) Registry for one hermetic run: (tmp, env, runner, registry)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    env = bench_env(tmp)
    return tmp, env, Runner(env, timeout=timeout, grace=grace), Registry(env["IMMUTABLE_INFRA_STATE_DIR"], env)


def play_doc(stdout):
    """The ansible.posix.json callback's document, or None."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        return json.loads(stdout[start:])
    except ValueError:
        return None


def failed_task(doc):
    """"<task>: <msg>" of the first failed task in an ansible.posix.json document, or None."""
    for play in (doc or {}).get("plays", []):
        for task in play.get("tasks", []):
            for res in task.get("hosts", {}).values():
                if res.get("failed"):
                    return "%s: %s" % (task["task"].get("name"), res.get("msg"))
    return None


# ------------------------------------------------------------- podman storage
def podman_images(runner):
    """{image id: set of names} of local podman storage."""
    out = runner.check(["podman", "images", "--format", "json"], "podman images")
    return {i["Id"]: set(i.get("Names") or []) for i in json.loads(out or "[]")}


def pull_by_digest(runner, reg, name, tag):
    """Pin reg/name:tag by its digest and pull that into local storage, so
    that no timed case pays for a pull: (reference by digest, digest)."""
    digest = runner.check(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                           "docker://%s/%s:%s" % (reg, name, tag)], "skopeo inspect").strip()
    ref = "%s/%s@%s" % (reg, name, digest)
    runner.check(["podman", "pull", "-q", "--tls-verify=false", ref], "podman pull " + ref)
    return ref, digest


def restore_storage(runner, before, prefix, digests, created_ids=None):
    """Undo what the bench did to local storage: names under our registry
    (prefix), repo@digest names podman added to pre-existing images when we
    pulled by digest, and images that only the bench named or that it built
    itself (created_ids, a set: what is removed is taken out of it)."""
    created_ids = set() if created_ids is None else created_ids
    notes = []
    try:
        now = podman_images(runner)
    except BenchError as exc:
        return ["could not list images for cleanup: %s" % exc]
    for image_id, names in now.items():
        # podman adds REPO@DIGEST for each repository an image already has
        # when it is pulled by digest: only those, and names in our registry.
        repos = {re.split(r"[@]|:(?=[^:/]*$)", n)[0] for n in before.get(image_id, ())}
        pulled = {"%s@%s" % (r, d) for r in repos for d in digests}
        ours = sorted(n for n in names - before.get(image_id, set()) if n.startswith(prefix) or n in pulled)
        for name in ours:
            rc, out, err, _s = runner.run(["podman", "untag", image_id, name], timeout=60)
            if rc != 0:
                notes.append("podman untag %s %s failed: %s" % (image_id[:12], name, (err or out).strip()[-200:]))
        # An image that was not there before and carries no other names is ours.
        if image_id not in before and (ours or image_id in created_ids) and not names - set(ours):
            rc, out, err, _s = runner.run(["podman", "rmi", image_id], timeout=120)
            if rc != 0:
                notes.append("podman rmi %s failed: %s" % (image_id[:12], (err or out).strip()[-200:]))
            created_ids.discard(image_id)
    for image_id in created_ids:  # built by the bench, but someone has named it since
        if image_id in now:
            notes.append("left image %s in place: it carries names the bench did not add" % image_id[:12])
    return notes


def stop_and_restore(runner, registry, images_before, digests=(), created_ids=None):
    """Stop the bench's registry, then undo what the run did to podman storage
    (see restore_storage); what could not be undone is logged."""
    registry.stop()
    if images_before is not None:
        prefix = "%s/" % registry.address if registry.port else "//"
        for note in restore_storage(runner, images_before, prefix, set(digests), created_ids):
            log("cleanup: " + note)


def remove_containers(runner, names):
    """Remove these containers (by name) if they exist."""
    names = sorted(names)
    if names:
        runner.run(["podman", "rm", "-f", "-t", "0", "--ignore"] + names, timeout=300)


# --------------------------------------------------------------------- report
def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"n": len(values), "median": round(statistics.median(values), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def fmt(value, unit="s", width=7):
    """value with 2 decimals and its unit in width characters, or a "-" there."""
    if value is None:
        return "%*s" % (width, "-")
    return "%*.2f%s" % (width - len(unit), value, unit)


def environment(runner, tools):
    """Versions of the tools ({key: argv}) and git revision, host, cpus, Python."""
    info = {key: tool_version(runner, argv) for key, argv in tools.items()}
    info.update({
        "podman": tool_version(runner, ["podman", "version", "--format", "{{.Client.Version}}"]),
        "ansible_core": tool_version(runner, ["ansible-playbook", "--version"]),
        "revision": tool_version(runner, ["git", "-C", TOP, "describe", "--always", "--dirty"]),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
    })
    return info


def write_results(results_dir, kind, doc, elapsed):
    """results_dir/<kind>-<timestamp>.json with doc, its timestamp and total_seconds."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, "%s-%s.json" % (kind, stamp))
    with open(path, "w") as f:
        json.dump(dict(doc, timestamp=stamp, total_seconds=elapsed), f, indent=2, sort_keys=True)
        f.write("\n")
    log("results: %s (total %.0fs)" % (os.path.relpath(path, os.getcwd()), elapsed))
