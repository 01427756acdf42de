# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vulnerability advisories the user supplies (OSV records: a directory, a zip
like OSV's all.zip, a JSON file; the Debian security tracker's JSON), by path
or URL, validated and indexed by (ecosystem, source package) once, and
matched against an SBOM's components with exact Debian version ordering.

    index = load_advisories([{"path": "/srv/osv/debian.zip"}, {"url": "https://.../json"}],
                            cache_dir=state_dir("advisories"))
    findings = match(sbom["os"], sbom["components"], index)

An index entry (_osv.normalise, _debian_tracker.normalise), keyed
"<ecosystem>\\0<name>" (ecosystem "Debian", "Debian:12", "Debian:bookworm" or
"PyPI"; name the Debian source package or the normalised PyPI name):

    [id, aliases, summary, [[cvss type, vector]..], database severity, urgency,
     ranges: [[[kind "i"|"f"|"l", version]..]..], versions: [..]]

The parsed and validated entries of each source are cached in cache_dir,
keyed by the source's content digest (a directory: the path, size and mtime
of its files), so a re-scan neither parses nor validates again; when a source
changed, its unchanged parts (files, zip members, tracker packages) are taken
from the previous load (_advisory_feeds reads the feeds)."""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import marshal
import os
import re
import struct
import sys
import tempfile

from ansible_collections.immutable.infra.plugins.module_utils import _advisory_feeds, _osv
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

try:  # dpkg's own comparison, ~100x faster; python-debian otherwise (the same ordering)
    import apt_pkg
    apt_pkg.init_system()
    _DEB_CMP = apt_pkg.version_compare
    _DEB_CMP_NAME = "apt_pkg"
except Exception:  # pylint: disable=broad-except  # ImportError, or apt_pkg without a usable configuration
    try:
        from debian.debian_support import version_compare as _DEB_CMP
        _DEB_CMP_NAME = "python-debian"
    except ImportError:
        _DEB_CMP = _DEB_CMP_NAME = None

try:
    from cvss import CVSS2, CVSS3, CVSS4
    from cvss.exceptions import CVSSError
    _CVSS = {"CVSS_V3": CVSS3, "CVSS_V4": CVSS4, "CVSS_V2": CVSS2}
except ImportError:  # severity then comes from the database severity or Debian's urgency
    _CVSS, CVSSError = {}, ValueError

try:
    from packaging.version import InvalidVersion, Version as PyVersion
except ImportError:
    PyVersion, InvalidVersion = None, ValueError

FORMATS = ("osv", "debian-tracker")
# What dpkg accepts as a version (python-debian's own check).
_VERSION_RE = re.compile(r"^(?:\d+:)?[A-Za-z0-9.+:~-]+?(?:-[A-Za-z0-9+.~]+)?$")
SEVERITIES = ("critical", "high", "medium", "low", "negligible", "unknown")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
URGENCY_SEVERITY = {"high": "high", "medium": "medium", "low": "low", "unimportant": "negligible",
                    "end-of-life": "negligible", "not yet assigned": "unknown"}
_DB_SEVERITY = {"critical": "critical", "high": "high", "important": "high", "medium": "medium",
                "moderate": "medium", "low": "low", "negligible": "negligible", "unimportant": "negligible",
                "none": "negligible"}
# Cache files are marshal data (fast; Python-version specific: the version is part of the format).
CACHE_FORMAT = "2-py%d.%d" % sys.version_info[:2]
CACHE_KEEP = 8  # cache files kept in cache_dir (the newest)


class AdvisoryIndex:
    """Normalised advisories per source: .digest, .count, .sources
    ([{"source": label, "count": n}]); .cached says how many sources came
    from the cache."""

    def __init__(self, tables, sources, digest, cached):
        self.tables = tables  # [(label, {key: [entry]})]
        self.sources = sources
        self.count = sum(s["count"] for s in sources)
        self.digest = digest
        self.cached = cached


# ----------------------------------------------------------------- versions
def compare_versions(a, b):
    """-1, 0 or 1: Debian version ordering (epochs, '~', revisions), as dpkg."""
    if _DEB_CMP is None:
        raise ImmutableInfraError("python-debian is required to compare Debian versions; run `make setup`")
    try:
        if _DEB_CMP_NAME == "apt_pkg" and not (_VERSION_RE.match(a) and _VERSION_RE.match(b)):
            raise ValueError("not a Debian version (epoch:upstream-revision)")  # python-debian checks this itself
        result = _DEB_CMP(a, b)
    except (ValueError, TypeError) as exc:
        raise ImmutableInfraError("cannot compare Debian versions %r and %r: %s" % (a, b, exc))
    return (result > 0) - (result < 0)


@functools.lru_cache(maxsize=200000)
def _deb_cmp(a, b):
    return compare_versions(a, b)


@functools.lru_cache(maxsize=20000)
def _py_version(text):
    try:
        return PyVersion(text)
    except InvalidVersion:
        raise ValueError("invalid PEP 440 version %r" % text)


def _py_cmp(a, b):
    if PyVersion is None:
        raise ValueError("packaging is not installed")
    va, vb = _py_version(a), _py_version(b)
    return (va > vb) - (va < vb)


def _in_range(version, events, cmp):
    """(affected, fixed) for one OSV range: events in version order, the state
    after the last event at or below version ('0' is before everything)."""
    key = functools.cmp_to_key(lambda x, y: -1 if x[1] == "0" and y[1] != "0" else
                               1 if y[1] == "0" and x[1] != "0" else cmp(x[1], y[1]))
    events = sorted(events, key=key) if len(events) > 1 else events
    affected, fixed = False, None
    for kind, at in events:
        if kind == "i":
            if at == "0" or cmp(version, at) >= 0:
                affected, fixed = True, None
        elif kind == "f":
            if cmp(version, at) >= 0:
                affected = False
            elif affected and fixed is None:
                fixed = at
        elif kind == "l" and cmp(version, at) > 0:
            affected = False
    return affected, fixed if affected else None


def affects(version, entry, cmp):
    """(affected, fixed) of an index entry for the installed version."""
    affected, fixed = False, None
    for listed in entry[7]:
        if listed == version or cmp(version, listed) == 0:
            affected = True
    for events in entry[6]:
        hit, at = _in_range(version, events, cmp)
        if hit:
            affected = True
            if at is not None and (fixed is None or cmp(at, fixed) > 0):
                fixed = at
    return affected, fixed


# ----------------------------------------------------------------- severity
@functools.lru_cache(maxsize=20000)
def _cvss_severity(kind, vector):
    try:
        score = _CVSS[kind](vector)
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    name = score.severity if kind == "CVSS_V4" else score.severities()[0]
    return _DB_SEVERITY.get(name.lower())


def severity(entry):
    """From a CVSS vector (v3, then v4, then v2), else the database's severity,
    else Debian's urgency; 'unknown' when none says."""
    for kind in ("CVSS_V3", "CVSS_V4", "CVSS_V2"):
        for typ, vector in entry[3]:
            if typ == kind and kind in _CVSS:
                found = _cvss_severity(kind, vector)
                if found:
                    return found
    if entry[4] and entry[4].strip().lower() in _DB_SEVERITY:
        return _DB_SEVERITY[entry[4].strip().lower()]
    return URGENCY_SEVERITY.get((entry[5] or "").strip().rstrip("*").strip().lower(), "unknown")


# ------------------------------------------------------------------ matching
def _lookup_keys(os_info, component):
    """(keys, version, cmp) of a component, or None when no feed covers it."""
    if component.get("type") == "pypi":
        return ["PyPI\0%s" % _osv.pypi_name(component["name"])], component.get("version"), _py_cmp
    if component.get("type") != "deb" or (os_info.get("id") or "").lower() != "debian":
        return None
    source = component.get("source") or component["name"]
    releases = {"Debian"} | {"Debian:%s" % os_info[k] for k in ("version_id", "codename") if os_info.get(k)}
    keys = ["%s\0%s" % (eco, source) for eco in sorted(releases)]
    return keys, component.get("source_version") or component.get("version"), _deb_cmp


def _is_cve(ident):
    return ident.startswith("CVE-")


def _groups(hits):
    """{finding id: [hit..]} of hits [(entry, label, fixed)]: one finding per CVE,
    with every record naming it (a DSA fixing three CVEs counts in each); records
    linked by other shared ids (GHSA/PYSEC) go with the CVEs any of them names,
    or form one finding of their own when none does."""
    parent = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    others = [sorted(i for i in [e[0]] + e[1] if not _is_cve(i)) for e, _l, _f in hits]
    for ids in others:
        for ident in ids:
            parent.setdefault(ident, ident)
            if find(ident) != find(ids[0]):
                parent[find(ident)] = find(ids[0])
    components = {}
    for hit, ids in zip(hits, others):
        if ids:
            components.setdefault(find(ids[0]), []).append(hit)
    groups = {}
    for hit, ids in zip(hits, others):
        if not ids:
            for cve in {i for i in [hit[0][0]] + hit[0][1] if _is_cve(i)}:
                groups.setdefault(cve, []).append(hit)
    for root, members in components.items():
        cves = {i for e, _l, _f in members for i in [e[0]] + e[1] if _is_cve(i)}
        for key in cves or [min(i for e, _l, _f in members for i in [e[0]] + e[1])]:
            groups.setdefault(key, []).extend(members)
    return groups


def _merge(hits, cmp):
    """Findings (without the package's fields) of the hits of one source version."""
    findings = []
    for primary, group in _groups(sorted(hits, key=lambda h: (h[0][0], h[1]))).items():
        fixed = None
        for _e, _l, at in group:
            if at is not None and (fixed is None or cmp(at, fixed) > 0):
                fixed = at
        own = [e for e, _l, _f in group if e[0] == primary] + [e for e, _l, _f in group]
        aliases = {i for e, _l, _f in group for i in [e[0]] + e[1] if not _is_cve(i) or not _is_cve(primary)}
        findings.append({
            "id": primary, "aliases": sorted(aliases - {primary}), "fixed": fixed, "fix_available": fixed is not None,
            "severity": min((severity(e) for e, _l, _f in group), key=_RANK.get),
            "urgency": next((e[5] for e, _l, _f in group if e[5]), None),
            "summary": next((e[2] for e in own if e[2]), ""),
            "feeds": sorted({label for _e, label, _f in group})})
    return findings


def match(os_info, components, index):
    """Findings of the components (read_sbom's) in the index, sorted by (id, package).
    Binaries of one source package at one version are evaluated once."""
    os_info = os_info or {}
    by_version = {}  # (keys, version) -> (cmp, [component..])
    for comp in components:
        looked = _lookup_keys(os_info, comp)
        if looked and looked[1]:
            by_version.setdefault((tuple(looked[0]), looked[1]), (looked[2], []))[1].append(comp)
    findings = []
    for (keys, version), (cmp, comps) in by_version.items():
        hits = []
        for label, table in index.tables:
            for key in keys:
                for entry in table.get(key, ()):
                    try:
                        hit, fixed = affects(version, entry, cmp)
                    except (ValueError, ImmutableInfraError):
                        continue  # a version this ecosystem cannot order: no claim either way
                    if hit:
                        hits.append((entry, label, fixed))
        merged = _merge(hits, cmp) if hits else ()
        seen = set()
        for comp in comps:
            if merged and (comp.get("type"), comp["name"]) not in seen:
                seen.add((comp.get("type"), comp["name"]))
                package = {"package": comp["name"], "source": comp.get("source") or comp["name"],
                           "type": comp.get("type"), "installed": comp.get("version")}
                findings.extend({"id": f["id"], "aliases": f["aliases"], **package, **f} for f in merged)
    return sorted(findings, key=lambda f: (f["id"], f["package"], f["type"] or ""))


# ------------------------------------------------------------------- loading
def _source(source, i):
    """(label, path or None, url or None, format) of a sources item, checked."""
    if not isinstance(source, dict) or len([k for k in ("path", "url") if source.get(k)]) != 1:
        raise ImmutableInfraError("advisory source #%d (%r) must be a dict with exactly one of path or url" % (i + 1, source))
    unknown = set(source) - {"path", "url", "format"}
    if unknown:
        raise ImmutableInfraError("advisory source #%d: unknown keys %s (known: path, url, format)" % (i + 1, sorted(unknown)))
    fmt = source.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ImmutableInfraError("advisory source #%d: format %r is not one of %s" % (i + 1, fmt, ", ".join(FORMATS)))
    path = os.path.expanduser(source["path"]) if source.get("path") else None
    return source.get("path") or source["url"], path, source.get("url"), fmt


class _CachedTable:
    """A source's table as cached: a header {"keys": {key: (start, end)}, ...} then each
    key's entries (marshal) at those offsets of the body, decoded on first use (a scan
    looks up a few hundred source packages of tens of thousands)."""

    def __init__(self, header, body):
        self.offsets, self.body, self.decoded = header["keys"], body, {}

    def get(self, key, default=None):
        if key not in self.decoded:
            span = self.offsets.get(key)
            self.decoded[key] = marshal.loads(self.body[span[0]:span[1]]) if span else default
        return self.decoded[key]


def _cache_read(cache_file):
    """(header, table) of a cache file (8 bytes: the header's length, the header, the
    body), or None when absent, damaged or of another format."""
    try:
        with open(cache_file, "rb") as f:
            data = f.read()
        size = struct.unpack("!Q", data[:8])[0]
        header = marshal.loads(data[8:8 + size])
        if header.get("cache_format") == CACHE_FORMAT:
            return header, _CachedTable(header, memoryview(data)[8 + size:])
    except (OSError, ValueError, EOFError, TypeError, AttributeError, struct.error):
        pass  # absent or damaged: rebuilt by the caller
    return None


def _write_atomic(cache_dir, path, data):
    try:
        os.makedirs(cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise ImmutableInfraError("advisory cache %s cannot be written: %s; check its permissions or remove it"
                                  % (cache_dir, exc.strerror or exc))


def _cache_write(cache_dir, cache_file, header, table):
    parts, offsets, at = [], {}, 0
    for key in sorted(table):
        blob = marshal.dumps(table[key])
        offsets[key] = (at, at + len(blob))
        parts.append(blob)
        at += len(blob)
    head = marshal.dumps(dict(header, cache_format=CACHE_FORMAT, keys=offsets))
    _write_atomic(cache_dir, cache_file, b"".join([struct.pack("!Q", len(head)), head] + parts))
    olds = sorted((os.path.getmtime(os.path.join(cache_dir, n)), n) for n in os.listdir(cache_dir) if n.endswith(".idx"))
    for _mtime, name in olds[:-CACHE_KEEP]:
        try:
            os.unlink(os.path.join(cache_dir, name))
        except OSError:
            pass  # another scan removed it first


def _memo_read(memo_file):
    """The parts of the previous load of a source ({key: (count, pairs, hashes)}), or {}."""
    try:
        with open(memo_file, "rb") as f:
            doc = marshal.loads(f.read())
        if doc.get("cache_format") == CACHE_FORMAT and isinstance(doc.get("parts"), dict):
            return doc["parts"]
    except (OSError, ValueError, EOFError, TypeError, AttributeError):
        pass
    return {}


def _load_source(source, i, cache_dir, validate_certs, timeout):
    """(label, table, digest, count, cached) of one source."""
    label, path, url, fmt = _source(source, i)
    if url:
        data = ("bytes", _advisory_feeds.fetch(url, validate_certs, timeout))
        key = hashlib.sha256(data[1]).hexdigest()
    elif os.path.isdir(path):
        files = _advisory_feeds.dir_files(path)
        stats = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
        data, key = ("dir", path), hashlib.sha256(json.dumps([os.path.abspath(path), stats]).encode()).hexdigest()
    elif os.path.exists(path):
        data = ("bytes", _advisory_feeds.read(path))
        key = hashlib.sha256(data[1]).hexdigest()
    else:
        raise ImmutableInfraError("advisory source %s does not exist; pass an OSV directory, zip or JSON file, "
                                  "or the Debian security tracker's JSON" % path)
    cache_key = hashlib.sha256(json.dumps([CACHE_FORMAT, fmt, data[0], key]).encode()).hexdigest()
    cache_file = os.path.join(cache_dir, cache_key + ".idx") if cache_dir else None
    cached = _cache_read(cache_file) if cache_file else None
    if cached is not None:
        return label, cached[1], cached[0]["digest"], cached[0]["count"], True
    memo_file = os.path.join(cache_dir, "memo-%s.bin" % hashlib.sha256(label.encode()).hexdigest()[:32]) if cache_dir else None
    memo = _memo_read(memo_file) if memo_file else {}
    fmt, count, pairs, hashes, memo = _advisory_feeds.normalise(fmt, data, label, memo)
    table = {}
    for k, entry in pairs:
        table.setdefault(k, []).append(entry)
    # Over the sorted hashes of the normalised (key, entry) pairs: the order of files, members or records does not count.
    digest = hashlib.sha256("\n".join([fmt] + sorted(hashes)).encode()).hexdigest()
    if cache_file:
        _cache_write(cache_dir, cache_file, {"format": fmt, "digest": digest, "count": count}, table)
        if memo:
            _write_atomic(cache_dir, memo_file, marshal.dumps({"cache_format": CACHE_FORMAT, "parts": memo}))
    return label, table, digest, count, False


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection while millions of small lists are built: the
    collector would walk them again and again (the data holds no cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_advisories(sources, cache_dir=None, validate_certs=True, timeout=60):
    """The AdvisoryIndex of the sources ([{"path"|"url": ..., "format": osv|debian-tracker}]).
    Any malformed, unreadable or unreachable source raises ImmutableInfraError naming it."""
    if not isinstance(sources, (list, tuple)) or not sources:
        raise ImmutableInfraError("advisory sources must be a non-empty list of {path: ...} or {url: ...}")
    tables, infos, digests, cached = [], [], [], 0
    for i, source in enumerate(sources):
        with _gc_paused():
            label, table, digest, count, hit = _load_source(source, i, cache_dir, validate_certs, timeout)
        tables.append((label, table))
        infos.append({"source": label, "count": count})
        digests.append(digest)
        cached += hit
    digest = "sha256:" + hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()
    return AdvisoryIndex(tables, infos, digest, cached)
