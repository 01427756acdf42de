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
    channel.<name>          a channel: its current target and its whole history

One tags/list call tells which versions are tested, revoked and which channels
exist; records are fetched only when needed. Channel moves on one host are
serialised by a lock file and checked against the head read before the move
(the registry has no conditional write; see move_channel).

CONTRACT (issue 8): the names below are shared by image_info, image_channel,
image_test, image_revoke, image_prune, server_group, image_bake and the bench.
Change a signature only together with every caller.
"""

from __future__ import annotations

import re

from ansible_collections.immutable.infra.plugins.module_utils._names import label
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError  # noqa: F401

# Tag scheme of the records (see the module docstring).
CHANNEL_PREFIX = "channel."
DIGEST_TAG_PREFIX = "sha256-"
TEST_SUFFIX = ".test"
REVOKED_SUFFIX = ".revoked"
# Channel names: lower-case letters, digits, '-' and '_', starting with a letter or digit.
CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Media types of the records (artifactType and config mediaType).
MEDIA_TEST = "application/vnd.immutable-infra.test-result.v1+json"
MEDIA_REVOCATION = "application/vnd.immutable-infra.revocation.v1+json"
MEDIA_CHANNEL = "application/vnd.immutable-infra.channel.v1+json"

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


def actor(given=None):
    """Who acts: the given name (AWX passes its user), else user@host of this process."""
    raise NotImplementedError


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
        raise NotImplementedError

    # ------------------------------------------------------------ reads
    def index(self, name):
        """One tags/list call -> {"versions": [version tags, version_key order],
        "channels": [channel names], "tested": {digest: tag}, "revoked": {digest: tag}}."""
        raise NotImplementedError

    def channel(self, name, channel):
        """The channel record, or None when the channel does not exist."""
        raise NotImplementedError

    def channels(self, name):
        """{channel name: channel record} of a repository."""
        raise NotImplementedError

    def test_result(self, name, digest):
        """The version's test record, or None when never tested."""
        raise NotImplementedError

    def revocation(self, name, digest):
        """The version's revocation record, or None."""
        raise NotImplementedError

    def version(self, name, version=None, digest=None):
        """Version facts by tag or digest; ImmutableInfraError 'unknown image version' naming it."""
        raise NotImplementedError

    def resolve_channel(self, name, channel, allow_revoked=False):
        """Version facts of the channel's target, plus "channel": name.
        Errors: unknown channel (naming the existing ones), a channel with no
        target, and (unless allow_revoked) a revoked target, naming the
        revocation's reason, who and when."""
        raise NotImplementedError

    def latest_good(self, name, channel):
        """The newest target in the channel's history (head first) that is not
        revoked, as version facts, or None."""
        raise NotImplementedError

    def describe(self, name):
        """Every version of the repository (oldest first) as version facts plus
        "channels": [names pointing at it], "revoked": record|None,
        "test": record|None, "parent_channel": str|None, "out_of_date": dict|None
        (see out_of_date)."""
        raise NotImplementedError

    def out_of_date(self, facts):
        """For a version baked from a parent channel (LABEL_PARENT_CHANNEL):
        None when its parent is still the channel's target, else
        {"parent_name", "parent_channel", "parent_digest", "channel_digest",
         "channel_version", "newer": bool}."""
        raise NotImplementedError

    def repositories(self):
        """Every repository of the registry (the _catalog API, paginated)."""
        raise NotImplementedError

    def children(self, digest):
        """Versions (any repository) whose parent_digest is this digest."""
        raise NotImplementedError

    def descendants(self, digest):
        """children, recursively (each version once)."""
        raise NotImplementedError

    # ------------------------------------------------------------ writes
    # Every write takes check_mode: it computes and returns the same result,
    # writing nothing.
    def record_test(self, name, digest, result, check_mode=False):
        """Store a test record (result: status, test_digest, summary, platform,
        by); earlier runs move into "runs". Returns the stored record."""
        raise NotImplementedError

    def move_channel(self, name, channel, digest, by, reason=None, action="promote",
                     approved_by=None, expect=None, check_mode=False):
        """Point the channel at digest and append the move to its history.
        Returns (before, after) channel records (before None for a new channel).
        Under a per-channel lock file; `expect` is the digest the caller based
        its decision (gates) on: if the head moved meanwhile, nothing is written
        and the error names both. A move to the current target changes nothing
        and returns before == after."""
        raise NotImplementedError

    def revoke(self, name, digest, reason, by, cascade_from=None, check_mode=False):
        """Store a revocation; returns (record, changed). Revoking a revoked
        version keeps the first record (changed False)."""
        raise NotImplementedError

    def unrevoke(self, name, digest, check_mode=False):
        """Remove a revocation; returns changed."""
        raise NotImplementedError

    def delete_version(self, name, digest, check_mode=False):
        """Delete a version and its records (test, revocation) from the
        registry. Blobs go at the next registry garbage collection."""
        raise NotImplementedError
