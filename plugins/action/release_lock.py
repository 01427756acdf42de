# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take, drop or break the release lease of an app/stack, on the controller. The
owner is the ansible-playbook process (this worker's parent); a detached
renewer keeps the lease alive while that process lives."""

from __future__ import annotations

import os

from ansible.plugins.action import ActionBase

from ansible_collections.immutable.infra.plugins.module_utils import _lease
from ansible_collections.immutable.infra.plugins.module_utils._module import router_dir
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._names import check_name
from ansible_collections.immutable.infra.plugins.module_utils._traffic import router_from
from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import check_platform


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(_lease.LOCK_ARGS)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _valid, args = self.validate_argument_spec(argument_spec=_lease.LOCK_ARGS,
                                                   required_if=[("force", True, ("reason",))])
        try:
            result.update(self._run(args, self._task.check_mode))
        except ImmutableInfraError as exc:
            result.update(exc.result(), failed=True)
        return result

    def _run(self, p, check_mode):
        check_name("app", p["app"])
        check_name("stack", p["stack"])
        if p["ttl"] < 3 or p["orphan_timeout"] < 0:
            raise ImmutableInfraError("ttl must be at least 3 s and orphan_timeout at least 0, not ttl=%r "
                                      "orphan_timeout=%r" % (p["ttl"], p["orphan_timeout"]))
        if p["force"] and p["state"] != "absent":
            raise ImmutableInfraError("force breaks a lease: use it with state=absent, not state=%s" % p["state"])
        if p["platform"] and p["state"] == "present" and not p["force"]:
            # Before anything is made: a run on another platform than the app/stack's would not see its groups.
            routes = router_from(p).load_routes()
            check_platform("%s/%s" % (p["app"], p["stack"]), routes["endpoints"].get("%s/%s" % (p["app"], p["stack"])),
                           p["platform"])
        store = _lease.FileLeaseStore(os.path.join(router_dir(p), "leases"))
        key = "%s-%s" % (p["app"], p["stack"])
        leases = _lease.Leases(store)
        out = {"changed": False, "lease_file": store.location(key), "lease_log": store.log_file}
        owner = _lease.playbook_owner()
        if p["force"]:
            reason = (p["reason"] or "").strip()
            if not reason:
                raise ImmutableInfraError("breaking a lease needs a reason (it goes to the lease log %s)" % store.log_file)
            broken = leases.break_lease(p["app"], p["stack"], reason, dict(owner, reason=reason), check_mode)
            if broken is None:
                return dict(out, msg="%s/%s has no lease: nothing to break" % (p["app"], p["stack"]))
            return dict(out, changed=True, broken=broken, msg="%s the lease of %s/%s held by %s since %s (reason: %s)%s" % (
                "would break" if check_mode else "broke", p["app"], p["stack"], _lease.describe(broken["owner"]),
                _lease.stamp(broken.get("since")), reason, "" if check_mode else "; logged to " + store.log_file))
        if p["state"] == "absent":
            dropped, note = leases.release(p["app"], p["stack"], owner, check_mode)
            if dropped and not check_mode:
                _lease.stop_renewer(dropped)
            return dict(out, released=bool(dropped), **({"warnings": [note]} if note else {}))
        got = leases.acquire(p["app"], p["stack"], "release of %s/%s" % (p["app"], p["stack"]), owner, ttl=p["ttl"],
                             orphan_wait=p["orphan_timeout"], check_mode=check_mode, exclude=(os.getpid(), owner["pid"]))
        lease = got.get("lease")
        if lease and not check_mode and _lease.owner_status(lease.get("renewer") or {}) != "alive":
            pid = _lease.start_renewer(store, key, lease["token"], owner, p["ttl"])
            renewer = _lease.identity(pid) or {"pid": pid}
            lease = dict(lease, renewer=dict(_lease.machine(), pid=pid, start=renewer.get("start")))
            if store.swap(key, lease["token"], lease):
                got["lease"] = lease
        if got.get("note"):
            got["warnings"] = [got["note"]]
        if check_mode and got.get("lease") and got["would"] != "hold":
            got["msg"] = "held by %s" % _lease.describe(got["lease"]["owner"])
        return dict(out, **got)
