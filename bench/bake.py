# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Side-by-side benchmark of a bake, in one run:

  (a) a no-op bake: unchanged inputs, catalog hit, Packer does not run;
  (b) a full bake: `bake_force: true`, Packer runs, the image is pushed;
  (c) a plain `packer build` of the same template and variables (no
      fingerprint, no catalog, no push);
  (d) the yardstick: a one-task playbook (one `debug` on localhost).

(a), (b) and (d) are wall times of `ansible-playbook` as users run it. The
runs are interleaved so that drift of this shared machine hits every case
alike. The point is the ratios (no-op / one-task playbook, no-op / full,
full / plain Packer); single timings are noise here, and nothing is asserted
about them. Only correctness is checked: a no-op must report changed=false
and a full bake changed=true, else the run is flagged and not counted.

Hermetic (bench/_common.py): a temporary HOME and state directory, the
project's registry on a free loopback port (playbooks/registry.yml), stopped
at the end (also on failure or Ctrl-C); images and names it added to local
podman storage are removed again. Results also go to
bench/results/bake-<timestamp>.json.

    python3 bench/bake.py [--noop 5] [--one 5] [--full 3] [--plain 3]      (or: make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (TOP, BenchError, catch_sigterm, cli, environment, failed_task, fmt, ignore_signals,  # noqa: E402
                     log, play_doc, podman_images, pull_by_digest, remove_containers, require_collection,
                     restore_signals, setup, stop_and_restore, summary, tail, write_results)

BASE_NAME = "immutable/base"
DEFAULT_BASE_REPOS = ("127.0.0.1:5000/" + BASE_NAME, "localhost:5000/" + BASE_NAME)
ONE_TASK_PLAY = [{"name": "One task", "hosts": "localhost", "gather_facts": False,
                  "tasks": [{"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}}]}]
LABELS = {"noop": "(a) no-op bake (catalog hit)", "full": "(b) full bake", "plain": "(c) plain packer build",
          "one": "(d) one-task playbook"}
NOOP_AIM = 1.5  # issue 6: a no-op bake within 1.5x a one-task playbook


def find_local_base(images):
    """The default catalog's base image (127.0.0.1:5000/immutable/base:TAG, left
    by `make demo`) in local storage, to copy instead of rebuilding; or None.
    Images of other registries belong to runs (tests) that may remove them."""
    found = []
    for names in images.values():
        for name in names:
            repo, _sep, tag = name.rpartition(":")
            if "@" not in name and repo in DEFAULT_BASE_REPOS and tag:
                found.append((tag.isdigit(), int(tag) if tag.isdigit() else 0, name))
    return max(found)[2] if found else None


def seed_base(runner, reg, images, build):
    """The parent image in the bench registry: copied from local storage, else
    built by playbooks/base.yml. Returns how."""
    local_base = None if build else find_local_base(images)
    if local_base:
        rc, out, err, _s = runner.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                                       "containers-storage:" + local_base, "docker://%s/%s:1" % (reg, BASE_NAME)])
        if rc == 0:
            return "copied from local %s" % local_base
        log("bench: copying %s failed (%s); building the base image instead" % (local_base, tail(out, err)))
    log("bench: building the parent image with playbooks/base.yml (mmdebstrap, ~40 s)")
    runner.check(["ansible-playbook", os.path.join(TOP, "playbooks", "base.yml"), "-e", "catalog_registry=%s" % reg],
                 "base image playbook", timeout=1800)
    return "built by playbooks/base.yml"


# ---------------------------------------------------------------- the cases
def bake_playbook(runner, registry, recipe, force):
    argv = ["ansible-playbook", os.path.join(TOP, "playbooks", "bake.yml"),
            "-e", "recipe=%s" % recipe, "-e", "catalog_registry=%s" % registry]
    if force:
        # -e bake_force=true would pass the string "true"; the play wants a bool.
        argv += ["-e", json.dumps({"bake_force": True})]
    rc, out, err, seconds = runner.run(argv)
    doc = play_doc(out)
    result = None
    for play in (doc or {}).get("plays", []):
        for task in play.get("tasks", []):
            if task["task"].get("name") == "Bake the recipe":
                result = task["hosts"].get("localhost")
    if rc != 0 or result is None:
        raise BenchError("bake playbook failed (rc=%s): %s" % (rc, failed_task(doc) or tail(out, err)))
    image = result.get("image") or {}
    return {
        "seconds": round(seconds, 3),
        "changed": bool(result.get("changed")),
        "version": image.get("version"),
        "task_seconds": result.get("duration"),
        "packer_seconds": result.get("packer_seconds"),
        "fingerprint": result.get("fingerprint"),
        "parent_digest": (result.get("parent") or {}).get("digest"),
        "collections_paths": (result.get("invocation") or {}).get("module_args", {}).get("collections_paths"),
    }


def one_task_playbook(runner, path):
    rc, out, err, seconds = runner.run(["ansible-playbook", path])
    if rc != 0:
        raise BenchError("one-task playbook failed (rc=%s): %s" % (rc, tail(out, err)))
    return {"seconds": round(seconds, 3)}


def plain_packer(runner, env, recipe_dir, parent_ref, workdir, index):
    build_name = "immutable-bench-plain-%s" % uuid.uuid4().hex[:12]
    var_file = os.path.join(workdir, "plain-%d.pkrvars.json" % index)
    with open(var_file, "w") as f:
        json.dump({"parent_image": parent_ref, "build_name": build_name,
                   "image_version": "bench-%d" % index, "image_labels": {}}, f)
    # The same flags image_bake uses, so the comparison isolates what the bake adds.
    argv = ["packer", "build", "-machine-readable", "-color=false", "-on-error=cleanup",
            "-var-file=%s" % var_file, "."]
    out_file = os.path.join(workdir, "plain-%d.log" % index)
    runner.build_names.add(build_name)
    rc, out, _err, seconds = runner.run(argv, cwd=recipe_dir, env=env, out_file=out_file)
    ids = [m.group(1) for m in re.finditer(r"^\d+,[^,]*,artifact,\d+,id,(?:sha256:)?([0-9a-f]{64})\s*$", out, re.M)]
    runner.created_ids.update(ids)
    if rc != 0 or not ids:
        raise BenchError("plain packer build failed (rc=%s), see %s" % (rc, out_file))
    return {"seconds": round(seconds, 3), "image_id": ids[-1][:12]}


def plain_packer_env(env, tmp):
    """What image_bake gives Packer: its provisioner settings and a `docker` that is podman."""
    sys.path.insert(0, os.path.join(TOP, ".cache", "collections"))
    try:
        from ansible_collections.immutable.infra.plugins.module_utils._bake import PROVISIONER_ENV
    finally:
        sys.path.pop(0)
    shim = os.path.join(tmp, "shim")
    os.makedirs(shim)
    os.symlink(shutil.which("podman", path=env["PATH"]) or "/usr/bin/podman", os.path.join(shim, "docker"))
    packer_env = dict(env, PATH=shim + os.pathsep + env["PATH"], **PROVISIONER_ENV)
    return packer_env, sorted(PROVISIONER_ENV)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noop", type=int, default=5, help="no-op bakes (a), default 5")
    p.add_argument("--full", type=int, default=3, help="full bakes (b), default 3; the first one fills the catalog")
    p.add_argument("--plain", type=int, default=3, help="plain packer builds (c), default 3 (0: skip)")
    p.add_argument("--one", type=int, default=5, help="one-task playbooks (d), default 5 (0: skip)")
    p.add_argument("--recipe", default="web", help="a recipe shipped in packer/ (default web)")
    p.add_argument("--build-base", action="store_true",
                   help="build the parent with playbooks/base.yml (~40 s) even if a local base image can be copied")
    p.add_argument("--results-dir", default=os.path.join(TOP, "bench", "results"))
    args = p.parse_args(argv)
    if min(args.noop, args.full) < 1 or min(args.plain, args.one) < 0:
        p.error("--noop and --full need at least one repetition")
    if not os.path.isdir(os.path.join(TOP, "packer", args.recipe)):
        p.error("no recipe packer/%s" % args.recipe)
    return args


def run_case(case, k, args, runner, reg, ctx):
    """One measured run of a case; ctx carries the parent, Packer's environment and the first full bake."""
    if case == "one":
        return one_task_playbook(runner, ctx["one_play"]), ""
    if case == "plain":
        penv = ctx["packer_env"]
        penv.setdefault("ANSIBLE_COLLECTIONS_PATH", os.pathsep.join(
            ctx["first"]["collections_paths"] or [os.path.join(TOP, ".cache", "collections")]))
        r = plain_packer(runner, penv, os.path.join(TOP, "packer", args.recipe), ctx["parent_ref"], ctx["tmp"], k)
        return r, "image %s" % r["image_id"]
    force = case == "full" and "first" in ctx
    r = bake_playbook(runner, reg, args.recipe, force=force)
    if case == "full":
        r["kind"] = "force" if force else "new inputs"
        ctx.setdefault("first", dict(r))
    r.pop("collections_paths", None)
    r["valid"] = r["changed"] == (case == "full")
    what = "%s:%s %s" % (args.recipe, r["version"], "unchanged" if not r["changed"] else "baked (%s)" % r.get("kind"))
    if r["packer_seconds"] is not None:
        what += ", module %.1fs, packer %.1fs" % (r["task_seconds"], r["packer_seconds"])
    elif r["task_seconds"] is not None:
        what += ", lookup %.2fs" % r["task_seconds"]
    if not r["valid"]:
        what += "  !! expected %s: not counted (did the recipe or a role change meanwhile?)" % (
            "a bake" if case == "full" else "a catalog hit")
    return r, what


def report(args, runs, info):
    def times(case, key="seconds"):
        return [r[key] for r in runs if r["case"] == case and r.get("valid", True) and r.get(key) is not None]

    stats = {c: summary(times(c)) for c in LABELS}
    inner = {"full_module": summary(times("full", "task_seconds")),
             "full_packer": summary(times("full", "packer_seconds")),
             "noop_lookup": summary(times("noop", "task_seconds"))}
    med = {c: (stats[c] or {}).get("median") for c in stats}

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    # Each round runs a no-op and a one-task playbook back to back: the median of
    # their per-round ratios is the figure least moved by this machine's drift.
    rounds = {}
    for r in runs:
        if r["case"] in ("noop", "one"):
            rounds.setdefault(r["round"], {})[r["case"]] = r["seconds"] if r.get("valid", True) else None
    paired = [p["noop"] / p["one"] for p in rounds.values() if p.get("noop") and p.get("one")]
    ratios = {"noop_over_one_task": ratio(med["noop"], med["one"]), "noop_over_full": ratio(med["noop"], med["full"]),
              "noop_over_one_task_paired": round(statistics.median(paired), 3) if paired else None,
              "full_over_plain": ratio(med["full"], med["plain"]),
              "full_packer_over_plain": ratio((inner["full_packer"] or {}).get("median"), med["plain"])}
    log()
    log("immutable.infra bake benchmark: recipe %s, %s cpus, %s, %s" % (
        args.recipe, info["cpus"], info["packer"], info["revision"]))
    log("%-30s %3s %8s %8s %8s" % ("case (wall time)", "n", "median", "min", "max"))
    for c in ("noop", "one", "full", "plain"):
        s = stats[c] or {}
        log("%-30s %3s %s %s %s" % (LABELS[c], s.get("n", 0), fmt(s.get("median"), width=8),
                                    fmt(s.get("min"), width=8), fmt(s.get("max"), width=8)))
    if inner["full_module"] and inner["full_packer"]:
        log("inside (b): module %.2fs, of which packer %.2fs" % (
            inner["full_module"]["median"], inner["full_packer"]["median"]))
    if inner["noop_lookup"]:
        log("inside (a): bake task %.2fs (fingerprint + catalog lookup)" % inner["noop_lookup"]["median"])
    log()
    if ratios["noop_over_one_task"]:
        log("noop/one-task     = %.2fx  (medians; per round: %.2fx; aim <= %.1fx)" % (
            ratios["noop_over_one_task"], ratios["noop_over_one_task_paired"], NOOP_AIM))
    log("noop/full         = %s" % ("%.2fx" % ratios["noop_over_full"] if ratios["noop_over_full"] else "n/a"))
    if ratios["full_over_plain"]:
        log("full/plain-packer = %.2fx  (the bake's overhead over plain Packer: %+.1fs)" % (
            ratios["full_over_plain"], med["full"] - med["plain"]))
    if ratios["full_packer_over_plain"]:
        log("packer-in-bake/plain-packer = %.2fx" % ratios["full_packer_over_plain"])
    invalid = [r for r in runs if not r.get("valid", True)]
    if invalid:
        log("note: %d run(s) did not do what their case means and were not counted" % len(invalid))
    return {"summary": stats, "inside_bake": inner, "ratios": ratios}


def main(argv=None):
    args = parse_args(argv)
    require_collection()
    wall_started = time.monotonic()
    # A longer default timeout than release.py's, and a minute for Packer to
    # remove its build container when interrupted.
    tmp, env, runner, registry = setup("immutable-infra-bench-", timeout=900, grace=60)
    runner.build_names, runner.created_ids = set(), set()
    images_before, digests, runs = None, set(), []
    catch_sigterm()
    try:
        registry.start()
        reg = registry.address
        log("bench: registry %s (pid %d), state %s" % (reg, registry.proc.pid, tmp))
        images_before = podman_images(runner)
        t0 = time.monotonic()
        base_how = seed_base(runner, reg, images_before, args.build_base)
        parent_ref, digest = pull_by_digest(runner, reg, BASE_NAME, "1")
        digests.add(digest)
        log("bench: parent %s (%s, %.1fs)" % (parent_ref, base_how, time.monotonic() - t0))
        packer_env, provisioner_keys = plain_packer_env(env, tmp)
        ctx = {"tmp": tmp, "parent_ref": parent_ref, "packer_env": packer_env,
               "one_play": os.path.join(tmp, "one-task.yml")}
        with open(ctx["one_play"], "w") as f:
            json.dump(ONE_TASK_PLAY, f)

        # Interleaved rounds. The first full bake fills the empty catalog ("new
        # inputs"), the others are forced; it also tells the collection paths
        # the bake hands Packer (the plain build gets the same).
        counts = {"full": args.full, "plain": args.plain, "noop": args.noop, "one": args.one}
        plan = [(i, c) for i in range(max(counts.values())) for c in ("full", "plain", "noop", "one") if i < counts[c]]
        for k, (rnd, case) in enumerate(plan, 1):
            r, what = run_case(case, k, args, runner, reg, ctx)
            r.update(case=case, round=rnd)
            runs.append(r)
            log("  [%2d/%d] %-5s %6.2fs  %s" % (k, len(plan), case, r["seconds"], what))

        info = environment(runner, {"packer": ["packer", "version"]})
        figures = report(args, runs, info)
        write_results(args.results_dir, "bake", dict(figures, **{
            "recipe": args.recipe, "repetitions": counts, "environment": info, "base_image": base_how,
            "plain_packer_env": {k: packer_env.get(k) for k in provisioner_keys + ["ANSIBLE_COLLECTIONS_PATH"]},
            "runs": runs}), round(time.monotonic() - wall_started, 1))
        return 0
    finally:
        ignore_signals()
        try:
            # Build containers left by an interrupted run: the plain ones by name,
            # the bake's by the names Packer wrote to this bench's own bake logs.
            names = set(runner.build_names)
            logs = os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "bake-logs")
            for fn in os.listdir(logs) if os.path.isdir(logs) else []:
                with open(os.path.join(logs, fn), errors="replace") as f:
                    names.update(re.findall(r"immutable-bake-[a-z0-9-]+-[0-9a-f]{12}", f.read()))
            remove_containers(runner, names)
            stop_and_restore(runner, registry, images_before, digests, runner.created_ids)
        finally:
            registry.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            restore_signals()


if __name__ == "__main__":
    cli(main)
