# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base image, from Debian packages only: a container image (mmdebstrap |
podman import) or a bootable VM image (_base_vm), baked once like a recipe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time

from ansible_collections.immutable.infra.plugins.module_utils import _apt_sources as _apt
from ansible_collections.immutable.infra.plugins.module_utils import _base_vm, _evidence
from ansible_collections.immutable.infra.plugins.module_utils import _catalog as catalog_mod
from ansible_collections.immutable.infra.plugins.module_utils import _vm_image
from ansible_collections.immutable.infra.plugins.module_utils._bake import bake_once, image_labels, version_diff
from ansible_collections.immutable.infra.plugins.module_utils._names import label
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

BASE_FINGERPRINT_SCHEME = "immutable.infra/base-image/v1"
# The digest of the package indexes a refreshed base was built from.
LABEL_APT_INDEXES = label("apt-indexes")


def base_fingerprint(params, indexes=None):
    """The base's input fingerprint. apt_sources and the package indexes' digest (refresh)
    are inputs only when given: a base baked without them keeps its fingerprint."""
    doc = {
        "scheme": BASE_FINGERPRINT_SCHEME,
        "suite": params["suite"],
        "variant": params["variant"],
        "packages": sorted(params.get("packages") or []),
        "mirror": params.get("mirror"),
        "collection_version": params.get("collection_version"),
    }
    if params.get("format") == "vm":
        # Absent means container: container base fingerprints stay what they were.
        doc.update(format="vm", guest=_base_vm.guest_digest())
    if params.get("apt_sources"):
        doc["apt_sources"] = list(params["apt_sources"])
    if indexes:
        doc["apt_indexes"] = indexes
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


BASE_NAMES = {"container": "immutable/base", "vm": "immutable/base-vm"}


def build_base_image(params, check_mode=False):
    """A minimal Debian image from Debian packages only: a container image
    (mmdebstrap | podman import) or a bootable VM image (format vm)."""
    started = time.monotonic()
    name = params.get("name") or BASE_NAMES[params.get("format") or "container"]
    catalog = catalog_mod.Catalog(params["registry"], params.get("validate_certs"))
    _apt.check_sources(params.get("apt_sources"))
    if params.get("apt_sources") and params.get("format") == "vm":
        raise ImmutableInfraError("apt_sources is supported for container bases only (format=container), "
                                  "not for the VM base: leave it out, or bake a container base")
    indexes = _apt.index_digest(_apt.build_sources(params), params.get("timeout") or 1800) if params.get("refresh") else None
    fp = base_fingerprint(params, indexes)
    result = {"fingerprint": fp, "name": name, "parent": None, "apt_indexes": indexes}
    result = bake_once(catalog, params, result, started, check_mode,
                       lambda version, tags: _build_base(params, check_mode, catalog, result, version, tags, started))
    if result.get("image") and "sbom" not in result:
        # The catalog's version: complete what it lacks (a bake killed after its push; signing asked now).
        done = _evidence.complete(catalog, result["image"], params.get("format") or "container", params, check_mode)
        result.update(changed=result["changed"] or done["changed"], sbom=done["sbom"], signature=done["signature"])
    return result


def _build_base(params, check_mode, catalog, result, version, tags, started):
    name, fp = result["name"], result["fingerprint"]
    result["diff"] = version_diff(catalog.repository(name), tags, version)
    labels = image_labels(version, name, fp, revision=params.get("revision"))
    if result.get("apt_indexes"):
        labels[LABEL_APT_INDEXES] = result["apt_indexes"]
    if params.get("format") == "vm":
        return _build_base_vm(params, check_mode, catalog, result, version, labels, started)
    argv = ["mmdebstrap", "--quiet", "--variant=%s" % params["variant"], "--format=tar"]
    if params.get("packages"):
        argv.append("--include=%s" % ",".join(params["packages"]))
    for pattern in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"):
        argv.append("--dpkgopt=path-exclude=%s" % pattern)
    argv.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    result.update(version=version, labels=labels)
    workdir = None if check_mode else tempfile.mkdtemp(prefix="immutable-infra-base-")
    argv += _apt.extra_source_hooks(params.get("apt_sources"), workdir or "WORKDIR")
    if check_mode:
        result.update(changed=True, image=None, commands=[argv + [params["suite"], "-"]],
                      duration=round(time.monotonic() - started, 3))
        return result
    try:
        tarball = os.path.join(workdir, "rootfs.tar")
        argv += [params["suite"], tarball] + ([params["mirror"]] if params.get("mirror") else [])
        run(argv, timeout=params.get("timeout") or 1800, what="mmdebstrap")
        imp = ["podman", "import", "-q"]
        for k, v in sorted(labels.items()):
            imp += ["--change", "LABEL %s=%s" % (k, json.dumps(v))]
        imp += ["--change", 'CMD ["/bin/bash"]', tarball]
        _rc, out, _err = run(imp, what="podman import")
        local = out.strip().splitlines()[-1]
        try:
            evidence = _evidence.before_publish(local, "container", params, labels=labels)
        except ImmutableInfraError:
            run(["podman", "rmi", "-f", local], check=False, timeout=120)
            raise
        facts = catalog.publish(local, name, version, labels[catalog_mod.LABEL_BAKE_ID])
        result.update(changed=True, image=facts, commands=[argv, imp], duration=round(time.monotonic() - started, 3))
        result.update(_evidence.after_publish(catalog, facts, evidence, params))
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _build_base_vm(params, check_mode, catalog, result, version, labels, started):
    """The base VM: mmdebstrap tree -> ext4 -> qcow2, packaged with its kernel and initrd."""
    result.update(version=version, labels=labels)
    if check_mode:
        result.update(changed=True, image=None, commands=[_base_vm.mmdebstrap_argv(params, "ROOTFS", "OVERLAY")],
                      duration=round(time.monotonic() - started, 3))
        return result
    workdir = tempfile.mkdtemp(prefix="immutable-infra-base-vm-")
    local = None
    try:
        files, commands = _base_vm.build_disk(params, workdir, params.get("timeout") or 1800)
        local = _vm_image.package(files["disk"], files["kernel"], files["initrd"], labels, _vm_image.DEFAULT_KERNEL_ARGS)
        evidence = _evidence.before_publish(local, "vm", params, labels=labels)
        facts = catalog.publish(local, result["name"], version, labels[catalog_mod.LABEL_BAKE_ID])
        result.update(changed=True, image=facts, commands=commands, duration=round(time.monotonic() - started, 3))
        result.update(_evidence.after_publish(catalog, facts, evidence, params))
        return result
    finally:
        if local:
            # The catalog holds it now; a local copy of a disk image is of no use to podman.
            run(["podman", "rmi", "-f", local], check=False, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)
