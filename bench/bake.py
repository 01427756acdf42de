# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Side-by-side benchmark of a bake, in one run:

  (a) a no-op bake: unchanged inputs, catalog hit, Packer does not run;
  (b) a full bake: `bake_force: true`, Packer runs, the image is pushed;
  (c) a plain `packer build` of the same template and variables (no
      fingerprint, no catalog, no push).

(a) and (b) are timed the way users run them: wall time of
`ansible-playbook playbooks/bake.yml`. The runs are interleaved so that drift
of this shared machine hits every case alike. The point is the ratios
(no-op / full, full / plain Packer); single timings are noise here, and
nothing is asserted about them. Only correctness is checked: a no-op must
report changed=false and a full bake changed=true, else the run is flagged.

Hermetic: a temporary HOME, state directory (IMMUTABLE_INFRA_STATE_DIR) and a
registry of its own on a free loopback port, stopped by pid at the end (also
on failure or Ctrl-C); images and names it added to local podman storage are
removed again. Results also go to bench/results/bake-<timestamp>.json.

    python3 bench/bake.py [--noop 5] [--full 3] [--plain 3]      (or: make bench)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT_HOST = "127.0.0.1"
BASE_NAME = "immutable/base"
DEFAULT_BASE_REPOS = ("127.0.0.1:5000/" + BASE_NAME, "localhost:5000/" + BASE_NAME)

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: {addr}
  headers:
    X-Content-Type-Options: [nosniff]
"""


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that cleanup runs."""


def _on_sigterm(_signum, _frame):
    raise Interrupted()


def log(msg=""):
    print(msg, flush=True)


# ------------------------------------------------------------------ processes
class Runner:
    """Runs children in their own session, so an interrupt stops the whole
    tree we started (ansible-playbook -> module -> packer) and nothing else."""

    def __init__(self, env):
        self.env = env
        self.current = None

    def run(self, argv, cwd=None, env=None, timeout=900, out_file=None):
        """Return (rc, stdout_text, seconds). stdout+stderr go to out_file if given."""
        out = open(out_file, "w") if out_file else subprocess.PIPE
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=cwd or TOP, env=env or self.env, stdout=out,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
        except FileNotFoundError:
            if out_file:
                out.close()
            raise BenchError("%s is not installed (not on PATH); run `make setup`" % argv[0])
        self.current = proc
        try:
            text, _err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise BenchError("%s timed out after %ss" % (" ".join(argv[:3]), timeout))
        except BaseException:
            self.stop(proc)
            raise
        finally:
            self.current = None
            if out_file:
                out.close()
        seconds = time.monotonic() - started
        if out_file:
            with open(out_file) as f:
                text = f.read()
        return proc.returncode, text or "", seconds

    @staticmethod
    def stop(proc, grace=60):
        """SIGINT to the child's own process group (Packer cleans up its build
        container on interrupt), then SIGKILL if it does not finish."""
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


def check(runner, argv, what, **kw):
    rc, out, _s = runner.run(argv, **kw)
    if rc != 0:
        tail = " | ".join(out.strip().splitlines()[-5:])
        raise BenchError("%s failed (rc=%s): %s" % (what, rc, tail))
    return out


# ------------------------------------------------------------------ registry
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((PORT_HOST, 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, state_dir, env):
        self.dir = os.path.join(state_dir, "registry")
        self.env = env
        self.proc = None
        self.port = None

    @property
    def address(self):
        return "%s:%d" % (PORT_HOST, self.port)

    def start(self):
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        for _attempt in range(3):
            self.port = free_port()
            config = os.path.join(self.dir, "config.yml")
            with open(config, "w") as f:
                f.write(REGISTRY_CONFIG.format(data=os.path.join(self.dir, "data"), addr=self.address))
            logf = open(os.path.join(self.dir, "registry.log"), "a")
            try:
                self.proc = subprocess.Popen(["docker-registry", "serve", config], env=self.env, stdout=logf,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            except FileNotFoundError:
                raise BenchError("docker-registry is not installed; run `make setup`")
            finally:
                logf.close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen("http://%s/v2/" % self.address, timeout=2) as resp:
                        if resp.status == 200:
                            return
                except OSError:
                    time.sleep(0.1)
            self.stop()  # port taken meanwhile, or too slow: try another port
        raise BenchError("the bench registry did not start; see %s/registry.log" % self.dir)

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # by pid: only the registry this script started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ------------------------------------------------------------- podman storage
def podman_images(runner):
    """{image id: set of names} of local podman storage."""
    out = check(runner, ["podman", "images", "--format", "json"], "podman images")
    return {i["Id"]: set(i.get("Names") or []) for i in json.loads(out or "[]")}


def find_local_base(images):
    """The default catalog's base image (127.0.0.1:5000/immutable/base:TAG, left
    by `make demo`) in local storage, to copy instead of rebuilding; or None.
    Images of other registries are left alone: they belong to runs (tests)
    that may remove them at any time."""
    found = []
    for names in images.values():
        for name in names:
            repo, _sep, tag = name.rpartition(":")
            if "@" not in name and repo in DEFAULT_BASE_REPOS and tag:
                found.append((tag.isdigit(), int(tag) if tag.isdigit() else 0, name))
    return max(found)[2] if found else None


def restore_storage(runner, before, prefix, digests, created_ids):
    """Undo what the bench did to local storage: names under our registry,
    repo@digest names podman added to pre-existing images when we pulled by
    digest, the images Packer built."""
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
            rc, out, _err = runner.run(["podman", "untag", image_id, name], timeout=60)
            if rc != 0:
                notes.append("podman untag %s %s failed: %s" % (image_id[:12], name, out.strip()[-200:]))
        # An image that was not there before and carries no other names is ours.
        if image_id not in before and (ours or image_id in created_ids) and not (names - set(ours)):
            rc, out, _err = runner.run(["podman", "rmi", image_id], timeout=120)
            if rc != 0:
                notes.append("podman rmi %s failed: %s" % (image_id[:12], out.strip()[-200:]))
            created_ids.discard(image_id)
    for image_id in created_ids:  # built by plain packer, but someone has named it since
        if image_id in now:
            notes.append("left image %s in place: it carries names the bench did not add" % image_id[:12])
    return notes


def remove_containers(runner, names):
    for name in sorted(names):
        rc, _out, _err = runner.run(["podman", "container", "exists", name], timeout=60)
        if rc == 0:
            runner.run(["podman", "rm", "-f", name], timeout=120)


# ---------------------------------------------------------------- the cases
def bake_playbook(runner, registry, recipe, force):
    argv = ["ansible-playbook", os.path.join(TOP, "playbooks", "bake.yml"),
            "-e", "recipe=%s" % recipe, "-e", "catalog_registry=%s" % registry]
    if force:
        # -e bake_force=true would pass the string "true"; the play wants a bool.
        argv += ["-e", json.dumps({"bake_force": True})]
    rc, out, seconds = runner.run(argv)
    result = bake_result(out)
    if rc != 0 or result is None:
        msg = (result or {}).get("msg") or " | ".join(out.strip().splitlines()[-5:])
        raise BenchError("bake playbook failed (rc=%s): %s" % (rc, msg))
    image = result.get("image") or {}
    return {
        "seconds": round(seconds, 3),
        "changed": bool(result.get("changed")),
        "version": image.get("version"),
        "module_seconds": result.get("duration"),
        "packer_seconds": result.get("packer_seconds"),
        "fingerprint": result.get("fingerprint"),
        "parent_digest": (result.get("parent") or {}).get("digest"),
        "collections_paths": (result.get("invocation") or {}).get("module_args", {}).get("collections_paths"),
    }


def bake_result(stdout):
    """The image_bake task's result from ansible.posix.json callback output."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        doc = json.loads(stdout[start:])
    except ValueError:
        return None
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            if task.get("task", {}).get("name") == "Bake the recipe":
                return task.get("hosts", {}).get("localhost")
    for play in doc.get("plays", []):  # a failure before the bake task: return its message
        for task in play.get("tasks", []):
            res = task.get("hosts", {}).get("localhost", {})
            if res.get("failed"):
                return {"msg": "%s: %s" % (task["task"].get("name"), res.get("msg"))}
    return None


def plain_packer(runner, env, recipe_dir, parent_ref, workdir, index):
    build_name = "immutable-bench-plain-%s" % uuid.uuid4().hex[:12]
    var_file = os.path.join(workdir, "plain-%d.pkrvars.json" % index)
    with open(var_file, "w") as f:
        json.dump({"parent_image": parent_ref, "build_name": build_name,
                   "image_version": "bench-%d" % index, "image_labels": {}}, f)
    # The same flags image_bake uses, so the comparison isolates what the bake adds.
    argv = ["packer", "build", "-machine-readable", "-color=false", "-on-error=cleanup",
            "-var-file=%s" % var_file, "."]
    out_file = os.path.join(workdir, "plain-%d.log" % index)
    runner.build_names.add(build_name)
    rc, out, seconds = runner.run(argv, cwd=recipe_dir, env=env, out_file=out_file)
    ids = [m.group(1) for m in re.finditer(r"^\d+,[^,]*,artifact,\d+,id,(?:sha256:)?([0-9a-f]{64})\s*$", out, re.M)]
    runner.created_ids.update(ids)
    if rc != 0 or not ids:
        raise BenchError("plain packer build failed (rc=%s), see %s" % (rc, out_file))
    return {"seconds": round(seconds, 3), "image_id": ids[-1][:12]}


# --------------------------------------------------------------------- report
def summary(values):
    if not values:
        return None
    return {"n": len(values), "median": round(statistics.median(values), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def fmt(s):
    return "%7.2fs" % s if s is not None else "      -"


def tool_version(runner, argv):
    try:
        rc, out, _err = runner.run(argv, timeout=60)
    except BenchError:
        return None
    return out.strip().splitlines()[0] if rc == 0 and out.strip() else None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noop", type=int, default=5, help="no-op bakes (a), default 5")
    p.add_argument("--full", type=int, default=3, help="full (forced) bakes (b), default 3")
    p.add_argument("--plain", type=int, default=3, help="plain packer builds (c), default 3")
    p.add_argument("--recipe", default="web", help="a recipe shipped in packer/ (default web)")
    p.add_argument("--build-base", action="store_true",
                   help="build the parent with playbooks/base.yml (~40 s) even if a local base image can be copied")
    p.add_argument("--results-dir", default=os.path.join(TOP, "bench", "results"))
    args = p.parse_args(argv)
    if min(args.noop, args.full, args.plain) < 1:
        p.error("every case needs at least one repetition")
    if not os.path.isdir(os.path.join(TOP, "packer", args.recipe)):
        p.error("no recipe packer/%s" % args.recipe)
    return args


def provisioner_settings():
    """The environment image_bake gives Packer's ansible provisioner, from the
    collection itself when it can be imported, else a copy of it."""
    sys.path.insert(0, os.path.join(TOP, ".cache", "collections"))
    try:
        from ansible_collections.immutable.infra.plugins.module_utils._bake import PROVISIONER_ENV
        return dict(PROVISIONER_ENV), "module_utils._bake.PROVISIONER_ENV"
    except (ImportError, AttributeError):
        return {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0"}, "bench copy"
    finally:
        sys.path.pop(0)


def bench_env(tmp):
    env = dict(os.environ)
    venv_bin = os.path.join(TOP, ".venv", "bin")
    if os.path.isdir(venv_bin):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.update({
        "ANSIBLE_CONFIG": os.path.join(TOP, "ansible.cfg"),
        "CONTAINERS_CONF": os.path.join(TOP, ".cache", "containers", "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": os.path.join(TOP, ".cache", "containers", "registries.conf"),
        "CHECKPOINT_DISABLE": "1",
        "HOME": os.path.join(tmp, "home"),
        "IMMUTABLE_INFRA_STATE_DIR": os.path.join(tmp, "state"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    })
    for d in (env["HOME"], env["IMMUTABLE_INFRA_STATE_DIR"]):
        os.makedirs(d, exist_ok=True)
    return env


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(TOP, ".cache", "collections", "ansible_collections", "immutable", "infra")):
        raise BenchError("the collection link is missing; run `make setup` first")
    wall_started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="immutable-infra-bench-")
    env = bench_env(tmp)
    runner = Runner(env)
    runner.build_names, runner.created_ids = set(), set()
    registry = Registry(env["IMMUTABLE_INFRA_STATE_DIR"], env)
    images_before = None
    digests = set()
    runs = []
    info = {}
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        registry.start()
        reg = registry.address
        log("bench: registry %s (pid %d), state %s" % (reg, registry.proc.pid, tmp))
        images_before = podman_images(runner)

        # The parent image: copy a local base image if there is one, else build it.
        t0 = time.monotonic()
        local_base = None if args.build_base else find_local_base(images_before)
        base_ref = "%s/%s:1" % (reg, BASE_NAME)
        base_how = None
        if local_base:
            copy = ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                    "containers-storage:" + local_base, "docker://" + base_ref]
            rc, out, _err = runner.run(copy, timeout=600)
            base_how = "copied from local %s" % local_base if rc == 0 else None
            if rc != 0:
                log("bench: copying %s failed (%s); building the base image instead" % (local_base, out.strip()[-200:]))
        if base_how is None:
            log("bench: building the parent image with playbooks/base.yml (mmdebstrap, ~40 s)")
            check(runner, ["ansible-playbook", os.path.join(TOP, "playbooks", "base.yml"),
                           "-e", "catalog_registry=%s" % reg], "base image playbook", timeout=1800)
            base_how = "built by playbooks/base.yml"
        digest = check(runner, ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                                "docker://" + base_ref], "skopeo inspect").strip()
        digests.add(digest)
        parent_ref = "%s/%s@%s" % (reg, BASE_NAME, digest)
        check(runner, ["podman", "pull", "-q", "--tls-verify=false", parent_ref], "podman pull " + parent_ref)
        log("bench: parent %s (%s, %.1fs)" % (parent_ref, base_how, time.monotonic() - t0))

        # Plain packer: same template, same contract variables, docker -> podman shim.
        shim = os.path.join(tmp, "shim")
        os.makedirs(shim)
        os.symlink(shutil.which("podman", path=env["PATH"]) or "/usr/bin/podman", os.path.join(shim, "docker"))
        packer_env = dict(env, PATH=shim + os.pathsep + env["PATH"])
        packer_env.pop("ANSIBLE_STDOUT_CALLBACK")  # ours, for reading results; Packer gets what the bake gives it:
        provisioner_env, provisioner_env_from = provisioner_settings()
        packer_env.update(provisioner_env)
        recipe_dir = os.path.join(TOP, "packer", args.recipe)

        # Interleaved rounds (full, plain, no-op), so drift of this shared
        # machine hits every case alike. The first full bake runs against the
        # empty catalog ("new inputs"), the others are forced; the first also
        # tells the collection paths the bake hands Packer (the plain build
        # gets the same).
        first = None
        plan = []
        for i in range(max(args.noop, args.full, args.plain)):
            plan += [c for c, n in (("full", args.full), ("plain", args.plain), ("noop", args.noop)) if i < n]
        for k, case in enumerate(plan, 1):
            if case == "plain":
                if "ANSIBLE_COLLECTIONS_PATH" not in packer_env:
                    packer_env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(
                        (first or {}).get("collections_paths") or [os.path.join(TOP, ".cache", "collections")])
                r = plain_packer(runner, packer_env, recipe_dir, parent_ref, tmp, k)
                what = "image %s" % r["image_id"]
            else:
                force = case == "full" and first is not None
                r = bake_playbook(runner, reg, args.recipe, force=force)
                if case == "full":
                    r["kind"] = "force" if force else "new inputs"
                    first = first or dict(r)
                r.pop("collections_paths", None)
                expected = case == "full"
                r["valid"] = r["changed"] == expected
                what = "%s:%s %s" % (args.recipe, r["version"], "unchanged" if not r["changed"]
                                     else "baked (%s)" % r.get("kind", "unexpectedly"))
                if r["packer_seconds"] is not None:
                    what += ", module %.1fs, packer %.1fs" % (r["module_seconds"], r["packer_seconds"])
                elif r["module_seconds"] is not None:
                    what += ", module %.2fs" % r["module_seconds"]
                if not r["valid"]:
                    what += "  !! expected %s: not counted (did the recipe or a role change meanwhile?)" % (
                        "a bake" if expected else "a catalog hit")
            r["case"] = case
            runs.append(r)
            log("  [%2d/%d] %-5s %6.2fs  %s" % (k, len(plan), case, r["seconds"], what))

        # --------------------------------------------------------------- report
        def times(case, key="seconds"):
            return [r[key] for r in runs if r["case"] == case and r.get("valid", True) and r.get(key) is not None]

        stats = {c: summary(times(c)) for c in ("noop", "full", "plain")}
        inner = {"full_module": summary(times("full", "module_seconds")),
                 "full_packer": summary(times("full", "packer_seconds")),
                 "noop_module": summary(times("noop", "module_seconds"))}
        med = {c: (stats[c] or {}).get("median") for c in stats}
        ratios = {
            "noop_over_full": round(med["noop"] / med["full"], 3) if med["noop"] and med["full"] else None,
            "full_over_plain": round(med["full"] / med["plain"], 3) if med["full"] and med["plain"] else None,
            "full_packer_over_plain": (round(inner["full_packer"]["median"] / med["plain"], 3)
                                       if inner["full_packer"] and med["plain"] else None),
        }
        info = {
            "packer": tool_version(runner, ["packer", "version"]),
            "podman": tool_version(runner, ["podman", "version", "--format", "{{.Client.Version}}"]),
            "ansible_core": tool_version(runner, ["ansible-playbook", "--version"]),
            "revision": tool_version(runner, ["git", "-C", TOP, "describe", "--always", "--dirty"]),
            "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        }
        labels = {"noop": "(a) no-op bake (catalog hit)", "full": "(b) full bake",
                  "plain": "(c) plain packer build"}
        log()
        log("immutable.infra bake benchmark: recipe %s, %s cpus, %s, %s" % (
            args.recipe, info["cpus"], info["packer"], info["revision"]))
        log("%-30s %3s %8s %8s %8s" % ("case (wall time)", "n", "median", "min", "max"))
        for c in ("noop", "full", "plain"):
            s = stats[c] or {}
            log("%-30s %3s %s %s %s" % (labels[c], s.get("n", 0), fmt(s.get("median")), fmt(s.get("min")), fmt(s.get("max"))))
        if inner["full_module"] and inner["full_packer"]:
            log("inside (b), module's own figures: module %.2fs, of which packer %.2fs" % (
                inner["full_module"]["median"], inner["full_packer"]["median"]))
        if inner["noop_module"]:
            log("inside (a), module's own figure:  module %.2fs (fingerprint + catalog lookup)" % inner["noop_module"]["median"])
        log()
        log("noop/full         = %s" % ("%.2fx" % ratios["noop_over_full"] if ratios["noop_over_full"] else "n/a"))
        if ratios["full_over_plain"]:
            log("full/plain-packer = %.2fx  (the bake's overhead over plain Packer: %+.1fs)" % (
                ratios["full_over_plain"], med["full"] - med["plain"]))
        if ratios["full_packer_over_plain"]:
            log("packer-in-bake/plain-packer = %.2fx" % ratios["full_packer_over_plain"])
        invalid = [r for r in runs if not r.get("valid", True)]
        if invalid:
            log("note: %d run(s) did not do what their case means and were not counted" % len(invalid))

        elapsed = round(time.monotonic() - wall_started, 1)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        os.makedirs(args.results_dir, exist_ok=True)
        path = os.path.join(args.results_dir, "bake-%s.json" % stamp)
        with open(path, "w") as f:
            json.dump({
                "timestamp": stamp, "recipe": args.recipe,
                "repetitions": {"noop": args.noop, "full": args.full, "plain": args.plain},
                "environment": info, "base_image": base_how,
                "plain_packer_env": {k: packer_env.get(k) for k in sorted(provisioner_env) + ["ANSIBLE_COLLECTIONS_PATH"]},
                "plain_packer_env_from": provisioner_env_from,
                "summary": stats, "inside_bake": inner, "ratios": ratios, "runs": runs,
                "total_seconds": elapsed,
            }, f, indent=2, sort_keys=True)
            f.write("\n")
        log("results: %s (total %.0fs)" % (os.path.relpath(path, os.getcwd()), elapsed))
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # let cleanup finish
        try:
            # Build containers left by an interrupted run: the plain ones by name,
            # the bake's by the names Packer wrote to this bench's own bake logs.
            names = set(runner.build_names)
            logs = os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "bake-logs")
            for fn in os.listdir(logs) if os.path.isdir(logs) else []:
                with open(os.path.join(logs, fn), errors="replace") as f:
                    names.update(re.findall(r"immutable-bake-[a-z0-9-]+-[0-9a-f]{12}", f.read()))
            remove_containers(runner, names)
            registry.stop()
            if images_before is not None:
                for note in restore_storage(runner, images_before, "%s/" % registry.address if registry.port else "//",
                                            digests, runner.created_ids):
                    log("cleanup: " + note)
        finally:
            registry.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print("bench: error: %s" % exc, file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted):
        print("bench: interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
