# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release leases: one holder per app/stack, kept beside the state they protect.

A lease names its owner (host, boot id, pid namespace, pid, process start time
and command line) and expires unless its holder renews it. It is taken over at
once when the owner is provably dead (same machine, process gone or pid reused)
and no orphaned worker of the dead run is still working; a lease from another
machine only once it has expired. Every takeover and every forced break is
logged. The store is an interface (get, create, swap, remove, log): a directory
of files today (the router's state directory), the platform's own store later."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import select
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._traffic import ROUTER_BACKEND_ARGS

DEFAULT_TTL = 60
DEFAULT_ORPHAN_WAIT = 120
LOCK_ARGS = dict(
    app=dict(type="str", required=True),
    stack=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    router_dir=dict(type="path"),
    ttl=dict(type="int", default=DEFAULT_TTL),
    orphan_timeout=dict(type="int", default=DEFAULT_ORPHAN_WAIT),
    force=dict(type="bool", default=False),
    reason=dict(type="str"),
    platform=dict(type="str"),
    **ROUTER_BACKEND_ARGS
)


def stamp(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch or 0))


# ------------------------------------------------------------------ processes
def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def proc_stat(pid):
    """(state, ppid, start time in clock ticks since boot) of pid, or None when there is no such process."""
    text = _read("/proc/%d/stat" % int(pid))
    try:
        fields = text.rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (AttributeError, IndexError, ValueError):
        return None


def cmdline(pid):
    raw = _read("/proc/%d/cmdline" % int(pid), "rb")
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]] if raw else None


def machine():
    """What makes a pid meaningful: the host, this boot, and the pid namespace."""
    return {"host": socket.gethostname(), "boot_id": (_read("/proc/sys/kernel/random/boot_id") or "").strip(),
            "pid_ns": _readlink("/proc/self/ns/pid")}


def _user():
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid says enough
        return str(os.getuid())


def identity(pid):
    """The identity of a live process: machine, pid, start time (ticks and wall clock), command line, user."""
    st = proc_stat(pid)
    if st is None or st[0] in "ZX":
        return None
    btime = next((int(line.split()[1]) for line in (_read("/proc/stat") or "").splitlines() if line.startswith("btime ")), 0)
    return dict(machine(), pid=int(pid), start=st[2], started=btime + st[2] / float(os.sysconf("SC_CLK_TCK")),
                cmdline=cmdline(pid) or [], user=_user())


def playbook_owner():
    """The ansible-playbook process that runs this worker; an orphaned worker (its parent gone) is refused."""
    me, parent = os.getpid(), os.getppid()
    ident = identity(parent) if parent > 1 else None
    # Workers are forked, never exec'd: the true parent has this worker's command line.
    if ident is None or ident["cmdline"] != cmdline(me):
        raise ImmutableInfraError(
            "refusing to take a lease from an orphaned Ansible worker (pid %d, parent now pid %d): the "
            "ansible-playbook process that started it is gone, so no run would own the lease" % (me, parent))
    return ident


def same_machine(a, b):
    return all(a.get(k) == b.get(k) for k in ("host", "boot_id", "pid_ns"))


def same_process(a, b):
    return same_machine(a, b) and a.get("pid") == b.get("pid") and a.get("start") == b.get("start")


def owner_status(owner):
    """On the owner's own machine: 'alive', 'gone' or 'reused' (the pid now names another process)."""
    st = proc_stat(owner.get("pid") or 0)
    if st is None or st[0] in "ZX":
        return "gone"
    return "alive" if st[2] == owner.get("start") else "reused"


def _processes():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None and st[0] not in "ZX":
                out[int(name)] = st
    return out


def orphans(owner, exclude=()):
    """Orphaned Ansible workers of a dead owner, as [{pid, stuck}], on the owner's machine.

    A worker is a fork of ansible-playbook (same command line, started after it), detached
    (stdio on /dev/null, one thread) and, once its parent died, re-parented to an older
    process (init or a subreaper). `stuck` means it finished its task and now blocks for ever
    writing the result to the dead parent (seen with results over 64 KiB): it will do nothing else."""
    procs = _processes()
    found = []
    for pid, (_state, ppid, start) in sorted(procs.items()):
        if pid in exclude or start < owner.get("start", 0) or cmdline(pid) != owner.get("cmdline"):
            continue
        parent = procs.get(ppid)
        if parent is not None and parent[2] >= owner["start"]:
            continue  # the child of a newer run, not an orphan
        if any(_readlink("/proc/%d/fd/%d" % (pid, fd)) != os.devnull for fd in range(3)):
            continue
        if "Threads:\t1\n" not in (_read("/proc/%d/status" % pid) or ""):
            continue  # an ansible-playbook main process runs a results thread
        children = any(p[1] == pid for p in procs.values())
        found.append({"pid": pid, "stuck": "pipe_write" in (_read("/proc/%d/wchan" % pid) or "") and not children})
    return found


# ------------------------------------------------------------------ the store
class FileLeaseStore:
    """Leases as JSON files in one directory; read-modify-write under flock, files replaced by rename.

    A new lease is written to a temporary file and linked into place: the link fails when the
    lease exists (like O_EXCL), and a reader never sees a half-written lease."""

    def __init__(self, directory):
        self.directory = os.path.abspath(directory)
        self.log_file = os.path.join(self.directory, "log.jsonl")

    @property
    def spec(self):
        return "file:" + self.directory

    def location(self, key):
        return os.path.join(self.directory, key + ".json")

    @contextmanager
    def _locked(self):
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(os.path.join(self.directory, ".lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get(self, key):
        text = _read(self.location(key))
        if text is None:
            return None
        try:
            lease = json.loads(text)
            if isinstance(lease, dict) and lease.get("token") and isinstance(lease.get("owner"), dict):
                return lease
        except ValueError:
            pass
        raise ImmutableInfraError("lease file %s is unreadable; break it with the unlock playbook" % self.location(key),
                                  lease_file=self.location(key))

    def _write(self, key, record):
        tmp = "%s.%s.tmp" % (self.location(key), uuid.uuid4().hex[:8])
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def create(self, key, record):
        with self._locked():
            tmp = self._write(key, record)
            try:
                os.link(tmp, self.location(key))
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)

    def swap(self, key, token, record):
        """Replace the lease only while it still has this token."""
        with self._locked():
            current = self.get(key)
            if current is None or current["token"] != token:
                return False
            os.replace(self._write(key, record), self.location(key))
            return True

    def remove(self, key, token=None):
        """Remove the lease while it has this token (any lease, even unreadable, when token is None)."""
        with self._locked():
            if token is not None:
                current = self.get(key)
                if current is None or current["token"] != token:
                    return False
            try:
                os.unlink(self.location(key))
                return True
            except FileNotFoundError:
                return False

    def log(self, entry):
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)


def store_from_spec(spec):
    kind, _sep, where = spec.partition(":")
    if kind != "file" or not where:
        raise ImmutableInfraError("unknown lease store %r" % (spec,))
    return FileLeaseStore(where)


# ------------------------------------------------------------------ the policy
def describe(owner):
    return "pid %s (started %s) on %s, user %s" % (
        owner.get("pid"), stamp(owner.get("started")), owner.get("host"), owner.get("user"))


def judge(lease, me, now, status=owner_status):
    """What an existing lease means to `me`: ('mine'|'held'|'dead'|'expired', why)."""
    owner = lease["owner"]
    if same_process(owner, me):
        return "mine", None
    if same_machine(owner, me):
        state = status(owner)
        if state == "alive":
            return "held", None
        return "dead", ("its owner, pid %s on this host, is gone" % owner.get("pid") if state == "gone" else
                        "pid %s on this host now belongs to another process (started later)" % owner.get("pid"))
    if lease.get("expires", 0) <= now:
        return "expired", "it expired at %s (%.0f s ago) and %s no longer renews it" % (
            stamp(lease["expires"]), now - lease["expires"], owner.get("host"))
    return "held", None


def unlock_hint(lease):
    return ("ansible-playbook immutable.infra.unlock -e app=%s -e stack=%s -e unlock_reason='...'"
            % (lease.get("app"), lease.get("stack")))


class Leases:
    """Take, renew, drop and break leases in a store, on behalf of one owner identity."""

    def __init__(self, store, clock=time.time, sleep=time.sleep, status=owner_status, find_orphans=orphans):
        self.store, self.clock, self.sleep = store, clock, sleep
        self.status, self.find_orphans = status, find_orphans

    def _record(self, app, stack, what, owner, ttl):
        now = self.clock()
        return {"app": app, "stack": stack, "what": what, "owner": owner, "token": uuid.uuid4().hex,
                "since": now, "renewed": now, "expires": now + ttl, "ttl": ttl}

    def held_message(self, lease, key):
        return ("%s is locked: another run holds it, %s, since %s; its lease expires %s unless renewed (its "
                "holder renews it while it runs). Lease: %s. If that run is gone for good, break the lease: %s"
                % (lease.get("what"), describe(lease["owner"]), stamp(lease.get("since")), stamp(lease.get("expires")),
                   self.store.location(key), unlock_hint(lease)))

    def acquire(self, app, stack, what, owner, ttl=DEFAULT_TTL, orphan_wait=DEFAULT_ORPHAN_WAIT, check_mode=False,
                exclude=()):
        """Take the lease of app/stack for owner. Returns {changed, lease, would, takeover?, note?}."""
        key = "%s-%s" % (app, stack)
        deadline = self.clock() + orphan_wait
        waited = []
        while True:
            lease = self.store.get(key)
            if lease is None:
                if check_mode:
                    return {"changed": False, "free": True, "would": "take"}
                record = self._record(app, stack, what, owner, ttl)
                if self.store.create(key, record):
                    return {"changed": True, "free": True, "would": "take", "lease": record}
                continue  # another run took it meanwhile: judge that one
            verdict, why = judge(lease, owner, self.clock(), self.status)
            if verdict == "mine":
                if check_mode:
                    return {"changed": False, "free": False, "would": "hold", "lease": lease}
                renewed = dict(lease, renewed=self.clock(), expires=self.clock() + ttl)
                if self.store.swap(key, lease["token"], renewed):
                    return {"changed": False, "free": False, "would": "hold", "lease": renewed}
                continue
            if verdict == "held":
                raise ImmutableInfraError(self.held_message(lease, key), lease=lease, lease_file=self.store.location(key))
            found = self.find_orphans(lease["owner"], exclude) if verdict == "dead" else []
            busy = [o["pid"] for o in found if not o["stuck"]]
            if busy and not check_mode:
                waited = sorted(set(waited) | set(busy))
                if self.clock() < deadline:
                    self.sleep(0.25)
                    continue
                raise ImmutableInfraError(
                    "%s: the run that held it is dead (%s) but its orphaned Ansible worker(s) %s are still running "
                    "after %d s; wait for them to finish (or stop them: kill %s) and run again" % (
                        lease.get("what"), why, ", ".join(map(str, busy)), orphan_wait, " ".join(map(str, busy))),
                    lease=lease, orphans=busy)
            takeover = {"previous": lease, "reason": why, "waited_for": waited,
                        "stuck": [o["pid"] for o in found if o["stuck"]]}
            note = "took over the release lease of %s/%s held by %s since %s: %s" % (
                app, stack, describe(lease["owner"]), stamp(lease.get("since")), why)
            if waited:
                note += "; waited for its orphaned worker(s) %s to finish" % ", ".join(map(str, waited))
            if takeover["stuck"]:
                note += ("; its worker(s) %s finished but block for ever delivering to the dead run (harmless; "
                         "kill %s to clean up)" % (", ".join(map(str, takeover["stuck"])), " ".join(map(str, takeover["stuck"]))))
            if check_mode:
                note = "would have taken" + note[len("took"):] if not busy else (
                    "would wait for the orphaned worker(s) %s of the dead run, then take over: %s" % (", ".join(map(str, busy)), why))
                return {"changed": False, "free": False, "would": "take over", "lease": lease, "note": note}
            record = self._record(app, stack, what, owner, ttl)
            if self.store.swap(key, lease["token"], record):
                self.store.log({"when": stamp(self.clock()), "event": "takeover", "key": key, "what": what, "by": owner,
                                "reason": why, "previous": lease, "waited_for": waited})
                return {"changed": True, "free": False, "would": "take over", "lease": record, "takeover": takeover,
                        "note": note}

    def renew(self, key, token, ttl):
        lease = self.store.get(key)
        if lease is None or lease["token"] != token:
            return False
        now = self.clock()
        return self.store.swap(key, token, dict(lease, renewed=now, expires=now + ttl))

    def release(self, app, stack, owner, check_mode=False):
        """Drop owner's lease. Returns (dropped lease or None, note when the lease is someone else's)."""
        key = "%s-%s" % (app, stack)
        lease = self.store.get(key)
        if lease is None:
            return None, None
        if not same_process(lease["owner"], owner):
            return None, "the lease of %s is not this run's (held by %s since %s): left alone" % (
                lease.get("what"), describe(lease["owner"]), stamp(lease.get("since")))
        if check_mode or self.store.remove(key, lease["token"]):
            return lease, None
        return None, None

    def break_lease(self, app, stack, reason, by, check_mode=False):
        """Remove whatever lease app/stack has, and log who broke it, why, and whose it was."""
        key = "%s-%s" % (app, stack)
        try:
            lease = self.store.get(key)
        except ImmutableInfraError:
            lease = {"owner": {}, "what": "unreadable lease %s" % self.store.location(key)}
        if lease is None or check_mode:
            return lease
        if self.store.remove(key, None):
            self.store.log({"when": stamp(self.clock()), "event": "break", "key": key, "by": by, "reason": reason,
                            "previous": lease})
            return lease
        return None


# ------------------------------------------------------------------ the renewer
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from ansible_collections.immutable.infra.plugins.module_utils._lease import renewer_main; "
         "renewer_main(sys.argv[2:])")


def start_renewer(store, key, token, owner, ttl):
    """Start a detached renewer (double fork, own session, stdio on /dev/null); return its pid."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 5))
    argv = [sys.executable, "-c", _BOOT, root, store.spec, key, token, str(owner["pid"]), str(owner["start"]), str(ttl)]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    try:
        return int(proc.stdout.strip())
    except ValueError:
        raise ImmutableInfraError("could not start the lease renewer", cmd=argv, rc=proc.returncode,
                                  stdout=proc.stdout, stderr=proc.stderr)


def stop_renewer(lease):
    """Stop the renewer a lease names, if it runs here and is still that process."""
    renewer = lease.get("renewer") or {}
    if renewer.get("pid") and same_machine(renewer, machine()) and owner_status(renewer) == "alive":
        try:
            os.kill(renewer["pid"], 15)
        except OSError:
            pass


def renewer_main(argv):
    spec, key, token, pid, start, ttl = argv
    child = os.fork()
    if child:
        os.write(1, b"%d\n" % child)
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in range(3):
        os.dup2(null, fd)
    renew_while_owner_lives(store_from_spec(spec), key, token, {"pid": int(pid), "start": int(start)}, float(ttl))
    os._exit(0)


def _owner_exited(owner, pidfd, timeout):
    if pidfd is not None:
        return bool(select.select([pidfd], [], [], timeout)[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if owner_status(owner) != "alive":
            return True
        time.sleep(min(0.5, timeout))
    return owner_status(owner) != "alive"


def renew_while_owner_lives(store, key, token, owner, ttl):
    """Renew every ttl/3 while the owner lives and the lease is still its own; return why it stopped."""
    pidfd = None
    try:
        pidfd = os.pidfd_open(owner["pid"])
    except (AttributeError, OSError):
        pass
    if owner_status(owner) != "alive":
        return "owner gone"
    leases = Leases(store)
    try:
        while True:
            if _owner_exited(owner, pidfd, max(ttl / 3.0, 0.2)):
                return "owner gone"
            try:
                if not leases.renew(key, token, ttl):
                    return "lease lost"
            except (ImmutableInfraError, OSError):
                pass  # the store may come back; the owner's death still ends this loop
    finally:
        if pidfd is not None:
            os.close(pidfd)
