# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a built image's files without running it (for its SBOM and seal check).

image_root(local_image, fmt) is a context manager giving a directory that
holds the image's root file system, read only by convention:
  container  `podman image mount` of the local image (unmounted afterwards);
  vm         the image's /disk/disk.qcow2 (an ext4 file system on the whole
             disk, see _vm_image) converted to a sparse raw file in a temporary
             directory, and only the paths the checks read copied out of it with
             `debugfs rdump` - no loop mount, no guest, no root file system
             mounted on the host. The directory is removed afterwards.

Absolute symlinks in such a tree point into the HOST: readers use lstat and
resolve links inside the root (see inside()).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile

from ansible_collections.immutable.infra.plugins.module_utils import _vm_image
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

# What the SBOM and the seal check read of a VM disk (the python directories are found by listing).
SEAL_DIRS = ("/etc", "/root", "/home", "/var/lib", "/opt", "/srv")
SBOM_PATHS = ("/etc/os-release", "/usr/lib/os-release", "/var/lib/dpkg/status")
PYTHON_PARENTS = ("/usr/lib", "/usr/local/lib")
PYTHON_SITES = ("dist-packages", "site-packages")
DEFAULT_PATHS = SEAL_DIRS + SBOM_PATHS


def inside(root, rel, max_links=40):
    """The path of rel inside root with every symlink resolved inside root (an absolute link
    target is taken from root, never from the host), or None when it leaves root or loops."""
    parts = [p for p in rel.strip("/").split("/") if p not in ("", ".")]
    done = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *(done + [part]))
        if os.path.islink(candidate):
            links += 1
            if links > max_links:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return os.path.join(root, *done)


@contextlib.contextmanager
def mounted(local_image, podman="podman"):
    """`podman image mount` of a local image: its root directory, unmounted afterwards."""
    _rc, out, _err = run([podman, "image", "mount", local_image], timeout=300,
                         what="podman image mount %s (reading the image's files)" % local_image)
    path = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        if not path or not os.path.isdir(path):
            raise ImmutableInfraError("podman image mount %s gave no directory (%r)" % (local_image, path))
        yield path
    finally:
        run([podman, "image", "unmount", local_image], check=False, timeout=300)


def _debugfs(raw, commands, workdir):
    script = os.path.join(workdir, "debugfs.cmds")
    with open(script, "w") as handle:
        handle.write("".join(c + "\n" for c in commands))
    _rc, out, _err = run(["debugfs", "-f", script, raw], timeout=600, what="debugfs (reading the VM disk)")
    return out


def _listing(out):
    """debugfs `ls -p` lines (/ino/mode/uid/gid/name/size/) -> {name: is_dir}."""
    names = {}
    for line in out.splitlines():
        fields = line.split("/")
        if len(fields) >= 7 and fields[1].isdigit() and fields[5] not in (".", ".."):
            names[fields[5]] = fields[2].startswith("04")
    return names


def _python_paths(raw, workdir):
    """The *.dist-info / *.egg-info entries under the disk's python3* dist/site-packages."""
    sites = []
    for parent in PYTHON_PARENTS:
        names = _listing(_debugfs(raw, ["ls -p %s" % parent], workdir))
        sites += [posixpath.join(parent, n, s) for n in sorted(names) if n.startswith("python3") and names[n]
                  for s in PYTHON_SITES]
    found = []
    for site in sites:
        entries = _listing(_debugfs(raw, ["ls -p %s" % site], workdir))
        found += [posixpath.join(site, e) for e in sorted(entries) if e.endswith((".dist-info", ".egg-info"))]
    return found


def _safe(path):
    return all(c not in path for c in "\"\n\r") and path.startswith("/")


@contextlib.contextmanager
def disk_root(disk, paths=DEFAULT_PATHS, python=True):
    """A directory holding `paths` (and the python metadata when python) copied out of a qcow2/raw
    ext4 disk; removed afterwards."""
    workdir = tempfile.mkdtemp(prefix="immutable-infra-imgfiles-")
    try:
        raw = os.path.join(workdir, "disk.raw")
        run(["qemu-img", "convert", "-O", "raw", disk, raw], timeout=1800, what="qemu-img convert of the VM disk")
        root = os.path.join(workdir, "root")
        os.makedirs(root)
        wanted = sorted(set(p.rstrip("/") for p in list(paths) + (_python_paths(raw, workdir) if python else [])
                            if _safe(p)))
        # rdump skips a directory that exists already: dump no path inside another, make only their parents.
        wanted = [p for p in wanted if not any(p.startswith(q + "/") for q in wanted)]
        commands = []
        for path in wanted:
            parent = os.path.join(root, posixpath.dirname(path).lstrip("/"))
            os.makedirs(parent, exist_ok=True)
            commands.append('rdump "%s" "%s"' % (path, parent))
        _debugfs(raw, commands, workdir)
        os.unlink(raw)
        yield root
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def image_root(local_image, fmt="container", paths=DEFAULT_PATHS, podman="podman"):
    """The root file system of a local image (see the module doc), for reading only."""
    if fmt == _vm_image.FORMAT_VM:
        with contextlib.ExitStack() as stack:
            with mounted(local_image, podman) as top:
                disk = os.path.join(top, _vm_image.MEMBERS["disk"])
                if not os.path.isfile(disk):
                    raise ImmutableInfraError("VM image %s has no %s: it cannot be read (or booted); bake it again"
                                              % (local_image, _vm_image.MEMBERS["disk"]))
                root = stack.enter_context(disk_root(disk, paths))
            # The disk's files are copied out: the image need not stay mounted.
            yield root
    elif fmt in (None, "", _vm_image.FORMAT_CONTAINER):
        with mounted(local_image, podman) as root:
            yield root
    else:
        raise ImmutableInfraError("cannot read the files of a %r image (formats: container, vm)" % (fmt,))
