# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Side-by-side benchmark of VMs against containers, in one run:

  (a) container bake: `playbooks/bake.yml -e bake_only=container`, forced;
  (b) VM bake: the same recipe, `bake_only=vm` (Packer's qemu builder on the
      base VM, KVM where it runs guests, else TCG), forced;
  (c) container boot: one `server_group` instance on podman from (a)'s image,
      from the task's start until it answered /healthz twice;
  (d) VM boot: the same on libvirt from (b)'s image.

Rounds are interleaved, and the order inside a round flips every round, so
that drift of this shared machine hits both sides alike. The point is the
ratios VM/container; single timings are noise here and nothing is asserted
about them. A bake must report changed=true and a boot a healthy group, else
the run fails.

Hermetic like bench/bake.py (bench/_common.py): a temporary HOME and state
directory (libvirt overlays, the VM image cache), the project's registry on a
free loopback port, stopped at the end; the server groups it creates are
removed, also on failure or Ctrl-C. Results also go to
bench/results/vm-<timestamp>.json.

    python3 bench/vm.py [--rounds 2]       (or: make bench-vm)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (TOP, BenchError, catch_sigterm, cli, environment, failed_task, fmt, ignore_signals,  # noqa: E402
                     log, play_doc, podman_images, require_collection, restore_signals, setup, stop_and_restore,
                     summary, tail, write_results)
from _release_cases import first_task, tasks_of  # noqa: E402

LABELS = {"bake_container": "(a) container bake", "bake_vm": "(b) VM bake",
          "boot_container": "(c) container boot-to-healthy", "boot_vm": "(d) VM boot-to-healthy"}
PLATFORM = {"container": "podman", "vm": "libvirt"}
APP = "benchvm"


def playbook(runner, name, extra, timeout=None):
    argv = ["ansible-playbook", os.path.join(TOP, "playbooks", name), "-e", json.dumps(extra)]
    rc, out, err, seconds = runner.run(argv, timeout=timeout)
    doc = play_doc(out)
    if rc != 0:
        raise BenchError("%s failed (rc=%s): %s" % (name, rc, failed_task(doc) or tail(out, err)))
    return seconds, doc


def bake(runner, reg, fmt_, force):
    extra = {"recipe": "web", "bake_only": fmt_, "bake_force": force, "catalog_registry": reg}
    seconds, doc = playbook(runner, "bake.yml", extra, timeout=1800)
    _s, result = first_task(tasks_of(doc), "Bake the recipe")
    out = (result.get("outputs") or [result])[0]
    if not out.get("changed"):
        raise BenchError("the %s bake reported no change: the case would time a catalog hit" % fmt_)
    return {"seconds": round(seconds, 3), "packer_seconds": result.get("packer_seconds"),
            "reference": (out.get("image") or {}).get("reference"), "version": (out.get("image") or {}).get("version")}


def group_play(fmt_, reg, stack, **args):
    """One server_group task on the format's platform: args give image (start one instance
    and wait until it is healthy) or group and state=absent (remove it)."""
    return [{"name": "Boot one instance", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Converge the server group",
        "immutable.infra.server_group": dict({
            "app": APP, "stack": stack, "count": 1, "platform": PLATFORM[fmt_], "registry": reg,
            "health_check": {"path": "/healthz", "interval": 0.5, "healthy_threshold": 2},
            "wait_timeout": 600}, **args)}]}]


def boot(runner, tmp, reg, fmt_, image, stack):
    """Seconds of the server_group task that starts one instance in its own stack and waits until it is healthy."""
    path = os.path.join(tmp, "boot-%s-%s.yml" % (fmt_, stack))
    with open(path, "w") as f:
        json.dump(group_play(fmt_, reg, stack, image=image), f)
    _s, doc = playbook(runner, path, {}, timeout=900)
    seconds, result = first_task(tasks_of(doc), "Converge the server group")
    if not result.get("created"):
        raise BenchError("the %s boot created no instance: %s" % (fmt_, result))
    return {"seconds": seconds, "stack": stack, "group": (result.get("group") or {}).get("name")}


def group_of(stack):
    """The (only) server group a boot case creates in its own stack."""
    return "%s-%s-v001" % (APP, stack)


def remove_groups(runner, tmp, reg, booted):
    for fmt_, stack in booted:
        path = os.path.join(tmp, "remove-%s-%s.yml" % (fmt_, stack))
        with open(path, "w") as f:
            json.dump(group_play(fmt_, reg, stack, group=group_of(stack), state="absent"), f)
        rc, out, err, _s = runner.run(["ansible-playbook", path], timeout=300)
        if rc != 0:
            log("cleanup: removing %s/%s failed: %s" % (APP, stack, failed_task(play_doc(out)) or tail(out, err)))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="rounds of all four cases, default 2")
    p.add_argument("--results-dir", default=os.path.join(TOP, "bench", "results"))
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def report(runs, info):
    def times(case):
        return [r["seconds"] for r in runs if r["case"] == case and r.get("seconds") is not None]

    stats = {c: summary(times(c)) for c in LABELS}
    paired = {}
    for what in ("bake", "boot"):
        per_round = {}
        for r in runs:
            if r["case"].startswith(what):
                per_round.setdefault(r["round"], {})[r["case"].split("_")[1]] = r["seconds"]
        values = [p["vm"] / p["container"] for p in per_round.values() if p.get("vm") and p.get("container")]
        paired[what] = round(statistics.median(values), 2) if values else None
    log()
    log("immutable.infra VM benchmark: recipe web, %s cpus, accelerator %s, %s" % (
        info["cpus"], info.get("accelerator"), info["revision"]))
    log("%-34s %3s %8s %8s %8s" % ("case (wall time)", "n", "median", "min", "max"))
    for c in LABELS:
        s = stats[c] or {}
        log("%-34s %3s %s %s %s" % (LABELS[c], s.get("n", 0), fmt(s.get("median"), width=8),
                                    fmt(s.get("min"), width=8), fmt(s.get("max"), width=8)))
    log()
    for what in ("bake", "boot"):
        log("VM/container %-5s = %sx  (median of per-round ratios)" % (what, paired[what] or "n/a"))
    return {"summary": stats, "ratios": {"vm_over_container_bake": paired["bake"],
                                         "vm_over_container_boot": paired["boot"]}}


def accelerator():
    sys.path.insert(0, os.path.join(TOP, ".cache", "collections"))
    try:
        from ansible_collections.immutable.infra.plugins.module_utils._vm_image import accelerator as detect
        return detect()
    finally:
        sys.path.pop(0)


def main(argv=None):
    args = parse_args(argv)
    require_collection()
    started = time.monotonic()
    tmp, env, runner, registry = setup("immutable-infra-bench-vm-", timeout=1800, grace=60)
    images_before, runs, booted, images = None, [], [], {}
    catch_sigterm()
    try:
        registry.start()
        reg = registry.address
        log("bench: registry %s (pid %d), state %s" % (reg, registry.proc.pid, tmp))
        images_before = podman_images(runner)
        for fmt_ in ("container", "vm"):
            t0 = time.monotonic()
            playbook(runner, "base.yml", {"catalog_registry": reg, "base_format": fmt_}, timeout=1800)
            log("bench: %s base image built (%.0fs)" % (fmt_, time.monotonic() - t0))
        plan = []
        for rnd in range(args.rounds):
            order = ("container", "vm") if rnd % 2 == 0 else ("vm", "container")
            plan += [(rnd, "bake", f) for f in order] + [(rnd, "boot", f) for f in order]
        k = 0
        for rnd, what, fmt_ in plan:
            k += 1
            if what == "bake":
                r = bake(runner, reg, fmt_, force=rnd > 0)
                images[fmt_] = r["reference"]
                runs.append(dict(r, case="bake_" + fmt_, round=rnd))
                note = "%s version %s, packer %.1fs" % (fmt_, r["version"], r["packer_seconds"] or 0)
            else:
                stack = "%s%d" % (fmt_[:1], k)
                booted.append((fmt_, stack))     # removed at the end even if the boot fails
                r = boot(runner, tmp, reg, fmt_, images[fmt_], stack)
                runs.append(dict(r, case="boot_" + fmt_, round=rnd))
                note = "%s group %s healthy" % (PLATFORM[fmt_], r["group"])
                remove_groups(runner, tmp, reg, [booted.pop()])
            log("  [%2d/%d] %-14s %7.2fs  %s" % (k, len(plan), what + " " + fmt_, runs[-1]["seconds"], note))
        info = environment(runner, {"packer": ["packer", "version"], "qemu": ["qemu-system-x86_64", "--version"]})
        info["accelerator"] = accelerator()
        figures = report(runs, info)
        write_results(args.results_dir, "vm", dict(figures, rounds=args.rounds, environment=info, runs=runs),
                      round(time.monotonic() - started, 1))
        return 0
    finally:
        ignore_signals()
        try:
            remove_groups(runner, tmp, registry.address if registry.port else "", booted)
            stop_and_restore(runner, registry, images_before)
        finally:
            registry.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            restore_signals()


if __name__ == "__main__":
    cli(main)
