# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What image_info answers: versions with their lifecycle (channels, tests,
revocation, ancestry) and the repository's channels, from one tags/list call and
parallel reads of only the versions and records needed."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import check_channel, check_digest
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def revoked_channel_warning(name, channel, record, revocation):
    return ("channel %s of image %s points at revoked version %s (%s): %s (revoked by %s at %s); releases by this "
            "channel are refused until it is promoted or rolled back to a good version" % (
                channel, name, record.get("version"), record.get("digest"), revocation.get("reason"),
                revocation.get("by"), revocation.get("time")))


def select(versions, version=None, digest=None, fingerprint=None, revoked=None, target=None):
    """The versions matching every filter given (pure)."""
    return [v for v in versions
            if (version is None or v["tag"] == version)
            and (digest is None or v["digest"] == digest)
            and (fingerprint is None or v["fingerprint"] == fingerprint)
            and (revoked is None or bool(v.get("revoked")) == revoked)
            and (target is None or v["digest"] == target)]


def image_info(life, name, version=None, digest=None, fingerprint=None, channel=None, latest_good=False, revoked=None):
    """The image_info result (without `changed`) for a _lifecycle.Lifecycle."""
    if latest_good and channel is None:
        raise ImmutableInfraError("latest_good needs a channel: give the channel whose latest non-revoked version you want")
    index = life.index(name)
    tags, target, warnings = None, None, []
    if digest is not None:
        check_digest(digest)
    if channel is not None:
        check_channel(channel)
        if channel not in index["channels"]:
            raise life.unknown_channel(name, channel, index)
        if latest_good:
            good = life.latest_good(name, channel, index)
            target = good["digest"] if good else None
            tags = [good["tag"]] if good else []
            if good is None:
                warnings.append("channel %s of image %s has no version in its history that is not revoked" % (channel, name))
        else:
            record = life.channel(name, channel) or {}
            target, tags = record.get("digest"), [record.get("version")]
    if version is not None:
        tags = [t for t in (index["versions"] if tags is None else tags) if t == version]
    elif digest is not None and tags is None:
        try:
            tags = [life.version(name, digest=digest)["tag"]]
        except ImmutableInfraError:
            tags = []
    described = life.describe_all(name, tags=tags, index=index)
    versions = select(described["versions"], version, digest, fingerprint, revoked, target)
    if channel is not None and target and tags and not select(described["versions"], target=target):
        # The record names the tag the channel was moved to; find the version by digest if it moved.
        described = life.describe_all(name, index=index)
        versions = select(described["versions"], version, digest, fingerprint, revoked, target)
    channels = {}
    for cname, record in sorted(described["channels"].items()):
        revocation = described["revocations"].get(record.get("digest"))
        channels[cname] = dict(record, revoked=revocation)
        if revocation:
            warnings.append(revoked_channel_warning(name, cname, record, revocation))
    result = {"versions": versions, "channels": channels, "out_of_date": [v for v in versions if v["out_of_date"]]}
    if channel is not None:
        result["channel"] = channels.get(channel)
    if warnings:
        result["warnings"] = warnings
    return result
