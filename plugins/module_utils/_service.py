# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local daemons owned by the project (registry, router): no init system is
assumed. A daemon is known by its pid file; it is stopped by that pid only,
never by name, and a recycled pid is not mistaken for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import http.client
from urllib.parse import urlsplit

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def read_pid(pidfile):
    try:
        with open(pidfile) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def process_matches(pid, executable):
    """True when pid is a live (not zombie) process running `executable`."""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode(errors="replace")
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return os.path.basename(argv0) == os.path.basename(executable)


def status(argv, pidfile):
    pid = read_pid(pidfile)
    return pid if process_matches(pid, argv[0]) else None


def port_in_use(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


def http_status(url, timeout=2.0):
    """HTTP status of a plain-http loopback URL, or None when nothing answered.

    http.client on purpose: open_url builds an SSL context per call (~55 ms of
    CPU), which dominated health checks of 20 instances polled together."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ImmutableInfraError("health checks take http:// URLs, not %r" % (url,))
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + ("?" + parts.query if parts.query else ""))
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def check_health(url, timeout=2.0):
    status = http_status(url, timeout)
    return status is not None and 200 <= status < 400


def start(argv, pidfile, log_file, chdir=None, env=None, health_url=None, health_timeout=15.0):
    """Start argv detached, record its pid, wait for health; return the pid."""
    for path in (pidfile, log_file):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_file, "ab") as log:
        try:
            proc = subprocess.Popen(argv, cwd=chdir, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except FileNotFoundError:
            raise ImmutableInfraError("cannot start %s: %s is not installed" % (argv[0], argv[0]), cmd=argv)
    with open(pidfile, "w") as f:
        f.write("%d\n" % proc.pid)
    deadline = time.monotonic() + health_timeout
    while True:
        rc = proc.poll()
        if rc is not None:
            _remove(pidfile)
            raise ImmutableInfraError("%s exited at start (rc=%d): %s" % (argv[0], rc, tail(log_file)),
                                      cmd=argv, rc=rc, log_file=log_file)
        if health_url is None or check_health(health_url):
            return proc.pid
        if time.monotonic() > deadline:
            stop(proc.pid, argv, pidfile)
            raise ImmutableInfraError("%s did not become healthy at %s within %ss: %s"
                                      % (argv[0], health_url, health_timeout, tail(log_file)),
                                      cmd=argv, log_file=log_file)
        time.sleep(0.05)


def stop(pid, argv, pidfile, timeout=10.0):
    """Stop the daemon with this pid (SIGTERM, then SIGKILL) and drop its pid file."""
    if process_matches(pid, argv[0]):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_matches(pid, argv[0]) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if process_matches(pid, argv[0]):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    _remove(pidfile)


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(ln.strip() for ln in f.readlines()[-lines:] if ln.strip())
    except OSError:
        return ""
