# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Side-by-side benchmark of a release, in one run, for N = 1, 5, 20 instances:

  (a) release: wall time of `ansible-playbook playbooks/release.yml` replacing
      a running group of N instances of web:1 by a new group of web:2
      (release_verify_seconds=0, release_keep=2: the old group stays, warm);
  (b) floor: podman starting N containers of the same image, 4 at a time as
      the platform does, until every one answers /healthz with 200, plus one
      health interval (0.5 s, the release's default; its healthy_threshold of
      2 needs a second answer one interval later);
  (c) in place: the conventional way the product replaces: N running web:1
      containers (started untimed) are updated by applying the
      immutable.infra.web role (web_image_version "2", a new web_message)
      with `ansible-playbook` over the containers.podman.podman connection,
      forks = min(N, 10), then `podman restart` of each (4 at a time) and a
      wait until every one answers /healthz again;
  (d) rollback: wall time of `ansible-playbook playbooks/rollback.yml` right
      after (a) (the old group is still running), and the duration of its
      traffic switch task alone ("Move traffic back to ...", from the
      ansible.posix.json callback): a whole ansible-playbook run carries
      ~1 s of fixed start-up cost.

Cases are interleaved per round (the order flips every round) so that drift
of this shared machine hits them alike. Ratios are printed (release/floor,
release/in-place); single timings are noise here, and nothing passes or
fails on time. Correctness is checked: a release must create N new
instances and serve version 2, a rollback must serve version 1 again, an
in-place update must leave every container serving version 2; runs that do
not are reported and not counted. While (a) and (d) run,
playbooks/files/loadgen.py counts failed requests: one client (--load probe,
--rate 20 per second, a new connection each) or 4 (--load loadgen) paced with
--pause to about the same rate (unpaced it takes a whole core of this 2-core
machine and slows what it measures).

Hermetic: a temporary HOME and IMMUTABLE_INFRA_STATE_DIR (the router that
release.yml starts lives there and is stopped by pid at the end), a registry
of its own on a free loopback port (stopped by pid), a unique app name and a
free loopback port per endpoint. At the end, also on failure or Ctrl-C, the
app is decommissioned, every container the run created is removed (by the
app's label and by name), and the names the run added to podman storage are
removed. Results also go to bench/results/release-<timestamp>.json.

    python3 bench/release.py [--sizes 1,5,20] [--reps 2] [--load probe|loadgen|none] [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (TOP, BenchError, catch_sigterm, cli, environment, fmt, free_port, ignore_signals, log,  # noqa: E402
                     podman_images, pull_by_digest, remove_containers, require_collection, restore_signals,
                     restore_storage, setup, summary, write_results)
from _release_cases import HEALTH_INTERVAL, Bench, served_version  # noqa: E402

LABEL_APP = "infra.immutable.app"
LOCAL_IMAGES = {"1": "127.0.0.1:5000/web:1", "2": "127.0.0.1:5000/web:2"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,5,20", help="instance counts N, comma-separated (default 1,5,20)")
    p.add_argument("--reps", type=int, default=2, help="repetitions per size and case (default 2)")
    p.add_argument("--load", choices=("probe", "loadgen", "none"), default="probe",
                   help="client on the endpoint during releases and rollbacks (default probe)")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second of --load (default 20)")
    p.add_argument("--results-dir", default=os.path.join(TOP, "bench", "results"))
    args = p.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes takes whole numbers, e.g. 1,5,20")
    if not args.sizes or min(args.sizes) < 1 or max(args.sizes) > 100:
        p.error("--sizes must be between 1 and 100")
    if args.reps < 1:
        p.error("--reps must be at least 1")
    if not 0 < args.rate <= 200:
        p.error("--rate must be more than 0 and at most 200")
    return args


def prepare_images(runner, reg):
    """Copy web:1 and web:2 (left by `make demo`) into the bench registry, or
    bake them there; pull both by digest so no case pays for a pull."""
    have = set()
    for images in podman_images(runner).values():
        have |= images
    how = "copied from local " + ", ".join(LOCAL_IMAGES.values())
    if all(ref in have for ref in LOCAL_IMAGES.values()):
        for version, ref in sorted(LOCAL_IMAGES.items()):
            runner.check(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                          "containers-storage:" + ref, "docker://%s/web:%s" % (reg, version)], "skopeo copy " + ref,
                         timeout=600)
    else:
        how = "baked by playbooks/base.yml + bake.yml"
        log("bench: %s not in local storage: baking web:1 and web:2 (~1-2 min)" % " / ".join(LOCAL_IMAGES.values()))
        runner.check(["ansible-playbook", os.path.join(TOP, "playbooks", "base.yml"), "-e", "catalog_registry=%s" % reg],
                     "base image playbook", timeout=1800)
        for version in ("1", "2"):
            variables = json.dumps({"recipe_version": version,
                                    "recipe_variables": {"web_message": "bench release v%s" % version}})
            runner.check(["ansible-playbook", os.path.join(TOP, "playbooks", "bake.yml"), "-e", "recipe=web",
                          "-e", "catalog_registry=%s" % reg, "-e", variables], "bake web:%s" % version, timeout=1800)
    refs, digests = {}, set()
    for version in ("1", "2"):
        refs[version], digest = pull_by_digest(runner, reg, "web", version)
        digests.add(digest)
    return refs, digests, how


def load_note(traffic):
    return ", %d/%d requests failed" % (traffic["failed"], traffic["requests"]) if traffic else ""


def measure_release_and_rollback(bench, stack, count, rnd):
    """(a) then (d); afterwards (untimed) the group rolled away from is removed,
    so the next release of web:2 creates N new instances again."""
    port = bench.stacks[stack]
    load = bench.load(port)
    try:
        rel = bench.release(stack, "2", count)
    finally:
        traffic = load.stop() if load else None
    version = served_version(port)
    rel.update(case="release", size=count, round=rnd, load=traffic, served=version,
               valid=rel["created"] == count and rel["switched"] and version == "2")
    log("  N=%-3d round %d  release  %6.2fs  %s: %d new, server_group %s, switch %s, serves v%s%s" % (
        count, rnd + 1, rel["seconds"], rel["group"], rel["created"], fmt(rel["server_group_seconds"]).strip(),
        fmt(rel["switch_seconds"]).strip(), version, load_note(traffic)))
    load = bench.load(port)
    try:
        back = bench.rollback(stack)
    finally:
        traffic = load.stop() if load else None
    version = served_version(port)
    back.update(case="rollback", size=count, round=rnd, load=traffic, served=version,
                valid=back["switched"] and version == "1")
    log("  N=%-3d round %d  rollback %6.2fs  switch task %s, serves v%s%s" % (
        count, rnd + 1, back["seconds"], fmt(back["switch_seconds"]).strip(), version, load_note(traffic)))
    bench.decommission(stack, rel["group"])
    return [rel, back]


def measure_size(bench, count, reps):
    """Every case for N=count, interleaved; the order flips every round."""
    runs = []
    stack = "n%d" % count
    bench.stacks[stack] = free_port()
    t0 = time.monotonic()
    first = bench.release(stack, "1", count)     # untimed: the running version-1 group
    log("N=%d: endpoint 127.0.0.1:%d, %s serves web:1 (set-up release %.1fs)" % (
        count, bench.stacks[stack], first["group"], time.monotonic() - t0))
    for rnd in range(reps):
        order = ["release", "floor", "inplace"]
        if rnd % 2:
            order.reverse()
        for case in order:
            tag = "n%dr%d" % (count, rnd)
            if case == "release":
                runs += measure_release_and_rollback(bench, stack, count, rnd)
            elif case == "floor":
                r = bench.floor(count, tag)
                r.update(case="floor", size=count, round=rnd, valid=True)
                runs.append(r)
                log("  N=%-3d round %d  floor    %6.2fs  started %.2fs, all 200 %.2fs, + %.1fs interval" % (
                    count, rnd + 1, r["seconds"], r["start_seconds"], r["all_ok_seconds"], HEALTH_INTERVAL))
            else:
                r = bench.inplace(count, tag)
                r.update(case="inplace", size=count, round=rnd)
                runs.append(r)
                log("  N=%-3d round %d  in place %6.2fs  playbook %.2fs, restart %.2fs, wait %.2fs, serves v%s%s" % (
                    count, rnd + 1, r["seconds"], r["playbook_seconds"], r["restart_seconds"], r["wait_seconds"],
                    "/".join(r["versions"]), "" if r["valid"] else "  !! not counted"))
    bench.decommission(stack)      # untimed: the whole app/stack with its endpoint
    bench.stacks.pop(stack)
    return runs


def aggregate(sizes, runs):
    def values(case, size, key="seconds"):
        return [r.get(key) for r in runs if r["case"] == case and r["size"] == size and r.get("valid")]

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    results = {}
    for count in sizes:
        s = {
            "release": summary(values("release", count)),
            "release_play": summary(values("release", count, "play_seconds")),
            "release_server_group": summary(values("release", count, "server_group_seconds")),
            "release_switch": summary(values("release", count, "switch_seconds")),
            "release_retention": summary(values("release", count, "retention_seconds")),
            "floor": summary(values("floor", count)),
            "floor_all_ok": summary(values("floor", count, "all_ok_seconds")),
            "inplace": summary(values("inplace", count)),
            "inplace_playbook": summary(values("inplace", count, "playbook_seconds")),
            "rollback": summary(values("rollback", count)),
            "rollback_switch": summary(values("rollback", count, "switch_seconds")),
        }
        med = {k: (v or {}).get("median") for k, v in s.items()}
        med["release_ansible_startup"] = _sub(med["release"], med["release_play"])
        load_runs = {c: [r["load"] for r in runs if r["case"] == c and r["size"] == count and r.get("load")]
                     for c in ("release", "rollback")}
        results[str(count)] = {
            "summary": s, "medians": med,
            "ratios": {"release_over_floor": ratio(med["release"], med["floor"]),
                       "release_over_inplace": ratio(med["release"], med["inplace"]),
                       "release_play_over_floor": ratio(med["release_play"], med["floor"])},
            "failed_requests": {c: [x.get("failed") for x in v] for c, v in load_runs.items()},
            "requests": {c: [x.get("requests") for x in v] for c, v in load_runs.items()},
        }
    return results


def report(args, app, info, results, runs):
    log()
    log("immutable.infra release benchmark: app %s, %s cpus, load %.1f -> %.1f, podman %s, %s" % (
        app, info["cpus"], info["loadavg_before"][0], info["loadavg_after"][0], info["podman"], info["revision"]))
    log("medians of %d rep(s); release = ansible-playbook release.yml wall time, floor = podman start + health" % args.reps)
    log("%4s %9s %9s %9s %11s %11s %9s %10s %s" % (
        "N", "release", "floor", "in-place", "rel/floor", "rel/in-pl", "rollback", "rb-switch",
        "failed/requests (releases; rollbacks)"))
    for count in args.sizes:
        res = results[str(count)]
        med, rat = res["medians"], res["ratios"]
        log("%4d %9s %9s %9s %11s %11s %9s %10s %s" % (
            count, fmt(med["release"], width=9), fmt(med["floor"], width=9), fmt(med["inplace"], width=9),
            fmt(rat["release_over_floor"], "x", 11), fmt(rat["release_over_inplace"], "x", 11),
            fmt(med["rollback"], width=9), fmt(med["rollback_switch"], width=10),
            "; ".join(" ".join("%s/%s" % fr for fr in zip(res["failed_requests"][c], res["requests"][c])) or "-"
                      for c in ("release", "rollback"))))
    log("aims: release/floor <= 3x at N=1 and <= 1.3x at N=20, release/in-place < 1.0x, rollback playbook < 2s"
        " (reference only, nothing fails on time)")
    log()
    for count in args.sizes:
        med = results[str(count)]["medians"]
        log("N=%d inside the release: ansible start-up+exit %s, server_group %s (floor %s), switch %s, retention %s;"
            " in place: playbook %s" % (
                count, fmt(med["release_ansible_startup"]).strip(), fmt(med["release_server_group"]).strip(),
                fmt(med["floor"]).strip(), fmt(med["release_switch"]).strip(), fmt(med["release_retention"]).strip(),
                fmt(med["inplace_playbook"]).strip()))
    invalid = [r for r in runs if not r.get("valid")]
    if invalid:
        log("note: %d run(s) did not do what their case means and were not counted: %s" % (
            len(invalid), ", ".join("%s N=%d round %d" % (r["case"], r["size"], r["round"] + 1) for r in invalid)))


def main(argv=None):
    args = parse_args(argv)
    require_collection()
    wall_started = time.monotonic()
    load_before = os.getloadavg()
    tmp, env, runner, registry = setup("immutable-infra-bench-release-")
    images_before = None
    digests = set()
    bench = None
    runs = []
    catch_sigterm()
    try:
        registry.start()
        images_before = podman_images(runner)
        reg = registry.address
        bench = Bench(args, env, runner, tmp, reg)
        log("bench: app %s, registry %s (pid %d), state %s" % (bench.app, reg, registry.proc.pid, tmp))
        t0 = time.monotonic()
        bench.refs, digests, image_how = prepare_images(runner, reg)
        log("bench: web:1 and web:2 %s (%.1fs)" % (image_how, time.monotonic() - t0))
        for count in args.sizes:
            runs += measure_size(bench, count, args.reps)

        results = aggregate(args.sizes, runs)
        info = environment(runner, {"haproxy": ["haproxy", "-v"]})
        info.update(loadavg_before=[round(x, 2) for x in load_before],
                    loadavg_after=[round(x, 2) for x in os.getloadavg()])
        report(args, bench.app, info, results, runs)
        write_results(args.results_dir, "release", {
            "app": bench.app, "sizes": args.sizes, "repetitions": args.reps,
            "load": args.load, "rate": args.rate if args.load != "none" else None,
            "environment": info, "images": image_how, "health_interval": HEALTH_INTERVAL,
            "results": results, "runs": runs}, round(time.monotonic() - wall_started, 1))
        return 0
    finally:
        ignore_signals()
        try:
            cleanup(runner, bench, registry, images_before, digests)
        finally:
            registry.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            restore_signals()


def _sub(a, b):
    return round(a - b, 3) if a is not None and b is not None else None


def cleanup(runner, bench, registry, images_before, digests):
    """Decommission the app, remove every container of the run, stop the
    router (by its pid file) and the registry, restore podman storage."""
    notes = []
    if bench is not None:
        for stack in sorted(bench.stacks):
            try:
                bench.decommission(stack)
            except BenchError as exc:
                notes.append("decommission %s/%s: %s" % (bench.app, stack, exc))
        rc, out, err, _s = runner.run(["podman", "ps", "-a", "-q", "--filter", "label=%s=%s" % (LABEL_APP, bench.app)],
                                      timeout=120)
        leftovers = out.split() if rc == 0 else []
        if leftovers:
            notes.append("removed %d leftover instance(s) of %s" % (len(leftovers), bench.app))
            remove_containers(runner, leftovers)
        elif rc != 0:
            notes.append("podman ps failed: %s" % err.strip()[-200:])
        bench.remove_containers(set(bench.names))
    rc, out, err, _s = runner.run(["ansible", "localhost", "-m", "immutable.infra.router", "-a", "state=stopped"],
                                  env=dict(runner.env, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal"), timeout=120)
    if rc != 0:
        notes.append("stopping the router failed: %s" % (err.strip() or out.strip())[-300:])
    registry.stop()
    if images_before is not None and registry.port:
        notes += restore_storage(runner, images_before, "%s/" % registry.address, digests)
    for note in notes:
        log("cleanup: " + note)


if __name__ == "__main__":
    cli(main)
