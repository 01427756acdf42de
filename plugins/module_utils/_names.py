# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names every platform, router and plugin shares, defined once: the rule
for app and stack names, server group and instance names, and the identity an
instance carries (podman labels, libvirt domain metadata, cloud tags)."""

from __future__ import annotations

import re

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# Short enough for every platform's name limits once "-<stack>-vNNN-<id>" is added.
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,30}$")

# Each instance carries its identity as <LABEL_PREFIX><key> = value.
LABEL_PREFIX = "infra.immutable."
IDENTITY = ("app", "stack", "group", "sequence", "image", "image-digest", "image-version", "zone", "instance-id", "port")


def check_name(kind, value):
    """value when it is a valid app or stack name; else an error naming it."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ImmutableInfraError("invalid %s %r: use 1-31 lowercase letters and digits, starting with a letter"
                                  % (kind, value))
    return value


def group_name(app, stack, sequence):
    """web, prod, 3 -> web-prod-v003."""
    return "%s-%s-v%03d" % (app, stack, int(sequence))


def instance_group(instance_name):
    """web-prod-v003-1a2b3c -> web-prod-v003: every platform names an instance <group>-<suffix>."""
    return str(instance_name).rsplit("-", 1)[0]


def label(key):
    """The full label name of an identity key (or of any key without a dot): app -> infra.immutable.app."""
    key = str(key)
    return key if "." in key else LABEL_PREFIX + key
