# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lifecycle records as documents: the tag scheme, the names and the record
dicts, with no registry I/O (_lifecycle reads and writes them).

    sha256-<hex>.test       a version's latest test result (with earlier runs)
    sha256-<hex>.revoked    a version's revocation
    sha256-<hex>.sbom       a version's SBOM (CycloneDX JSON, written at bake)
    sha256-<hex>.scan       a version's latest vulnerability scan (findings and policy verdict)
    channel.<name>          a channel: its current target and its whole history

_catalog uses the tag scheme to leave record tags out of the versions.
"""

from __future__ import annotations

import datetime
import getpass
import os
import re
import socket
import time

from ansible_collections.immutable.infra.plugins.module_utils._names import label
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# Tag scheme of the records (see the module docstring).
CHANNEL_PREFIX = "channel."
DIGEST_TAG_PREFIX = "sha256-"
TEST_SUFFIX = ".test"
REVOKED_SUFFIX = ".revoked"
SBOM_SUFFIX = ".sbom"
SCAN_SUFFIX = ".scan"
# Record kinds of the sha256-<hex>.<kind> tags, and the key of each in Lifecycle.index().
RECORD_KINDS = (("test", TEST_SUFFIX, "tested"), ("revoked", REVOKED_SUFFIX, "revoked"),
                ("sbom", SBOM_SUFFIX, "sbom"), ("scan", SCAN_SUFFIX, "scanned"))
# Channel names: lower-case letters, digits, '-' and '_', starting with a letter or digit.
CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Media types of the records (artifactType and config mediaType).
MEDIA_TEST = "application/vnd.immutable-infra.test-result.v1+json"
MEDIA_REVOCATION = "application/vnd.immutable-infra.revocation.v1+json"
MEDIA_CHANNEL = "application/vnd.immutable-infra.channel.v1+json"
# The SBOM's config blob is the CycloneDX document itself.
MEDIA_SBOM = "application/vnd.cyclonedx+json"
MEDIA_SCAN = "application/vnd.immutable-infra.scan.v1+json"

# Labels written at bake time (besides _catalog's LABEL_BASE_DIGEST / LABEL_BASE_NAME):
# the channel the parent was resolved from, when the bake named one.
LABEL_PARENT_CHANNEL = label("parent-channel")
# Label on server-group instances released by channel (the digest is already recorded as the image).
LABEL_CHANNEL = label("channel")


def is_record_tag(tag):
    """True for tags that are lifecycle records, not image versions."""
    return str(tag).startswith(CHANNEL_PREFIX) or str(tag).startswith(DIGEST_TAG_PREFIX)


def record_tag(digest, suffix):
    """'sha256:abc..' + '.test' -> 'sha256-abc...test'."""
    return digest.replace(":", "-", 1) + suffix


def channel_tag(channel):
    return CHANNEL_PREFIX + check_channel(channel)


def check_channel(channel):
    """The channel name, or ImmutableInfraError naming the bad value."""
    if not isinstance(channel, str) or not CHANNEL_RE.match(channel):
        raise ImmutableInfraError(
            "invalid channel name %r: use lower-case letters, digits, '-' or '_' (at most 63, "
            "starting with a letter or digit)" % (channel,))
    return channel


_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
HISTORY_RUNS = 20
# move_channel(expect=NEW_CHANNEL): the move was decided on a channel that did not exist.
NEW_CHANNEL = ""
ACTIONS = ("promote", "rollback")


def actor(given=None):
    """Who acts: the given name (AWX passes its user), else user@host of this process."""
    if given:
        return str(given)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid%d" % os.getuid()
    return "%s@%s" % (user, socket.gethostname())


def now():
    """(iso8601 UTC, epoch seconds) of this moment."""
    epoch = time.time()
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), epoch


def check_digest(digest):
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ImmutableInfraError("invalid digest %r: use sha256:<64 hex digits>" % (digest,))
    return digest


def parse_record_tag(tag):
    """('test'|'revoked'|'sbom'|'scan', digest) or ('channel', name) for a record tag, else None."""
    tag = str(tag)
    if tag.startswith(CHANNEL_PREFIX):
        return "channel", tag[len(CHANNEL_PREFIX):]
    for kind, suffix, _key in RECORD_KINDS:
        if tag.startswith(DIGEST_TAG_PREFIX) and tag.endswith(suffix):
            return kind, "sha256:" + tag[len(DIGEST_TAG_PREFIX):-len(suffix)]
    return None


def channel_targets(record):
    """The distinct targets of a channel record, most recent first (head first)."""
    seen, out = set(), []
    for entry in reversed((record or {}).get("history") or []):
        if entry.get("to") and entry["to"] not in seen:
            seen.add(entry["to"])
            out.append(entry["to"])
    head = (record or {}).get("digest")
    if head and head in out:
        out.remove(head)
    return ([head] if head else []) + out


def channel_entry(before, channel, name, facts, by, action, reason, approved_by, moment):
    """The channel record after a move (pure)."""
    history = list((before or {}).get("history") or [])
    iso, epoch = moment
    history.append({
        "seq": len(history) + 1, "time": iso, "epoch": epoch, "by": by, "action": action,
        "from": (before or {}).get("digest"), "from_version": (before or {}).get("version"),
        "to": facts["digest"], "to_version": facts["tag"], "reason": reason, "approved_by": approved_by,
    })
    return {"kind": "channel", "channel": channel, "repository": name, "digest": facts["digest"],
            "version": facts["tag"], "history": history}


def revoked_message(name, facts, record):
    return "image version %s:%s (%s) is revoked: %s (revoked by %s at %s%s)" % (
        name, record.get("version") or facts.get("tag"), record.get("subject") or facts.get("digest"),
        record.get("reason"), record.get("by"), record.get("time"),
        ", with its ancestor %s" % record["cascade_from"] if record.get("cascade_from") else "")
