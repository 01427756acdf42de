# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bake locks: two bakes started together never pick the same version, and
the same inputs are baked once.

Lock files live under <state dir>/bake-locks/<registry>/<repository>/:

- inputs-<fingerprint>.lock is held for a whole bake of those inputs. A
  second bake of the same inputs waits for it, then plans again and finds
  the version the first one published.
- numbers.lock is held for a moment, while a version is chosen: the next
  number after every tag in the registry and every version being baked.
- version-<version>.lock is held from that choice until the version is
  published. A version is "being baked" while its file is locked.

They are flock(2) locks: the kernel drops them when their process dies, so a
killed bake never blocks the next one. flock works between the processes of
one host (and of hosts sharing a file system that supports it). Bakes on
hosts with separate disks (AWX jobs in their own containers) are not
serialised by them: the catalog's publish guard still refuses to overwrite a
version.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def _part(text):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _try_lock(fd):
    """Take an exclusive flock without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class BakeLocks:
    """The bake locks of one repository, as a context manager that releases them all."""

    def __init__(self, base, registry, name):
        self.dir = os.path.join(base, _part(registry), *[_part(p) for p in name.split("/")])
        self.name = name
        self._held = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def release(self):
        while self._held:
            os.close(self._held.pop())

    def _open(self, filename):
        os.makedirs(self.dir, exist_ok=True)
        return os.open(os.path.join(self.dir, filename), os.O_RDWR | os.O_CREAT, 0o644)

    def hold_inputs(self, fp, timeout=3600, poll=0.2):
        """Wait until no other bake of these inputs runs, and hold them; return the seconds waited."""
        path = "inputs-%s.lock" % _part(fp.split(":", 1)[-1])
        fd = self._open(path)
        started = time.monotonic()
        while not _try_lock(fd):
            if time.monotonic() - started > timeout:
                os.close(fd)
                raise ImmutableInfraError(
                    "another bake of the same inputs of %s has held %s for over %ss; wait for it or end it"
                    % (self.name, os.path.join(self.dir, path), timeout))
            time.sleep(poll)
        self._held.append(fd)
        return round(time.monotonic() - started, 3)

    def being_baked(self):
        """Versions whose lock another live bake holds. Call with numbers.lock held.
        Free lock files are removed: they are only ever opened under numbers.lock."""
        taken = []
        for fn in sorted(os.listdir(self.dir)):
            if not (fn.startswith("version-") and fn.endswith(".lock")):
                continue
            path = os.path.join(self.dir, fn)
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                if _try_lock(fd):
                    os.unlink(path)
                else:
                    taken.append(fn[len("version-"):-len(".lock")])
            finally:
                os.close(fd)
        return taken

    def reserve(self, choose):
        """Choose a version atomically and hold it until release().

        choose(being_baked) -> version runs with numbers.lock held; it must
        read the registry itself, so that the choice sees every published tag.
        """
        fd = self._open("numbers.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            version = str(choose(self.being_baked()))
            vfd = self._open("version-%s.lock" % version)
            if not _try_lock(vfd):
                os.close(vfd)
                raise ImmutableInfraError("image version %s:%s is being baked by another run on this host; "
                                          "choose another version or omit it to take the next number"
                                          % (self.name, version))
            self._held.append(vfd)
            return version
        finally:
            os.close(fd)
