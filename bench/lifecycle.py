# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How image_info and prune grow with the catalog, in one run:

  (a) describe: Lifecycle.describe of every repository, one after the other
      (what image_info does for a recipe: versions, channels, test results,
      revocations, out_of_date), summed over the 10 recipes;
  (b) prune --check: _prune.prune in check mode over every repository (the
      image_prune module's one call down: every version, the channels and
      their history, the podman server groups, the router state), deleting
      nothing;

at 100, 300 and 1,000 versions across 10 recipes, side by side: the catalog
grows between sizes, and each case runs --reps times per size, interleaved
(the order flips every repetition). It prints the medians, the time per
version and the growth factor of each case against the growth of the
catalog (1.0x per 1.0x = linear). Single timings are noise on this shared
machine; read the ratios. Nothing passes or fails on time, but a prune that
would delete a version referenced by a channel, or a describe that misses
versions, fails the run.

The versions are tiny images (a config and a 1-file layer, with the labels a
bake writes) pushed through the registry HTTP client (_oci), 8 at a time;
recipes 5-9 are baked on versions of recipes 0-4 (parent labels), and 3
recipes have channels (dev, prod) with a few moves each. Half of them are
older than prune's default min_age, so prune has work to plan.

Hermetic like bench/bake.py (bench/_common.py): a temporary HOME and state
directory, the project's registry started by playbooks/registry.yml on a free
loopback port under it and stopped by its pid file at the end, also on
failure or Ctrl-C. Results also go to bench/results/lifecycle-<timestamp>.json.

    python3 bench/lifecycle.py [--sizes 100,300,1000] [--reps 3]   (or: make bench-lifecycle)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (TOP, BenchError, catch_sigterm, cli, environment, fmt, ignore_signals, log,  # noqa: E402
                     require_collection, restore_signals, setup, summary, write_results)

RECIPES = ["recipe%02d" % i for i in range(10)]
CHANNELS = {"recipe00": ("dev", "prod"), "recipe03": ("dev", "prod"), "recipe07": ("dev",)}
DAY = 86400
CASES = {"describe": "(a) describe (image_info)", "prune": "(b) prune --check"}


def collection():
    sys.path.insert(0, os.path.join(TOP, ".cache", "collections"))
    from ansible_collections.immutable.infra.plugins.module_utils import _lifecycle, _oci, _prune
    from ansible_collections.immutable.infra.plugins.module_utils._platforms import get_platform
    from ansible_collections.immutable.infra.plugins.module_utils._traffic._haproxy import Router
    return _lifecycle, _oci, _prune, get_platform, Router


class Catalog:
    """Pushes tiny versions with bake labels; remembers digests per recipe."""

    def __init__(self, oci, address):
        self.oci, self.address = oci, address
        self.client = oci.RegistryClient(address)
        self.digests = {r: [] for r in RECIPES}
        self.count = 0

    def _push(self, recipe, number, parent):
        payload = ("%s:%d %s\n" % (recipe, number, uuid.uuid4().hex)).encode()
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo("version.txt")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        layer = gzip.compress(raw.getvalue(), mtime=0)
        # Every other version is 30 days old, the rest a day old: older and younger than min_age 7d.
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - (30 if number % 2 else 1) * DAY))
        labels = {"org.opencontainers.image.version": str(number), "org.opencontainers.image.created": created,
                  "infra.immutable.recipe": recipe, "infra.immutable.fingerprint": "sha256:" + hashlib.sha256(
                      payload).hexdigest()}
        if parent:
            labels.update({"org.opencontainers.image.base.digest": parent[1],
                           "org.opencontainers.image.base.name": "%s/%s:%d" % (self.address, parent[0], parent[2])})
        config = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                             "config": {"Labels": labels, "Cmd": ["/bin/true"]},
                             "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(
                                 raw.getvalue()).hexdigest()]}}, sort_keys=True).encode()
        return self.client.put_manifest(recipe, str(number), {
            "schemaVersion": 2, "mediaType": self.oci.MEDIA_OCI_MANIFEST,
            "config": self.client.put_blob(recipe, config, "application/vnd.oci.image.config.v1+json"),
            "layers": [self.client.put_blob(recipe, layer, "application/vnd.oci.image.layer.v1.tar+gzip")]})

    def _parent(self, recipe):
        """Recipes 5-9 are baked on the newest version of recipe index-5."""
        index = RECIPES.index(recipe)
        parent = RECIPES[index - 5] if index >= 5 else None
        if not parent or not self.digests[parent]:
            return None
        return parent, self.digests[parent][-1], len(self.digests[parent])

    def grow(self, total):
        """Push versions, one per recipe per round, until the catalog holds `total`; returns seconds."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            while self.count < total:
                number, take = self.count // len(RECIPES) + 1, min(len(RECIPES), total - self.count)
                for half in (RECIPES[:take][:5], RECIPES[:take][5:]):     # parents before their children
                    jobs = [(r, number, self._parent(r)) for r in half]
                    for job, digest in zip(jobs, pool.map(lambda j: self._push(*j), jobs)):
                        self.digests[job[0]].append(digest)
                self.count += take
        return time.monotonic() - started


def move_channels(lifecycle, catalog):
    """A few moves per channel: to the 4th newest, the 3rd newest, then the newest version."""
    for recipe, channels in sorted(CHANNELS.items()):
        digests = catalog.digests[recipe]
        for channel in channels:
            for digest in digests[-4:-2] + digests[-1:]:
                lifecycle.move_channel(recipe, channel, digest, "bench", reason="bench")


def measure(case, lc, prune_mod, platforms, router, expected):
    started = time.monotonic()
    if case == "describe":
        found = sum(len(lc.describe(r)) for r in RECIPES)
        seconds = time.monotonic() - started
        if found != expected:
            raise BenchError("describe saw %d versions, the catalog holds %d" % (found, expected))
        return seconds, None
    res = prune_mod.prune(lc, platforms, router, None, 5, "7d", 10, check_mode=True)
    seconds = time.monotonic() - started
    if res["summary"]["versions"] != expected:
        raise BenchError("prune saw %d versions, the catalog holds %d" % (res["summary"]["versions"], expected))
    heads = {lc.channel(r, c)["digest"] for r, cs in CHANNELS.items() for c in cs}
    wrong = [v["reference"] for v in res["versions"] if v["digest"] in heads and v["action"] != "kept"]
    if wrong:
        raise BenchError("prune would delete channel heads: %s" % wrong)
    return seconds, res["summary"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,300,1000", help="catalog sizes (versions), growing")
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each case per size")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    require_collection()
    catch_sigterm()
    started = time.monotonic()
    tmp, env, runner, registry = setup("immutable-bench-lifecycle-")
    os.environ.update({k: env[k] for k in ("HOME", "IMMUTABLE_INFRA_STATE_DIR", "CONTAINERS_CONF") if k in env})
    lifecycle_mod, oci, prune_mod, get_platform, router_cls = collection()
    results = {"sizes": {}, "environment": environment(runner, {"registry": ["docker-registry", "--version"]})}
    try:
        registry.start()
        log("registry %s (pid %d), state under %s" % (registry.address, registry.proc.pid, tmp))
        catalog = Catalog(oci, registry.address)
        lc = lifecycle_mod.Lifecycle(registry.address)
        platforms = [("podman", get_platform("podman"))]
        router = router_cls(os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "router"))
        for size in sizes:
            before = catalog.count
            pushed = catalog.grow(size)
            move_channels(lc, catalog)
            log("%5d versions (pushed %d in %.1fs)" % (size, size - before, pushed))
            times = {c: [] for c in CASES}
            plan = None
            for rep in range(args.reps):
                for case in (list(CASES) if rep % 2 == 0 else list(reversed(CASES))):
                    seconds, out = measure(case, lc, prune_mod, platforms, router, size)
                    times[case].append(seconds)
                    plan = out or plan
            results["sizes"][size] = {"added": size - before, "push_seconds": round(pushed, 3), "plan": plan,
                                      **{c: summary(t) for c, t in times.items()}}
    finally:
        ignore_signals()
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        restore_signals()
    report(sizes, results["sizes"])
    write_results(os.path.join(TOP, "bench", "results"), "lifecycle", results, time.monotonic() - started)
    return 0


def report(sizes, by_size):
    log()
    log("%-26s %s" % ("versions", "".join("%18d" % s for s in sizes)))
    for case, label in CASES.items():
        medians = [by_size[s][case]["median"] for s in sizes]
        log("%-26s %s" % (label, "".join("%18s" % fmt(m) for m in medians)))
        log("%-26s %s" % ("  per version", "".join("%18s" % fmt(m * 1000 / s, "ms") for m, s in zip(medians, sizes))))
        growth = ["%.2fx for %.2fx" % (medians[i] / medians[i - 1], sizes[i] / sizes[i - 1]) if i else "-"
                  for i in range(len(sizes))]
        log("%-26s %s" % ("  growth (time for versions)", "".join("%18s" % g for g in growth)))
    ratio = [by_size[s]["prune"]["median"] / by_size[s]["describe"]["median"] for s in sizes]
    log("%-26s %s" % ("prune / describe", "".join("%17.2fx" % r for r in ratio)))
    plans = ["%d/%d" % (by_size[s]["plan"]["deleted"], by_size[s]["plan"]["versions"]) for s in sizes]
    log("%-26s %s" % ("prune would delete", "".join("%18s" % p for p in plans)))
    log("overall growth %d -> %d versions (%.1fx): describe %.1fx, prune %.1fx" % (
        sizes[0], sizes[-1], sizes[-1] / sizes[0],
        by_size[sizes[-1]]["describe"]["median"] / by_size[sizes[0]]["describe"]["median"],
        by_size[sizes[-1]]["prune"]["median"] / by_size[sizes[0]]["prune"]["median"]))


if __name__ == "__main__":
    cli(main)
