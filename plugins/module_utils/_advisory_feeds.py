# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the advisory feeds for _advisories: fetching URLs, finding the OSV
records of a directory, zip or JSON file or the packages of a Debian tracker
document, and normalising them part by part (_osv, _debian_tracker), reusing
the parts that did not change since the previous load."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import urllib.error
import zipfile

from ansible.module_utils.urls import ConnectionError as UrlConnectionError, open_url

from ansible_collections.immutable.infra.plugins.module_utils import _debian_tracker, _osv
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def fetch(url, validate_certs, timeout):
    if not url.startswith(("http://", "https://", "file://")):
        raise ImmutableInfraError("advisory source URL %r: only http://, https:// and file:// URLs are supported" % url)
    try:
        with open_url(url, validate_certs=validate_certs, timeout=timeout, http_agent="immutable.infra") as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise ImmutableInfraError("advisory source %s answered HTTP %s %s; check the URL" % (url, exc.code, exc.reason))
    except (urllib.error.URLError, UrlConnectionError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImmutableInfraError("advisory source %s is unreachable (%s, timeout %ss); check the URL and the network, "
                                  "or download the file and pass it by path" % (url, reason, timeout))


def _json(data, where):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImmutableInfraError("%s: not valid JSON (%s); fix or remove this advisory file" % (where, exc))


def _osv_records(doc, where):
    """[(where, record)] of an OSV JSON document: one record or a list of them."""
    records = doc if isinstance(doc, list) else [doc]
    out = []
    for i, record in enumerate(records):
        at = "%s[%d]" % (where, i) if isinstance(doc, list) else where
        if not isinstance(record, dict):
            raise ImmutableInfraError("%s: an OSV record is a JSON object, not %s" % (at, type(record).__name__))
        out.append(("%s (record %s)" % (at, record.get("id") if isinstance(record.get("id"), str) else "without id"), record))
    return out


def dir_files(path):
    found = []
    for top, dirs, files in os.walk(path):
        dirs.sort()
        found.extend(os.path.join(top, f) for f in sorted(files) if f.endswith(".json"))
    return found


def _osv_chunk(records):
    """(count, pairs) of OSV records [(where, record)]."""
    pairs, count = [], 0
    for at, record in records:
        found = _osv.normalise(record, at)
        pairs.extend(found)
        count += bool(found)
    return count, pairs


def _file_chunk(path):
    return _osv_chunk(_osv_records(_json(read(path), path), path))


def _zip_chunk(archive, name, where):
    return _osv_chunk(_osv_records(_json(archive.read(name), where), where))


def _chunks(fmt, source_data, where):
    """(format, [(memo key or None, thunk -> (count, pairs))]) of a source's data:
    ('dir', path) or ('bytes', data). A memo key names a part by what changes with
    its content (a file's size and mtime, a zip member's CRC, a tracker package's JSON)."""
    kind, data = source_data
    if kind == "dir" or data[:4] == b"PK\x03\x04":
        if fmt == "debian-tracker":
            raise ImmutableInfraError("%s: format debian-tracker is one JSON file, not a directory or zip" % where)
        if kind == "dir":
            if not dir_files(data):
                raise ImmutableInfraError("%s: no OSV records (*.json files) in this directory; check the path" % where)
            return "osv", [("%s\0%d\0%d" % (os.path.relpath(f, data), st.st_size, st.st_mtime_ns),
                            functools.partial(_file_chunk, f)) for f, st in ((f, os.stat(f)) for f in dir_files(data))]
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = sorted((i for i in archive.infolist() if i.filename.endswith(".json")), key=lambda i: i.filename)
        if not members:
            raise ImmutableInfraError("%s: no OSV records (*.json members) in this zip; check the file" % where)
        return "osv", [("%s\0%d\0%d" % (i.filename, i.CRC, i.file_size),
                        functools.partial(_zip_chunk, archive, i.filename, "%s!%s" % (where, i.filename))) for i in members]
    doc = _json(data, where)
    if fmt is None:
        if isinstance(doc, list) or (isinstance(doc, dict) and "id" in doc):
            fmt = "osv"
        elif _debian_tracker.looks_like_tracker(doc):
            fmt = "debian-tracker"
        else:
            raise ImmutableInfraError("%s: neither OSV records nor the Debian security tracker's JSON; "
                                      "set format: osv or debian-tracker" % where)
    if fmt == "osv":
        return fmt, [(None, lambda: _osv_chunk(_osv_records(doc, where)))]
    _debian_tracker.check_document(doc, where)
    return fmt, [(hashlib.sha256(json.dumps([source, ids]).encode()).hexdigest(),
                  functools.partial(_debian_tracker.normalise_package, source, ids, where))
                 for source, ids in doc.items()]


def _hashed(part):
    """(count, pairs, [sha256 of each pair's canonical JSON]) of a part (count, pairs)."""
    count, pairs = part
    return count, pairs, [hashlib.sha256(json.dumps(pair, separators=(",", ":")).encode()).hexdigest() for pair in pairs]


def normalise(fmt, source_data, where, memo):
    """(format, count, pairs, hashes, new memo): the parts found in memo (the previous
    load's, {key: (count, pairs, hashes)}) are reused, neither parsed nor validated again.
    hashes: one per pair, for the source's digest."""
    try:
        fmt, chunks = _chunks(fmt, source_data, where)
        count, pairs, hashes, new_memo = 0, [], [], {}
        for key, thunk in chunks:
            part = memo.get(key) if key else None
            if part is None:
                part = _hashed(thunk())
            if key:
                new_memo[key] = part
            count += part[0]
            pairs.extend(part[1])
            hashes.extend(part[2])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ImmutableInfraError("%s: not a readable zip archive (%s); fetch the OSV export again" % (where, exc))
    return fmt, count, pairs, hashes, new_memo


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ImmutableInfraError("advisory file %s cannot be read: %s" % (path, exc.strerror or exc))
