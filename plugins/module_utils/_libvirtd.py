# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The machine's libvirt daemons, without systemd.

When the system libvirt socket does not answer, the project starts virtlogd and
libvirtd itself (`-d`, its own config and pid files under RUN_DIR), once per
machine: a lock file makes two modules starting them at once start them once.
It stops only the daemons its own pid files name, after checking that each pid
still is that daemon; a libvirtd it did not start is never touched.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from urllib.parse import parse_qs, urlsplit

from ansible_collections.immutable.infra.plugins.module_utils import _service
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock"
RUN_DIR = "/run/immutable-infra/libvirt"
# Started in this order, stopped in the reverse one.
DAEMONS = (("virtlogd", VIRTLOGD_SOCKET), ("libvirtd", SYSTEM_SOCKET))


def default_uri():
    """qemu:///system for root (one daemon per machine), qemu:///session otherwise."""
    return "qemu:///system" if os.geteuid() == 0 else "qemu:///session"


def uri_socket(uri):
    """The unix socket a local qemu URI talks to, or None when libvirt itself
    takes care of it (a session URI autostarts its daemon) or it is remote."""
    parts = urlsplit(uri)
    given = parse_qs(parts.query).get("socket")
    if given:
        return given[0]
    if parts.scheme in ("qemu", "qemu+unix") and not parts.netloc and parts.path == "/system":
        return SYSTEM_SOCKET
    return None


def answers(path, timeout=2.0):
    """True when something accepts connections on the unix socket at path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _pid_file(run_dir, daemon):
    return os.path.join(run_dir, daemon + ".pid")


def _log_file(run_dir, daemon):
    return os.path.join(run_dir, daemon + ".log")


def _tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def _start(daemon, sock, run_dir, timeout):
    conf = os.path.join(run_dir, daemon + ".conf")
    with open(conf, "w") as f:
        # Logs beside the pid file: /var/log/libvirt may not exist without the Debian service package.
        f.write('# Written by immutable.infra\nlog_outputs = "3:file:%s"\n' % _log_file(run_dir, daemon))
    run([daemon, "-d", "-f", conf, "-p", _pid_file(run_dir, daemon)], what="start %s" % daemon, timeout=60)
    begun = time.monotonic()
    while not answers(sock):
        # A daemon that failed to initialise exits (its pid file goes): no need to wait the whole timeout.
        gone = time.monotonic() - begun > 2 and _pid_of(run_dir, daemon) is None
        if gone or time.monotonic() - begun > timeout:
            raise ImmutableInfraError(
                "%s was started but nothing answers on %s (%s; is the libvirt-qemu user missing? run "
                "scripts/setup.sh); its log: %s" % (daemon, sock, "it exited" if gone else "after %ss" % timeout,
                                                    _tail(_log_file(run_dir, daemon))))
        time.sleep(0.1)


def ensure_running(uri, run_dir=RUN_DIR, timeout=30):
    """Make sure the libvirt daemon behind `uri` answers; True when this call started it."""
    sock = uri_socket(uri)
    if sock is None or answers(sock):
        return False
    if sock != SYSTEM_SOCKET:
        raise ImmutableInfraError("libvirt is not available at %s: nothing answers on %s; start the libvirtd "
                                  "serving it, or use qemu:///system, which the project starts itself" % (uri, sock))
    if os.geteuid() != 0:
        raise ImmutableInfraError("libvirt is not available at %s and only root can start the system libvirtd: "
                                  "start it, or use qemu:///session" % uri)
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    with open(os.path.join(run_dir, "start.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if answers(sock):
            return False
        for daemon, daemon_sock in DAEMONS:
            if not answers(daemon_sock):
                _start(daemon, daemon_sock, run_dir, timeout)
    return True


def _pid_of(run_dir, daemon):
    """The live pid in the project's pid file of daemon, or None (no file, stale, or reused by another program)."""
    return _service.status([daemon], _pid_file(run_dir, daemon))


def started(run_dir=RUN_DIR):
    """{daemon: pid} of the daemons the project started that still run."""
    pids = {daemon: _pid_of(run_dir, daemon) for daemon, _sock in DAEMONS}
    return {daemon: pid for daemon, pid in pids.items() if pid}


def stop(run_dir=RUN_DIR, timeout=30):
    """Stop the daemons the project started (SIGTERM by pid, SIGKILL after timeout); return their names.

    Running domains survive: their qemu processes outlive libvirtd, which finds them again when it restarts.
    (playbooks/libvirt.yml does the same through the local_service module.)
    """
    stopped = []
    for daemon, _sock in reversed(DAEMONS):
        pid = _pid_of(run_dir, daemon)
        if pid:
            _service.stop(pid, [daemon], _pid_file(run_dir, daemon), timeout)
            stopped.append(daemon)
    return stopped
