# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Garbage collection of the project's own registry (the registry role's daemon),
in one process: stop -> `docker-registry garbage-collect` -> start, the start in a
`finally` that waits until /v2/ answers. The module's worker survives a kill of
the main ansible-playbook process, so such a kill cannot leave the registry
stopped. A registry the project does not own is never stopped or collected."""

from __future__ import annotations

import os
import re
import signal
import subprocess

from ansible_collections.immutable.infra.plugins.module_utils import _service as svc
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# The registry role's defaults (roles/registry/defaults/main.yml: registry_binary) and its start argv.
REGISTRY_BINARY = "docker-registry"
BLOBS_DIR = os.path.join("data", "docker", "registry", "v2", "blobs")
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def paths(state_dir):
    return {"config": os.path.join(state_dir, "config.yml"), "pidfile": os.path.join(state_dir, "registry.pid"),
            "log_file": os.path.join(state_dir, "registry.log"), "blobs": os.path.join(state_dir, BLOBS_DIR)}


def serve_argv(state_dir):
    """The role's start command (tasks/main.yml: registry_binary serve <state_dir>/config.yml)."""
    return [REGISTRY_BINARY, "serve", paths(state_dir)["config"]]


def gc_argv(state_dir, delete_untagged):
    return ([REGISTRY_BINARY, "garbage-collect"] + (["--delete-untagged"] if delete_untagged else [])
            + [paths(state_dir)["config"]])


def health_url(registry, config_text=None):
    """The role's health URL: http://<listen address>:<port>/v2/, or with TLS or authentication on
    (http.debug.addr in the configuration), the debug server's http://<debug addr>/debug/health."""
    match = re.search(r"^  debug:\n    addr: *['\"]?([^'\"\s#]+)", config_text or "", re.M)
    return "http://%s/debug/health" % match.group(1) if match else "http://%s/v2/" % registry


def config_addr(text):
    """http.addr of a registry configuration (the role's config.yml), or None.

    Only the block layout the role's template writes is read (no YAML library in module_utils)."""
    in_http, child_indent = False, None
    for line in (text or "").splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped.strip():
            continue
        indent = len(stripped) - len(stripped.lstrip())
        if not indent:
            in_http, child_indent = stripped == "http:", None
            continue
        child_indent = child_indent or indent
        key, sep, value = stripped.strip().partition(":")
        if in_http and indent == child_indent and sep and key == "addr":
            return value.strip().strip("'\"") or None
    return None


def decide(registry, pid, addr, state_dir):
    """(owned, reason): the project owns the registry when a docker-registry runs from the role's pid file
    and the role's configuration listens on `registry`."""
    p = paths(state_dir)
    if not pid:
        return False, ("no %s is running from %s" % (REGISTRY_BINARY, p["pidfile"]))
    if addr != registry:
        return False, ("%s listens on %s, not on %s" % (p["config"], addr or "nothing (no http.addr)", registry))
    return True, "%s (pid %d) from %s listens on %s" % (REGISTRY_BINARY, pid, p["pidfile"], registry)


def count_blobs(blobs_dir):
    """(number, bytes) of the blobs stored under blobs_dir (files named `data`)."""
    count = size = 0
    for root, _dirs, files in os.walk(blobs_dir):
        if "data" in files:
            try:
                size += os.stat(os.path.join(root, "data")).st_size
                count += 1
            except FileNotFoundError:
                pass
    return count, size


def ownership(registry, state_dir):
    """(owned, reason, pid) as read now from state_dir."""
    p = paths(state_dir)
    pid = svc.status(serve_argv(state_dir), p["pidfile"])
    try:
        with open(p["config"]) as f:
            addr = config_addr(f.read())
    except OSError:
        addr = None
    owned, reason = decide(registry, pid, addr, state_dir)
    return owned, reason, pid


class _Interrupted(Exception):
    pass


def collect(registry, state_dir, delete_untagged=True, health_timeout=15.0, check_mode=False):
    """Collect the garbage of the project's own registry; report the blobs and bytes freed."""
    if ":" not in (registry or ""):
        raise ImmutableInfraError("registry %r is not host:port: pass the address the registry listens on, "
                                  "e.g. 127.0.0.1:5000" % (registry,))
    p = paths(state_dir)
    owned, reason, pid = ownership(registry, state_dir)
    blobs, size = count_blobs(p["blobs"])
    result = {"changed": False, "owned": owned, "reason": reason, "registry": registry, "pid": pid,
              "blobs_before": blobs, "bytes_before": size, "blobs_after": blobs, "bytes_after": size,
              "freed_blobs": 0, "freed_bytes": 0, "cmd": gc_argv(state_dir, delete_untagged)}
    if not owned or check_mode:
        return result
    result["changed"] = True
    argv = serve_argv(state_dir)
    with open(p["config"]) as f:
        url = health_url(registry, f.read())
    gc = _stop_collect_start(argv, p, result["cmd"], url, health_timeout, pid)
    blobs_after, size_after = count_blobs(p["blobs"])
    result.update(pid=svc.status(argv, p["pidfile"]), blobs_after=blobs_after, bytes_after=size_after,
                  freed_blobs=blobs - blobs_after, freed_bytes=size - size_after, rc=gc.returncode)
    if gc.returncode != 0:
        raise ImmutableInfraError("%s failed (rc=%d): %s; the registry was started again"
                                  % (" ".join(result["cmd"]), gc.returncode, (gc.stderr or gc.stdout)[-2000:]),
                                  cmd=result["cmd"], rc=gc.returncode, stderr=gc.stderr, **{"pid": result["pid"]})
    return result


def _stop_collect_start(argv, p, cmd, url, health_timeout, pid):
    """Stop, collect, and start again whatever happens; a SIGTERM/SIGINT/SIGHUP to this process aborts the
    collection (its child is killed by subprocess.run) but not the start."""
    caught = []
    collecting = [True]

    def on_signal(signum, _frame):
        caught.append(signum)
        if collecting[0]:
            raise _Interrupted()

    previous = {s: signal.signal(s, on_signal) for s in _SIGNALS}
    try:
        svc.stop(pid, argv, p["pidfile"])
        return subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    except _Interrupted:
        return None
    except FileNotFoundError:
        raise ImmutableInfraError("cannot collect garbage: %s is not installed" % REGISTRY_BINARY, cmd=cmd)
    finally:
        collecting[0] = False
        try:
            svc.stop(pid, argv, p["pidfile"])       # a no-op unless a signal interrupted the first stop
            svc.start(argv, p["pidfile"], p["log_file"], health_url=url, health_timeout=health_timeout)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        if caught:
            raise ImmutableInfraError("garbage collection interrupted by signal %d; the registry was started again"
                                      % caught[0], cmd=cmd)
