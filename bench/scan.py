# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How an image scan grows with the image's packages and with the advisories,
in one run:

  (a) load, cold: _advisories.load_advisories with an empty cache directory
      (read, validate against the OSV schema / the tracker's layout with
      jsonschema, normalise, index by (ecosystem, source package), digest,
      write the cache);
  (b) load, cached: the same call again (stat/hash the sources, read the
      cache: no parsing of the feeds, no validation);
  (b') load, updated: the feeds of the next day (1% of the records changed),
      with the cache of (a): only the changed parts are validated and
      normalised again (once per M, after the others);
  (c) match: _advisories.match of the image's components against the index;
  scan = (b) + (c), what image_scan pays per re-scan of a version.

for N in {250, 1,000, 4,000} packages x M in {10,000, 100,000} advisories,
side by side. The data is synthetic with the shapes of the real feeds, made
afresh in a temporary directory for each M: half of M as OSV records in a zip
(OSV's all.zip layout: one <id>.json per record, Debian:11 and Debian:12
ranges, CVSS v3 vectors on some, DSA ids aliasing CVEs), half as the Debian
security tracker's JSON ({source: {CVE: {releases: {bullseye, bookworm,
trixie, sid}}}}), over 6,000 source packages with a skewed spread (a few
sources have hundreds of CVEs, like the kernel and browsers); a third of the
OSV CVEs are also in the tracker, so findings merge. The image is a dpkg-like
list of N binary packages from about N/2.2 source packages (a few binNMU'd,
some with epochs), two thirds of them among the sources with advisories.
(b) and (c) run --reps times, interleaved; (a) once per M. Single timings are
noise on this shared machine: read the medians and the ratios. The aim is a
scan under 2 s for 1,000 packages against 100,000 advisories.
Results also go to bench/results/scan-<timestamp>.json.

    python3 bench/scan.py [--packages 250,1000,4000] [--advisories 10000,100000] [--reps 3]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (TOP, Runner, catch_sigterm, cli, environment, fmt, log, require_collection,  # noqa: E402
                     summary, write_results)

SOURCES = 6000
RELEASES = ("bullseye", "bookworm", "trixie", "sid")
URGENCIES = ("not yet assigned", "low", "medium", "high", "unimportant", "end-of-life")
WORDS = "buffer overflow in the parser allows remote attackers to cause a denial of service via crafted input".split()
OS_INFO = {"id": "debian", "version_id": "12", "codename": "bookworm"}


def collection():
    sys.path.insert(0, os.path.join(TOP, ".cache", "collections"))
    from ansible_collections.immutable.infra.plugins.module_utils import _advisories
    return _advisories


def source_version(i):
    epoch = "1:" if i % 17 == 0 else ""
    return "%s%d.%d.%d-%d+deb12u%d" % (epoch, i % 7 + 1, i % 13, i % 5, i % 4 + 1, i % 9 + 1)


def bumped(version, rng):
    """A version just below, equal to or just above version (fixed before or after the installed one)."""
    return version + rng.choice(("", "~rc1", "+deb12u99", "1"))[: 99] if rng.random() < 0.7 else version[:-1] + "0"


def skewed_source(rng):
    """A source index: a tenth of the advisories on 50 sources (the kernel, browsers,
    toolchains: a few hundred each at 100,000), the rest spread over all of them."""
    return rng.randrange(50) if rng.random() < 0.1 else rng.randrange(SOURCES)


def make_feeds(tmp, m, seed=9, update=False):
    """The feeds of m advisories; with update, the next day's: 1% of the records changed."""
    rng = random.Random(seed)
    tracker, cves = {}, []
    for n in range(m // 2):
        src = skewed_source(rng)
        cve = "CVE-%d-%05d" % (2005 + n % 20, n)
        cves.append((cve, src))
        releases = {}
        for release in RELEASES:
            status = rng.choice(("resolved", "resolved", "resolved", "open", "undetermined"))
            info = {"status": status, "urgency": rng.choice(URGENCIES),
                    "repositories": {release: source_version(src)}}
            if status == "resolved":
                info["fixed_version"] = bumped(source_version(src), rng) if rng.random() < 0.9 else "0"
            releases[release] = info
        if update and n % 100 == 0:
            releases["bookworm"]["urgency"] = "high"
        tracker.setdefault("src%05d" % src, {})[cve] = {
            "description": " ".join(rng.sample(WORDS, 10)), "scope": "remote", "debianbug": 1000000 + n,
            "releases": releases}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(m - m // 2):
            shared = n % 3 == 0 and cves
            cve, src = cves[n % len(cves)] if shared else ("CVE-2030-%06d" % n, skewed_source(rng))
            ident = "DSA-%d-1" % (4000 + n) if n % 2 else "DEBIAN-%s" % cve
            record = {"schema_version": "1.6.0", "id": ident, "modified": "2024-01-01T00:00:00Z",
                      "published": "2023-12-01T00:00:00Z", "aliases" if n % 2 else "upstream": [cve],
                      "summary": "src%05d - security update" % src, "details": " ".join(rng.sample(WORDS, 12)),
                      "affected": [{"package": {"ecosystem": eco, "name": "src%05d" % src,
                                                "purl": "pkg:deb/debian/src%05d" % src},
                                    "ranges": [{"type": "ECOSYSTEM", "events": [
                                        {"introduced": "0"}, {"fixed": bumped(source_version(src), rng)}]}],
                                    "ecosystem_specific": {"urgency": rng.choice(URGENCIES)}}
                                   for eco in ("Debian:11", "Debian:12")]}
            if update and n % 100 == 1:
                record["modified"] = "2024-01-02T00:00:00Z"
            if n % 4 == 0:
                record["severity"] = [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:%s/PR:N/UI:N/S:U/C:H/I:%s/A:H"
                                       % (rng.choice("LH"), rng.choice("NLH"))}]
            archive.writestr("%s.json" % ident, json.dumps(record, indent=2))
    zip_path, tracker_path = os.path.join(tmp, "osv-all.zip"), os.path.join(tmp, "tracker.json")
    with open(zip_path, "wb") as f:
        f.write(buf.getvalue())
    with open(tracker_path, "w") as f:
        json.dump(tracker, f)
    return [{"path": zip_path}, {"path": tracker_path}]


def make_components(n, seed=9):
    rng = random.Random(seed + n)
    hot = list(range(600))  # two thirds of the image from these sources (the first 50 are the busiest)
    comps, src, left = [], 0, n
    while left > 0:
        index = rng.choice(hot) if rng.random() < 0.66 else rng.randrange(600, SOURCES)
        version = source_version(index)
        for b in range(min(left, rng.choice((1, 1, 2, 3, 4)))):
            name = "src%05d-bin%d-%d" % (index, b, src)
            binary = version + ("+b1" if index % 11 == 0 else "")
            comps.append({"type": "deb", "name": name, "version": binary, "arch": "amd64", "source": "src%05d" % index,
                          "source_version": version, "purl": "pkg:deb/debian/%s@%s?arch=amd64" % (name, binary)})
            left -= 1
        src += 1
    return comps


def fresh_process(advisories):
    """As in a new scan process: no memoised version comparisons, a collected heap."""
    for memo in (advisories._deb_cmp, advisories._py_version, advisories._cvss_severity):  # pylint: disable=protected-access
        memo.cache_clear()
    gc.collect()


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packages", default="250,1000,4000", help="image sizes (binary packages), growing")
    ap.add_argument("--advisories", default="10000,100000", help="advisory counts, growing")
    ap.add_argument("--reps", type=int, default=3, help="timed runs of load (cached) and match per case")
    args = ap.parse_args()
    ns = sorted(int(s) for s in args.packages.split(","))
    ms = sorted(int(s) for s in args.advisories.split(","))
    require_collection()
    catch_sigterm()
    started = time.monotonic()
    advisories = collection()
    results = {"cases": {}, "compare": advisories._DEB_CMP_NAME,  # pylint: disable=protected-access
               "environment": environment(Runner(dict(os.environ)), {})}
    images = {n: make_components(n) for n in ns}
    tmp = tempfile.mkdtemp(prefix="immutable-bench-scan-")
    try:
        for m in ms:
            made, sources = timed(lambda: make_feeds(tmp, m))
            cache = tempfile.mkdtemp(dir=tmp)
            cold, index = timed(lambda: advisories.load_advisories(sources, cache_dir=cache))
            log("%6d advisories (%s; made in %.1fs): cold load %.2fs, %d entries, %s"
                % (m, ", ".join("%s %d" % (os.path.basename(s["source"]), s["count"]) for s in index.sources),
                   made, cold, index.count, index.digest[:19]))
            digest, index = index.digest, None  # a scan process holds one index: free the cold one
            gc.collect()
            loads, matches, found = [], {n: [] for n in ns}, {}
            for rep in range(args.reps):
                fresh_process(advisories)
                seconds, again = timed(lambda: advisories.load_advisories(sources, cache_dir=cache))
                if again.digest != digest or again.cached != len(sources):
                    raise SystemExit("the cached load differs from the cold one")
                loads.append(seconds)
                for n in (ns if rep % 2 == 0 else list(reversed(ns))):
                    fresh_process(advisories)
                    seconds, findings = timed(lambda: advisories.match(OS_INFO, images[n], again))
                    matches[n].append(seconds)
                    found[n] = findings
            make_feeds(tmp, m, update=True)
            updated, fresh = timed(lambda: advisories.load_advisories(sources, cache_dir=cache))
            if fresh.digest == digest or fresh.cached:
                raise SystemExit("the updated feeds were not loaded again")
            log("%6d advisories, 1%% changed: load %.2fs" % (m, updated))
            for n in ns:
                results["cases"]["%d/%d" % (n, m)] = {
                    "packages": n, "advisories": m, "load_cold": round(cold, 3), "load_updated": round(updated, 3),
                    "load_cached": summary(loads),
                    "match": summary(matches[n]), "findings": len(found[n]),
                    "fixable": sum(f["fix_available"] for f in found[n])}
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(ns, ms, results["cases"])
    write_results(os.path.join(TOP, "bench", "results"), "scan", results, time.monotonic() - started)
    return 0


def report(ns, ms, cases):
    log()
    cols = ["%d/%d" % (n, m) for m in ms for n in ns]
    log("%-22s %s" % ("packages/advisories", "".join("%14s" % c for c in cols)))
    rows = (("load, cold", lambda c: c["load_cold"]), ("load, 1% updated", lambda c: c["load_updated"]),
            ("load, cached", lambda c: c["load_cached"]["median"]),
            ("match", lambda c: c["match"]["median"]),
            ("scan (cached+match)", lambda c: c["load_cached"]["median"] + c["match"]["median"]))
    for label, get in rows:
        log("%-22s %s" % (label, "".join("%14s" % fmt(get(cases[c])) for c in cols)))
    counts = ["%d (%d)" % (cases[c]["findings"], cases[c]["fixable"]) for c in cols]
    log("%-22s %s" % ("findings (fixable)", "".join("%14s" % c for c in counts)))
    for m in ms:
        for i in range(1, len(ns)):
            a, b = cases["%d/%d" % (ns[i - 1], m)], cases["%d/%d" % (ns[i], m)]
            log("growth with packages %d -> %d (%.1fx) at %d advisories: match %.2fx" % (
                ns[i - 1], ns[i], ns[i] / ns[i - 1], m, b["match"]["median"] / a["match"]["median"]))
    for n in ns:
        for i in range(1, len(ms)):
            a, b = cases["%d/%d" % (n, ms[i - 1])], cases["%d/%d" % (n, ms[i])]
            log("growth with advisories %d -> %d (%.1fx) at %d packages: cold load %.2fx, updated load %.2fx, "
                "cached load %.2fx, match %.2fx" % (
                    ms[i - 1], ms[i], ms[i] / ms[i - 1], n, b["load_cold"] / a["load_cold"],
                    b["load_updated"] / a["load_updated"], b["load_cached"]["median"] / a["load_cached"]["median"],
                    b["match"]["median"] / a["match"]["median"]))


if __name__ == "__main__":
    cli(main)
