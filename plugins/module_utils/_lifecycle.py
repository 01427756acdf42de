# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image lifecycle: facts recorded beside image versions in the registry.

An image version never changes. What is learned about it later (a test result,
a revocation) and the channels that point at it are small OCI artifacts in the
same repository, each a manifest whose `subject` is the version, whose config
blob is the JSON record (read it with `skopeo inspect --config --raw`) and whose
annotations summarise it (`skopeo inspect --raw`). Tags (reserved: a version
can never be named so):

    sha256-<hex>.test       the version's latest test result (with earlier runs)
    sha256-<hex>.revoked    the version's revocation
    sha256-<hex>.sbom       the version's SBOM (CycloneDX JSON, byte for byte as generated at bake)
    sha256-<hex>.scan       the version's latest vulnerability scan
    channel.<name>          a channel: its current target and its whole history

One tags/list call tells which versions are tested, revoked and which channels
exist; records are fetched only when needed. Channel moves on one host are
serialised by a lock file and checked against the head read before the move
(the registry has no conditional write; see move_channel).

CONTRACT (issues 8 and 9): the names below (and the record names of _records, which
this module re-exports) are shared by image_info, image_channel, image_test,
image_revoke, image_prune, server_group, image_bake and the bench. Change a
signature only together with every caller.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.immutable.infra.plugins.module_utils._catalog import (
    Catalog, parse_reference, validate_version, version_key)
from ansible_collections.immutable.infra.plugins.module_utils._channel_lock import ChannelLock
from ansible_collections.immutable.infra.plugins.module_utils._names import label
from ansible_collections.immutable.infra.plugins.module_utils._oci import (
    EMPTY_BLOB, MEDIA_EMPTY, MEDIA_OCI_MANIFEST, canonical_json)
from ansible_collections.immutable.infra.plugins.module_utils._records import (  # noqa: F401 (shared names, see __all__)
    CHANNEL_PREFIX, DIGEST_TAG_PREFIX, TEST_SUFFIX, REVOKED_SUFFIX, SBOM_SUFFIX, SCAN_SUFFIX, RECORD_KINDS,
    CHANNEL_RE, MEDIA_TEST, MEDIA_REVOCATION, MEDIA_CHANNEL, MEDIA_SBOM, MEDIA_SCAN, LABEL_PARENT_CHANNEL, LABEL_CHANNEL, HISTORY_RUNS, NEW_CHANNEL,
    ACTIONS, is_record_tag, record_tag, channel_tag, check_channel, actor,
    now, check_digest, parse_record_tag, channel_targets, channel_entry, revoked_message)
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# The record names callers import from here (they live in _records).
__all__ = [
    "CHANNEL_PREFIX", "DIGEST_TAG_PREFIX", "TEST_SUFFIX", "REVOKED_SUFFIX", "SBOM_SUFFIX", "SCAN_SUFFIX",
    "RECORD_KINDS", "CHANNEL_RE", "MEDIA_TEST", "MEDIA_REVOCATION", "MEDIA_CHANNEL", "MEDIA_SBOM", "MEDIA_SCAN",
    "LABEL_PARENT_CHANNEL", "LABEL_CHANNEL", "HISTORY_RUNS", "NEW_CHANNEL",
    "ACTIONS", "is_record_tag", "record_tag", "channel_tag", "check_channel", "actor", "now", "check_digest",
    "parse_record_tag", "channel_targets", "channel_entry", "revoked_message",
    "split_tags", "stale_parent", "Lifecycle",
]


def split_tags(tags):
    """Lifecycle.index() of a tags/list answer (pure)."""
    out = {"versions": [], "channels": [], **{key: {} for _kind, _suffix, key in RECORD_KINDS}}
    keys = {kind: key for kind, _suffix, key in RECORD_KINDS}
    for tag in tags:
        parsed = parse_record_tag(tag)
        if parsed is None:
            if not is_record_tag(tag):
                out["versions"].append(tag)
        elif parsed[0] == "channel":
            out["channels"].append(parsed[1])
        else:
            out[keys[parsed[0]]][parsed[1]] = tag
    out["versions"].sort(key=version_key)
    out["channels"].sort()
    return out


def stale_parent(facts, parent_record, parent_name):
    """Lifecycle.out_of_date() decision from the parent channel's record (pure)."""
    parent_channel = (facts.get("labels") or {}).get(LABEL_PARENT_CHANNEL)
    parent = facts.get("parent_digest")
    if not parent_channel or not parent or not parent_record or not parent_record.get("digest"):
        return None
    if parent_record["digest"] == parent:
        return None
    parent_version = next((e.get("to_version") for e in reversed(parent_record.get("history") or [])
                           if e.get("to") == parent), None)
    newer = parent_version is None or version_key(parent_record.get("version")) > version_key(parent_version)
    return {"parent_name": parent_name, "parent_channel": parent_channel, "parent_digest": parent,
            "parent_version": parent_version, "channel_digest": parent_record["digest"],
            "channel_version": parent_record.get("version"), "newer": newer}


def _pmap(fn, items, workers=8):
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


class Lifecycle:
    """Lifecycle records of the repositories of one registry.

    Version facts are _catalog.version_facts() dicts (keys version, tag, digest,
    reference, repository, created, parent_digest, parent_name, labels...).
    Record dicts are the JSON documents stored in the artifacts' config blobs:

    test       {"kind": "test", "subject": digest, "repository": name, "version": tag,
                "status": "passed"|"failed", "time": iso8601, "epoch": float, "by": actor,
                "test_digest": "sha256:..", "platform": str,
                "summary": {"passed": n, "failed": n, "errors": n, "skipped": n, "seconds": f,
                            "failures": [test ids]},
                "runs": [earlier test records without "runs", newest first, at most 20]}
    revocation {"kind": "revocation", "subject": digest, "repository": name, "version": tag,
                "reason": str, "time": iso8601, "epoch": float, "by": actor,
                "cascade_from": digest of the revoked ancestor | None}
    channel    {"kind": "channel", "channel": name, "repository": name,
                "digest": current target | None, "version": its tag,
                "history": [{"seq": n (1..), "time": iso8601, "epoch": float, "by": actor,
                             "action": "promote"|"rollback", "from": digest|None,
                             "from_version": tag|None, "to": digest, "to_version": tag,
                             "reason": str|None, "approved_by": str|None}, ...]  # oldest first, never trimmed}

    All methods raise ImmutableInfraError naming the registry when it is not
    reachable, and naming the unknown repository / version / channel.
    """

    def __init__(self, registry, validate_certs=None):
        self.registry = registry
        self.validate_certs = validate_certs
        self.catalog = Catalog(registry, validate_certs)
        self.client = self.catalog.client

    def repository(self, name):
        return "%s/%s" % (self.registry, name)

    def _other(self, registry):
        return self if registry == self.registry else Lifecycle(registry, self.validate_certs)

    # ------------------------------------------------------------ reads
    def index(self, name):
        """One tags/list call -> {"versions": [version tags, version_key order],
        "channels": [channel names], "tested": {digest: record tag}, "revoked": {digest: record tag},
        "sbom": {digest: record tag}, "scanned": {digest: record tag}}."""
        return split_tags(self.client.tags(name))

    def record(self, name, tag):
        """The JSON record stored under a record tag, or None."""
        raw = self.record_bytes(name, tag)
        return json.loads(raw) if raw is not None else None

    def record_bytes(self, name, tag):
        """The config blob stored under a record tag, exactly as written, or None."""
        found = self.client.manifest(name, tag)
        if found is None:
            return None
        config = (found[1].get("config") or {}).get("digest")
        return self.client.blob(name, config) if config else None

    def channel(self, name, channel):
        """The channel record, or None when the channel does not exist."""
        return self.record(name, channel_tag(channel))

    def channels(self, name, index=None):
        """{channel name: channel record} of a repository."""
        names = (index or self.index(name))["channels"]
        records = _pmap(lambda c: self.channel(name, c), names)
        return {c: r for c, r in zip(names, records) if r is not None}

    def test_result(self, name, digest):
        """The version's test record, or None when never tested."""
        return self.record(name, record_tag(check_digest(digest), TEST_SUFFIX))

    def revocation(self, name, digest):
        """The version's revocation record, or None."""
        return self.record(name, record_tag(check_digest(digest), REVOKED_SUFFIX))

    def sbom(self, name, digest):
        """The version's SBOM as stored (bytes of the CycloneDX JSON), or None when it has none."""
        return self.record_bytes(name, record_tag(check_digest(digest), SBOM_SUFFIX))

    def scan_result(self, name, digest):
        """The version's latest scan record, or None when never scanned."""
        return self.record(name, record_tag(check_digest(digest), SCAN_SUFFIX))

    def facts(self, name, ref, tag=None):
        """Version facts of a tag or digest read through the registry API, or None."""
        found = self.catalog.inspect(name, ref)
        if found is not None and tag is not None:
            found["tag"] = tag
        return found

    def _unknown(self, name, what, versions):
        if not versions:
            return ImmutableInfraError("unknown image repository %r: registry %s has no versions of it" % (name, self.registry))
        return ImmutableInfraError("unknown image version %s of %s in registry %s (versions: %s)" % (
            what, name, self.registry, ", ".join(versions[-10:]) + (" and %d older" % (len(versions) - 10) if len(versions) > 10 else "")))

    def version(self, name, version=None, digest=None):
        """Version facts by tag or digest; ImmutableInfraError 'unknown image version' naming it."""
        if version is not None:
            version = validate_version(version)
            found = self.facts(name, version, version)
            if found is None:
                raise self._unknown(name, repr(version), self.index(name)["versions"])
            if digest is not None and found["digest"] != digest:
                raise ImmutableInfraError("image version %s:%s is %s, not %s" % (name, version, found["digest"], digest))
            return found
        if digest is None:
            raise ImmutableInfraError("give a version or a digest of image %s" % name)
        found = self.facts(name, check_digest(digest))
        versions = self.index(name)["versions"]
        if found is None:
            raise self._unknown(name, digest, versions)
        candidates = [found["version"]] if found["version"] in versions else []
        if candidates and self.client.head(name, candidates[0]) == digest:
            found["tag"] = candidates[0]
            return found
        heads = _pmap(lambda t: self.client.head(name, t), versions)
        tags = [t for t, d in zip(versions, heads) if d == digest]
        if not tags:
            raise self._unknown(name, "%s (no version tag points at it)" % digest, versions)
        found["tag"] = tags[-1]
        return found

    def unknown_channel(self, name, channel, index):
        """The ImmutableInfraError (returned) for an unknown channel, naming the existing ones."""
        if not index["versions"] and not index["channels"]:
            return ImmutableInfraError("unknown image repository %r: registry %s has no versions of it" % (name, self.registry))
        return ImmutableInfraError("unknown channel %r of image %s: existing channels: %s" % (
            channel, name, ", ".join(index["channels"]) or "none (promote a version to create one)"))

    def resolve_channel(self, name, channel, allow_revoked=False):
        """Version facts of the channel's target, plus "channel": name and
        "revoked": its revocation or None. Errors: unknown channel (naming the
        existing ones), a channel with no target, and (unless allow_revoked) a
        revoked target, naming the revocation's reason, who and when."""
        record = self.channel(name, channel)
        if record is None:
            raise self.unknown_channel(name, channel, self.index(name))
        if not record.get("digest"):
            raise ImmutableInfraError("channel %s of image %s points at no version" % (channel, name))
        try:
            facts = self.version(name, digest=record["digest"])
        except ImmutableInfraError:
            raise ImmutableInfraError("channel %s of image %s points at version %s (%s), which is no longer in registry %s" % (
                channel, name, record.get("version"), record["digest"], self.registry))
        revoked = self.revocation(name, record["digest"])
        if revoked and not allow_revoked:
            raise ImmutableInfraError("channel %s of image %s points at a revoked version: %s" % (
                channel, name, revoked_message(name, facts, revoked)), revocation=revoked)
        return dict(facts, channel=channel, revoked=revoked)

    def latest_good(self, name, channel, index=None):
        """The newest target in the channel's history (head first) that is not
        revoked and still exists, as version facts (plus "channel"), or None."""
        record = self.channel(name, channel)
        index = index or self.index(name)
        if record is None:
            raise self.unknown_channel(name, channel, index)
        for digest in channel_targets(record):
            if digest in index["revoked"]:
                continue
            try:
                return dict(self.version(name, digest=digest), channel=channel, revoked=None)
            except ImmutableInfraError:
                continue
        return None

    def describe(self, name):
        """Every version of the repository (oldest first) as version facts plus
        "channels": [names pointing at it], "revoked": record|None,
        "test": record|None, "parent_channel": str|None, "out_of_date": dict|None
        (see out_of_date). describe_all() also returns the channel records."""
        return self.describe_all(name)["versions"]

    def describe_all(self, name, tags=None, index=None):
        """{"versions": describe() of `tags` (None: all), "channels": {name: record},
        "revocations": {digest: record} of those versions and of the channels' heads},
        from one tags/list and parallel reads of only the records that exist."""
        index = index or self.index(name)
        wanted = None if tags is None else set(tags)
        tags = [t for t in index["versions"] if wanted is None or t in wanted]
        jobs = [("v", t) for t in tags] + [("c", c) for c in index["channels"]]
        read = {"v": lambda t: self.facts(name, t, t), "c": lambda c: self.channel(name, c),
                "t": lambda d: self.test_result(name, d), "r": lambda d: self.revocation(name, d)}
        results = dict(zip(jobs, _pmap(lambda job: read[job[0]](job[1]), jobs, workers=12)))
        channels = {c: results[("c", c)] for c in index["channels"] if results[("c", c)]}
        versions = [results[("v", t)] for t in tags if results[("v", t)] is not None]
        digests = {v["digest"] for v in versions} | {r.get("digest") for r in channels.values()}
        more = [("t", d) for d in index["tested"] if d in digests] + [("r", d) for d in index["revoked"] if d in digests]
        results.update(zip(more, _pmap(lambda job: read[job[0]](job[1]), more, workers=12)))
        parents = {}
        for facts in versions:
            digest = facts["digest"]
            facts["channels"] = sorted(c for c, r in channels.items() if r.get("digest") == digest)
            facts["revoked"] = results.get(("r", digest))
            facts["test"] = results.get(("t", digest))
            facts["parent_channel"] = (facts.get("labels") or {}).get(LABEL_PARENT_CHANNEL)
            facts["out_of_date"] = self.out_of_date(facts, parents) if facts["parent_channel"] else None
        revocations = {d: results[("r", d)] for kind, d in more if kind == "r" and results[("r", d)]}
        return {"versions": versions, "channels": channels, "revocations": revocations}

    def _parent_channel(self, facts, cache):
        parts = parse_reference(facts["parent_name"], default_registry=self.registry)
        key = (parts["registry"], parts["name"], facts["parent_channel"])
        if key not in cache:
            try:
                cache[key] = self._other(parts["registry"]).channel(parts["name"], facts["parent_channel"])
            except ImmutableInfraError:
                cache[key] = None
        return cache[key]

    def out_of_date(self, facts, cache=None):
        """For a version baked from a parent channel (LABEL_PARENT_CHANNEL):
        None when its parent is still the channel's target (or the channel is
        gone), else {"parent_name", "parent_channel", "parent_digest",
        "parent_version", "channel_digest", "channel_version", "newer": bool}."""
        parent_channel = (facts.get("labels") or {}).get(LABEL_PARENT_CHANNEL)
        if not parent_channel or not facts.get("parent_name") or not facts.get("parent_digest"):
            return None
        record = self._parent_channel(dict(facts, parent_channel=parent_channel), {} if cache is None else cache)
        return stale_parent(facts, record, facts["parent_name"])

    def repositories(self):
        """Every repository of the registry (the _catalog API, paginated)."""
        return self.client.catalog()

    def all_versions(self):
        """Version facts of every version of every repository."""
        repos = self.repositories()
        tags = _pmap(lambda r: [(r, t) for t in self.index(r)["versions"]], repos)
        found = _pmap(lambda rt: self.facts(rt[0], rt[1], rt[1]), [rt for chunk in tags for rt in chunk], workers=12)
        return [f for f in found if f is not None]

    def children(self, digest, versions=None):
        """Versions (any repository) whose parent_digest is this digest."""
        return [v for v in (self.all_versions() if versions is None else versions) if v.get("parent_digest") == digest]

    def descendants(self, digest):
        """children, recursively (each version once)."""
        versions = self.all_versions()
        out, seen, todo = [], {digest}, [digest]
        while todo:
            for child in self.children(todo.pop(0), versions):
                if child["digest"] not in seen:
                    seen.add(child["digest"])
                    out.append(child)
                    todo.append(child["digest"])
        return out

    # ------------------------------------------------------------ writes
    # Every write takes check_mode: it computes and returns the same result,
    # writing nothing.
    def _put_record(self, name, tag, media, record, subject, summary, created=None):
        """Store a record (a dict, stored as canonical JSON, or bytes stored as they are)."""
        data = record if isinstance(record, bytes) else canonical_json(record)
        config = self.client.put_blob(name, data, media)
        empty = self.client.put_blob(name, EMPTY_BLOB, MEDIA_EMPTY)
        if created is None:
            created = record["time"] if "time" in record else record["history"][-1]["time"]
        annotations = {"org.opencontainers.image.created": created}
        annotations.update({label(k): str(v) for k, v in summary.items() if v is not None})
        return self.client.put_manifest(name, tag, {
            "schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST, "artifactType": media, "config": config,
            "layers": [empty], "subject": subject, "annotations": annotations})

    def _subject(self, name, digest):
        subject = self.client.descriptor(name, digest)
        if subject is None:
            raise self._unknown(name, digest, self.index(name)["versions"])
        return subject

    def record_test(self, name, digest, result, check_mode=False):
        """Store a test record (result: status, test_digest, summary, platform,
        by); earlier runs move into "runs". Returns the stored record."""
        facts = self.version(name, digest=digest)
        if result.get("status") not in ("passed", "failed"):
            raise ImmutableInfraError("invalid test status %r: use passed or failed" % (result.get("status"),))
        previous = self.test_result(name, digest)
        runs = []
        if previous:
            runs = [{k: v for k, v in previous.items() if k != "runs"}] + list(previous.get("runs") or [])
        iso, epoch = now()
        record = {"kind": "test", "subject": digest, "repository": name, "version": facts["tag"],
                  "status": result["status"], "time": iso, "epoch": epoch, "by": actor(result.get("by")),
                  "test_digest": result.get("test_digest"), "platform": result.get("platform"),
                  "summary": dict(result.get("summary") or {}), "runs": runs[:HISTORY_RUNS]}
        if not check_mode:
            self._put_record(name, record_tag(digest, TEST_SUFFIX), MEDIA_TEST, record, self._subject(name, digest),
                             {"kind": "test", "status": record["status"], "version": facts["tag"],
                              "test-digest": record["test_digest"]})
        return record

    def put_sbom(self, name, digest, data, created, summary=None, check_mode=False):
        """Store the version's SBOM (bytes of CycloneDX JSON, kept byte for byte). created is
        the image's creation time (iso8601), so the same SBOM makes the same artifact. Returns
        changed: False when the stored SBOM has the same bytes."""
        check_digest(digest)
        if self.sbom(name, digest) == data:
            return False
        if not check_mode:
            self._put_record(name, record_tag(digest, SBOM_SUFFIX), MEDIA_SBOM, data, self._subject(name, digest),
                             dict({"kind": "sbom"}, **(summary or {})), created=created)
        return True

    def record_scan(self, name, digest, record, check_mode=False):
        """Store the version's scan record (a dict with at least "time"; see _scan). Returns the record."""
        check_digest(digest)
        if not check_mode:
            self._put_record(name, record_tag(digest, SCAN_SUFFIX), MEDIA_SCAN, record, self._subject(name, digest),
                             {"kind": "scan", "version": record.get("version"), "passed": record.get("passed"),
                              "findings": len(record.get("findings") or [])})
        return record

    def move_channel(self, name, channel, digest, by, reason=None, action="promote",
                     approved_by=None, expect=None, check_mode=False):
        """Point the channel at digest and append the move to its history.
        Returns (before, after) channel records (before None for a new channel).
        Under a per-channel lock file; `expect` is the digest the caller based
        its decision (gates) on, NEW_CHANNEL when it decided on a channel that
        did not exist yet, None not to check: if the head moved meanwhile,
        nothing is written and the error names both. A move to the current target changes nothing
        and returns before == after."""
        check_channel(channel)
        if action not in ACTIONS:
            raise ImmutableInfraError("invalid channel action %r: use %s" % (action, " or ".join(ACTIONS)))
        facts = self.version(name, digest=digest)
        with ChannelLock(self.registry, name, channel):
            before = self.channel(name, channel)
            head = (before or {}).get("digest")
            if expect is not None and expect != (head or NEW_CHANNEL):
                raise ImmutableInfraError(
                    "channel %s of image %s moved meanwhile: it now points at %s (version %s), not %s as when the move "
                    "was decided; nothing was written: run again to decide on the new head" % (
                        channel, name, head, (before or {}).get("version"), expect))
            if head == digest:
                return before, before
            after = channel_entry(before, channel, name, facts, actor(by), action, reason, approved_by, now())
            if check_mode:
                return before, after
            written = self._put_record(name, channel_tag(channel), MEDIA_CHANNEL, after, self._subject(name, digest),
                                       {"kind": "channel", "channel": channel, "version": facts["tag"],
                                        "moves": len(after["history"]), "by": after["history"][-1]["by"]})
            now_there = self.client.head(name, channel_tag(channel))
            if now_there != written:
                raise ImmutableInfraError(
                    "channel %s of image %s was overwritten by another writer at the same moment (ours %s, now %s); "
                    "channel moves from several hosts must not run at once: read the channel and run again"
                    % (channel, name, written, now_there))
        return before, after

    def revoke(self, name, digest, reason, by, cascade_from=None, check_mode=False):
        """Store a revocation; returns (record, changed). Revoking a revoked
        version keeps the first record (changed False)."""
        if not reason or not str(reason).strip():
            raise ImmutableInfraError("a revocation of %s@%s needs a reason" % (name, digest))
        facts = self.version(name, digest=digest)
        existing = self.revocation(name, digest)
        if existing:
            return existing, False
        iso, epoch = now()
        record = {"kind": "revocation", "subject": digest, "repository": name, "version": facts["tag"],
                  "reason": str(reason), "time": iso, "epoch": epoch, "by": actor(by), "cascade_from": cascade_from}
        if not check_mode:
            self._put_record(name, record_tag(digest, REVOKED_SUFFIX), MEDIA_REVOCATION, record, self._subject(name, digest),
                             {"kind": "revocation", "version": facts["tag"], "reason": record["reason"][:200],
                              "by": record["by"], "cascade-from": cascade_from})
        return record, True

    def unrevoke(self, name, digest, check_mode=False):
        """Remove a revocation; returns changed."""
        found = self.client.head(name, record_tag(check_digest(digest), REVOKED_SUFFIX))
        if found is None:
            return False
        if not check_mode:
            self.client.delete_manifest(name, found)
        return True

    def delete_version(self, name, digest, check_mode=False):
        """Delete a version and its records (test, revocation, sbom, scan) from the
        registry; returns the tags deleted. Blobs go at the next registry
        garbage collection. A version a channel points at is refused."""
        facts = self.version(name, digest=digest)
        index = self.index(name)
        heads = [c for c, r in self.channels(name, index).items() if r.get("digest") == digest]
        if heads:
            raise ImmutableInfraError("image version %s:%s (%s) is the target of channel %s; move the channel first" % (
                name, facts["tag"], digest, ", ".join(heads)))
        records = [t for t in (index[key].get(digest) for _kind, _suffix, key in RECORD_KINDS) if t]
        deleted = []
        for tag in records:
            found = self.client.head(name, tag)
            if found is not None and (check_mode or self.client.delete_manifest(name, found)):
                deleted.append(tag)
        if check_mode or self.client.delete_manifest(name, digest):
            deleted.append(facts["tag"])
        return deleted
