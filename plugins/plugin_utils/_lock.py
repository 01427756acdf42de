# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release lock per app/stack that works across processes on one controller.

The lock file names its owner: the ansible-playbook process. A lock whose
owner is gone (a killed run) is stale and is taken over, so a crash never
blocks the next run."""

from __future__ import annotations

import json
import os
import socket
import time


def owner_alive(pid):
    try:
        with open("/proc/%d/stat" % int(pid)) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state not in ("Z", "X")


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def acquire(path, owner_pid, what):
    """Take the lock or raise RuntimeError naming who holds it. Returns (changed, note)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {"pid": owner_pid, "host": socket.gethostname(), "since": time.time(), "what": what}
    note = None
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read(path)
            if held and held.get("pid") == owner_pid:
                return False, "already held by this run"
            if held and owner_alive(held.get("pid", 0)):
                raise RuntimeError("%s is locked: another run holds it (pid %s on %s since %s, lock file %s)" % (
                    what, held["pid"], held.get("host"),
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("since", 0))), path))
            note = "took over a stale lock of pid %s" % (held or {}).get("pid")
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return True, note
    raise RuntimeError("could not take the lock %s" % path)


def release(path, owner_pid):
    held = read(path)
    if held is None or held.get("pid") != owner_pid:
        return False
    os.unlink(path)
    return True
