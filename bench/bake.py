# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Side-by-side benchmark of a bake, in one run:

  (a) a no-op bake: unchanged inputs, catalog hit, Packer does not run;
  (b) a full bake: `bake_force: true`, Packer runs, the image is pushed;
  (c) a plain `packer build` of the same template and variables (no
      fingerprint, no catalog, no push).

(a) and (b) are timed the way users run them: wall time of
`ansible-playbook playbooks/bake.yml`. The runs are interleaved so that drift
of this shared machine hits every case alike. The point is the ratios
(no-op / full, full / plain Packer); single timings are noise here, and
nothing is asserted about them. Only correctness is checked: a no-op must
report changed=false and a full bake changed=true, else the run is flagged.

Hermetic: a temporary HOME, state directory (IMMUTABLE_INFRA_STATE_DIR) and a
registry of its own on a free loopback port, stopped by pid at the end (also
on failure or Ctrl-C); images and names it added to local podman storage are
removed again. Results also go to bench/results/bake-<timestamp>.json.

    python3 bench/bake.py [--noop 5] [--full 3] [--plain 3]      (or: make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (TOP, BenchError, catch_sigterm, cli, environment, fmt, ignore_signals, log,  # noqa: E402
                     play_doc, podman_images, pull_by_digest, remove_containers, require_collection,
                     restore_signals, restore_storage, setup, summary, tail, write_results)

BASE_NAME = "immutable/base"
DEFAULT_BASE_REPOS = ("127.0.0.1:5000/" + BASE_NAME, "localhost:5000/" + BASE_NAME)


# ------------------------------------------------------------- podman storage
def find_local_base(images):
    """The default catalog's base image (127.0.0.1:5000/immutable/base:TAG, left
    by `make demo`) in local storage, to copy instead of rebuilding; or None.
    Images of other registries are left alone: they belong to runs (tests)
    that may remove them at any time."""
    found = []
    for names in images.values():
        for name in names:
            repo, _sep, tag = name.rpartition(":")
            if "@" not in name and repo in DEFAULT_BASE_REPOS and tag:
                found.append((tag.isdigit(), int(tag) if tag.isdigit() else 0, name))
    return max(found)[2] if found else None


# ---------------------------------------------------------------- the cases
def bake_playbook(runner, registry, recipe, force):
    argv = ["ansible-playbook", os.path.join(TOP, "playbooks", "bake.yml"),
            "-e", "recipe=%s" % recipe, "-e", "catalog_registry=%s" % registry]
    if force:
        # -e bake_force=true would pass the string "true"; the play wants a bool.
        argv += ["-e", json.dumps({"bake_force": True})]
    rc, out, err, seconds = runner.run(argv)
    result = bake_result(out)
    if rc != 0 or result is None:
        msg = (result or {}).get("msg") or tail(out, err)
        raise BenchError("bake playbook failed (rc=%s): %s" % (rc, msg))
    image = result.get("image") or {}
    return {
        "seconds": round(seconds, 3),
        "changed": bool(result.get("changed")),
        "version": image.get("version"),
        "module_seconds": result.get("duration"),
        "packer_seconds": result.get("packer_seconds"),
        "fingerprint": result.get("fingerprint"),
        "parent_digest": (result.get("parent") or {}).get("digest"),
        "collections_paths": (result.get("invocation") or {}).get("module_args", {}).get("collections_paths"),
    }


def bake_result(stdout):
    """The image_bake task's result from ansible.posix.json callback output."""
    doc = play_doc(stdout) or {}
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            if task.get("task", {}).get("name") == "Bake the recipe":
                return task.get("hosts", {}).get("localhost")
    for play in doc.get("plays", []):  # a failure before the bake task: return its message
        for task in play.get("tasks", []):
            res = task.get("hosts", {}).get("localhost", {})
            if res.get("failed"):
                return {"msg": "%s: %s" % (task["task"].get("name"), res.get("msg"))}
    return None


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


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noop", type=int, default=5, help="no-op bakes (a), default 5")
    p.add_argument("--full", type=int, default=3, help="full (forced) bakes (b), default 3")
    p.add_argument("--plain", type=int, default=3, help="plain packer builds (c), default 3")
    p.add_argument("--recipe", default="web", help="a recipe shipped in packer/ (default web)")
    p.add_argument("--build-base", action="store_true",
                   help="build the parent with playbooks/base.yml (~40 s) even if a local base image can be copied")
    p.add_argument("--results-dir", default=os.path.join(TOP, "bench", "results"))
    args = p.parse_args(argv)
    if min(args.noop, args.full, args.plain) < 1:
        p.error("every case needs at least one repetition")
    if not os.path.isdir(os.path.join(TOP, "packer", args.recipe)):
        p.error("no recipe packer/%s" % args.recipe)
    return args


def provisioner_settings():
    """The environment image_bake gives Packer's ansible provisioner, from the
    collection itself when it can be imported, else a copy of it."""
    sys.path.insert(0, os.path.join(TOP, ".cache", "collections"))
    try:
        from ansible_collections.immutable.infra.plugins.module_utils._bake import PROVISIONER_ENV
        return dict(PROVISIONER_ENV), "module_utils._bake.PROVISIONER_ENV"
    except (ImportError, AttributeError):
        return {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0"}, "bench copy"
    finally:
        sys.path.pop(0)


def main(argv=None):
    args = parse_args(argv)
    require_collection()
    wall_started = time.monotonic()
    # A longer default timeout than release.py's, and a minute for Packer to
    # remove its build container when interrupted.
    tmp, env, runner, registry = setup("immutable-infra-bench-", timeout=900, grace=60)
    runner.build_names, runner.created_ids = set(), set()
    images_before = None
    digests = set()
    runs = []
    info = {}
    catch_sigterm()
    try:
        registry.start()
        reg = registry.address
        log("bench: registry %s (pid %d), state %s" % (reg, registry.proc.pid, tmp))
        images_before = podman_images(runner)

        # The parent image: copy a local base image if there is one, else build it.
        t0 = time.monotonic()
        local_base = None if args.build_base else find_local_base(images_before)
        base_ref = "%s/%s:1" % (reg, BASE_NAME)
        base_how = None
        if local_base:
            copy = ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                    "containers-storage:" + local_base, "docker://" + base_ref]
            rc, out, err, _s = runner.run(copy, timeout=600)
            base_how = "copied from local %s" % local_base if rc == 0 else None
            if rc != 0:
                log("bench: copying %s failed (%s); building the base image instead" % (
                    local_base, (err or out).strip()[-200:]))
        if base_how is None:
            log("bench: building the parent image with playbooks/base.yml (mmdebstrap, ~40 s)")
            runner.check(["ansible-playbook", os.path.join(TOP, "playbooks", "base.yml"),
                          "-e", "catalog_registry=%s" % reg], "base image playbook", timeout=1800)
            base_how = "built by playbooks/base.yml"
        parent_ref, digest = pull_by_digest(runner, reg, BASE_NAME, "1")
        digests.add(digest)
        log("bench: parent %s (%s, %.1fs)" % (parent_ref, base_how, time.monotonic() - t0))

        # Plain packer: same template, same contract variables, docker -> podman shim.
        shim = os.path.join(tmp, "shim")
        os.makedirs(shim)
        os.symlink(shutil.which("podman", path=env["PATH"]) or "/usr/bin/podman", os.path.join(shim, "docker"))
        packer_env = dict(env, PATH=shim + os.pathsep + env["PATH"])
        packer_env.pop("ANSIBLE_STDOUT_CALLBACK")  # ours, for reading results; Packer gets what the bake gives it:
        provisioner_env, provisioner_env_from = provisioner_settings()
        packer_env.update(provisioner_env)
        recipe_dir = os.path.join(TOP, "packer", args.recipe)

        # Interleaved rounds (full, plain, no-op), so drift of this shared
        # machine hits every case alike. The first full bake runs against the
        # empty catalog ("new inputs"), the others are forced; the first also
        # tells the collection paths the bake hands Packer (the plain build
        # gets the same).
        first = None
        plan = []
        for i in range(max(args.noop, args.full, args.plain)):
            plan += [c for c, n in (("full", args.full), ("plain", args.plain), ("noop", args.noop)) if i < n]
        for k, case in enumerate(plan, 1):
            if case == "plain":
                if "ANSIBLE_COLLECTIONS_PATH" not in packer_env:
                    packer_env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(
                        (first or {}).get("collections_paths") or [os.path.join(TOP, ".cache", "collections")])
                r = plain_packer(runner, packer_env, recipe_dir, parent_ref, tmp, k)
                what = "image %s" % r["image_id"]
            else:
                force = case == "full" and first is not None
                r = bake_playbook(runner, reg, args.recipe, force=force)
                if case == "full":
                    r["kind"] = "force" if force else "new inputs"
                    first = first or dict(r)
                r.pop("collections_paths", None)
                expected = case == "full"
                r["valid"] = r["changed"] == expected
                what = "%s:%s %s" % (args.recipe, r["version"], "unchanged" if not r["changed"]
                                     else "baked (%s)" % r.get("kind", "unexpectedly"))
                if r["packer_seconds"] is not None:
                    what += ", module %.1fs, packer %.1fs" % (r["module_seconds"], r["packer_seconds"])
                elif r["module_seconds"] is not None:
                    what += ", module %.2fs" % r["module_seconds"]
                if not r["valid"]:
                    what += "  !! expected %s: not counted (did the recipe or a role change meanwhile?)" % (
                        "a bake" if expected else "a catalog hit")
            r["case"] = case
            runs.append(r)
            log("  [%2d/%d] %-5s %6.2fs  %s" % (k, len(plan), case, r["seconds"], what))

        # --------------------------------------------------------------- report
        def times(case, key="seconds"):
            return [r[key] for r in runs if r["case"] == case and r.get("valid", True) and r.get(key) is not None]

        stats = {c: summary(times(c)) for c in ("noop", "full", "plain")}
        inner = {"full_module": summary(times("full", "module_seconds")),
                 "full_packer": summary(times("full", "packer_seconds")),
                 "noop_module": summary(times("noop", "module_seconds"))}
        med = {c: (stats[c] or {}).get("median") for c in stats}
        ratios = {
            "noop_over_full": round(med["noop"] / med["full"], 3) if med["noop"] and med["full"] else None,
            "full_over_plain": round(med["full"] / med["plain"], 3) if med["full"] and med["plain"] else None,
            "full_packer_over_plain": (round(inner["full_packer"]["median"] / med["plain"], 3)
                                       if inner["full_packer"] and med["plain"] else None),
        }
        info = environment(runner, {"packer": ["packer", "version"]})
        labels = {"noop": "(a) no-op bake (catalog hit)", "full": "(b) full bake",
                  "plain": "(c) plain packer build"}
        log()
        log("immutable.infra bake benchmark: recipe %s, %s cpus, %s, %s" % (
            args.recipe, info["cpus"], info["packer"], info["revision"]))
        log("%-30s %3s %8s %8s %8s" % ("case (wall time)", "n", "median", "min", "max"))
        for c in ("noop", "full", "plain"):
            s = stats[c] or {}
            log("%-30s %3s %s %s %s" % (labels[c], s.get("n", 0), fmt(s.get("median"), width=8),
                                        fmt(s.get("min"), width=8), fmt(s.get("max"), width=8)))
        if inner["full_module"] and inner["full_packer"]:
            log("inside (b), module's own figures: module %.2fs, of which packer %.2fs" % (
                inner["full_module"]["median"], inner["full_packer"]["median"]))
        if inner["noop_module"]:
            log("inside (a), module's own figure:  module %.2fs (fingerprint + catalog lookup)" % inner["noop_module"]["median"])
        log()
        log("noop/full         = %s" % ("%.2fx" % ratios["noop_over_full"] if ratios["noop_over_full"] else "n/a"))
        if ratios["full_over_plain"]:
            log("full/plain-packer = %.2fx  (the bake's overhead over plain Packer: %+.1fs)" % (
                ratios["full_over_plain"], med["full"] - med["plain"]))
        if ratios["full_packer_over_plain"]:
            log("packer-in-bake/plain-packer = %.2fx" % ratios["full_packer_over_plain"])
        invalid = [r for r in runs if not r.get("valid", True)]
        if invalid:
            log("note: %d run(s) did not do what their case means and were not counted" % len(invalid))

        write_results(args.results_dir, "bake", {
            "recipe": args.recipe,
            "repetitions": {"noop": args.noop, "full": args.full, "plain": args.plain},
            "environment": info, "base_image": base_how,
            "plain_packer_env": {k: packer_env.get(k) for k in sorted(provisioner_env) + ["ANSIBLE_COLLECTIONS_PATH"]},
            "plain_packer_env_from": provisioner_env_from,
            "summary": stats, "inside_bake": inner, "ratios": ratios, "runs": runs,
        }, round(time.monotonic() - wall_started, 1))
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
            registry.stop()
            if images_before is not None:
                for note in restore_storage(runner, images_before, "%s/" % registry.address if registry.port else "//",
                                            digests, runner.created_ids):
                    log("cleanup: " + note)
        finally:
            registry.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            restore_signals()


if __name__ == "__main__":
    cli(main)
