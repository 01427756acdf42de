# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The apt sources of a base bake: extra source lines (a security mirror, a
local repository) and the digest of the package indexes they serve.

A base is baked once per input set; its packages come from whatever the
sources serve at bake time. The digest of the indexes (read with apt-get into
a temporary directory: the machine's own apt state is never touched) is an
input of a refreshed base, so a base is baked again exactly when a source
publishes new packages, and an unchanged source stays a no-op."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

EXTRA_LIST = "immutable-infra-extra.list"
_LINE_RE = re.compile(r"^deb(-src)?\s+(\[[^\]]*\]\s+)?\S+://\S+\s+\S+(\s+\S+)*$")
# Suites with no -updates and -security archives (mmdebstrap adds those for the others).
_ROLLING = ("sid", "unstable", "experimental", "rc-buggy")
KEYRINGS = "/usr/share/keyrings"
FILE_MIRROR_HOOKS = "/usr/share/mmdebstrap/hooks/file-mirror-automount"


def check_sources(lines):
    """Refuse anything but one-line `deb` entries, naming the bad line."""
    for line in lines or []:
        if not isinstance(line, str) or "\n" in line or not _LINE_RE.match(line.strip()):
            raise ImmutableInfraError(
                "apt_sources: %r is not a one-line apt source; use the sources.list format, for example "
                "'deb [trusted=yes] file:///srv/repo ./' or 'deb http://deb.debian.org/debian-security "
                "bookworm-security main'" % (line,))


def build_sources(params):
    """The sources.list lines a base bake uses: the mirror (as mmdebstrap reads it: the
    mirror given, else deb.debian.org with -updates and -security for a stable suite),
    then apt_sources."""
    suite = params["suite"]
    if params.get("mirror"):
        lines = ["deb %s %s main" % (params["mirror"], suite)]
    else:
        lines = ["deb http://deb.debian.org/debian %s main" % suite]
        if suite not in _ROLLING:
            lines += ["deb http://deb.debian.org/debian %s-updates main" % suite,
                      "deb http://deb.debian.org/debian-security %s-security main" % suite]
    return lines + [line.strip() for line in params.get("apt_sources") or []]


def extra_source_hooks(lines, workdir):
    """mmdebstrap options that give the build the extra sources (copied in before apt
    update) and leave none in the image: the base must not point at a source its
    users cannot reach (a local directory, a mirror of the build network)."""
    if not lines:
        return []
    path = os.path.join(workdir, EXTRA_LIST)
    if os.path.isdir(workdir):
        with open(path, "w") as f:
            f.write("".join(line.strip() + "\n" for line in lines))
    argv = ["--setup-hook=copy-in %s /etc/apt/sources.list.d" % path]
    if any("file:/" in line for line in lines):
        # dpkg runs inside the chroot: mmdebstrap's hook mounts file:// repositories there (and removes them).
        argv.append("--hook-dir=%s" % FILE_MIRROR_HOOKS)
    return argv + ['--customize-hook=rm -f "$1/etc/apt/sources.list.d/%s"' % EXTRA_LIST]


def apt_options(root, sources_file):
    return ["-o", "Dir::State::Lists=%s" % os.path.join(root, "lists"),
            "-o", "Dir::Cache=%s" % os.path.join(root, "cache"),
            "-o", "Dir::Etc::SourceList=%s" % sources_file,
            "-o", "Dir::Etc::SourceParts=%s" % os.path.join(root, "parts"),
            "-o", "Dir::Etc::TrustedParts=%s" % KEYRINGS,
            "-o", "Dir::Etc::Trusted=%s" % os.path.join(root, "trusted.gpg"),
            "-o", "Acquire::GzipIndexes=false",
            "-o", "Acquire::Languages=none",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root"]


def index_digest(lines, timeout=600):
    """sha256 over the package indexes the sources serve now ("sha256:<hex>"), read
    with apt-get update into a temporary directory. A source that cannot be read fails."""
    root = tempfile.mkdtemp(prefix="immutable-infra-apt-")
    try:
        for sub in ("lists/partial", "cache/archives/partial", "parts"):
            os.makedirs(os.path.join(root, sub))
        sources = os.path.join(root, "sources.list")
        with open(sources, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        opts = apt_options(root, sources)
        rc, out, err = run(["apt-get", "-q", "update"] + opts,
                           check=False, timeout=timeout)
        if rc != 0 or re.search(r"^(E|W): ", out + "\n" + err, re.M):
            raise ImmutableInfraError(
                "cannot read the package indexes of the base's apt sources (%s): %s; check the sources and "
                "the network, or bake without refresh" % ("; ".join(lines), (err or out).strip()[-800:]),
                cmd=["apt-get", "update"], rc=rc, stdout=out, stderr=err)
        _rc, out, _err = run(["apt-get", "indextargets", "--format", "$(FILENAME)"] + opts, timeout=120)
        digest = hashlib.sha256()
        files = sorted(p for p in set(out.split()) if os.path.isfile(p))
        if not files:
            raise ImmutableInfraError("the base's apt sources (%s) serve no package index" % "; ".join(lines))
        for path in files:
            digest.update(os.path.basename(path).encode() + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        return "sha256:" + digest.hexdigest()
    finally:
        shutil.rmtree(root, ignore_errors=True)
