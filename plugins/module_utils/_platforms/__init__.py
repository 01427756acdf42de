# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Platforms by name. The interface and the instance record are in _base."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

AVAILABLE = ("aws", "libvirt", "podman")
# Named in errors, not available yet.
PLANNED = ()


def _implementation(name):
    # Static imports inside the function: a platform's code is loaded only when it
    # is asked for, and Ansible's module packer still sees (and ships) every one.
    if name == "podman":
        from ansible_collections.immutable.infra.plugins.module_utils._platforms._podman import PodmanPlatform
        return PodmanPlatform
    if name == "libvirt":
        from ansible_collections.immutable.infra.plugins.module_utils._platforms._libvirt import LibvirtPlatform
        return LibvirtPlatform
    if name == "aws":
        from ansible_collections.immutable.infra.plugins.module_utils._platforms._aws import AwsPlatform
        return AwsPlatform
    hint = " (%s is planned, not available yet)" % name if name in PLANNED else ""
    raise ImmutableInfraError("unknown platform %r%s: use one of %s" % (name, hint, ", ".join(AVAILABLE)))


def get_platform(name=None, **options):
    """The platform called `name` (default podman), built with `options` (its
    platform_options). An unknown name or option is an error naming it and what is known."""
    name = name or "podman"
    impl = _implementation(name)
    known = set(getattr(impl, "OPTIONS", ()))
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ImmutableInfraError("platform %s has no option(s) %s (known: %s)"
                                  % (name, ", ".join(unknown), ", ".join(sorted(known)) or "none"))
    return impl(**given)
