# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lock file that serialises the moves of one channel on this host.

A flock(2) lock under the project state directory: the kernel drops it when
its process dies, so a killed move never blocks the next one. The registry has
no conditional write, so _lifecycle re-reads the channel under this lock and
checks the tag after writing.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import time

from ansible_collections.immutable.infra.plugins.module_utils._bake_locks import _try_lock
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

LOCK_TIMEOUT = 120


def channel_lock_path(registry, name, channel):
    """$IMMUTABLE_INFRA_STATE_DIR (or ~/.local/state/immutable.infra)/channels/<registry>/<name>/<channel>.lock"""
    base = os.environ.get("IMMUTABLE_INFRA_STATE_DIR") or os.path.expanduser("~/.local/state/immutable.infra")
    return os.path.join(base, "channels", registry, name, channel + ".lock")


class ChannelLock:
    """Exclusive lock on channel_lock_path(), waiting at most `timeout` seconds."""

    def __init__(self, registry, name, channel, timeout=LOCK_TIMEOUT):
        self.path = channel_lock_path(registry, name, channel)
        self.what = "channel %s of %s/%s" % (channel, registry, name)
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while not _try_lock(self.fd):
            if time.monotonic() > deadline:
                holder = os.pread(self.fd, 400, 0).decode("utf-8", "replace").strip()
                os.close(self.fd)
                self.fd = None
                raise ImmutableInfraError(
                    "%s is being moved by another run (%s) for more than %d s (lock file %s); wait for it to "
                    "finish, then run again" % (self.what, holder or "holder unknown", self.timeout, self.path))
            time.sleep(0.05)
        since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, ("pid %d on %s since %s\n" % (os.getpid(), socket.gethostname(), since)).encode("utf-8"), 0)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
