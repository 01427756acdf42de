# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bake once: turn a recipe (or a Debian package set) into an image version.

Both bakes follow one path: fingerprint the inputs; if the catalog holds a
version with that fingerprint, return it unchanged; otherwise build, label,
verify and publish. Nothing is tagged or pushed unless the build succeeded.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid

from ansible_collections.immutable.infra.plugins.module_utils import _base_vm
from ansible_collections.immutable.infra.plugins.module_utils import _catalog as catalog_mod
from ansible_collections.immutable.infra.plugins.module_utils import _vm_image
from ansible_collections.immutable.infra.plugins.module_utils._bake_locks import BakeLocks
from ansible_collections.immutable.infra.plugins.module_utils._module import state_dir
from ansible_collections.immutable.infra.plugins.module_utils._packer import Packer, build_args, container_artifacts, fingerprint
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

BASE_FINGERPRINT_SCHEME = "immutable.infra/base-image/v1"

# The provisioner's output is both the operator's log and what failures are
# parsed from: keep it plain text whatever callback the controller uses
# (AWX, for one, sets its own).
PROVISIONER_ENV = {
    "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
    "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_FORCE_COLOR": "0",
    "ANSIBLE_RETRY_FILES_ENABLED": "0",
}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def source_revision(path):
    """The git commit a recipe comes from ('-dirty' when it has local changes), or None."""
    rc, out, _err = run(["git", "-C", path, "rev-parse", "HEAD"], check=False)
    if rc != 0:
        return None
    rev = out.strip()
    rc, out, _err = run(["git", "-C", path, "status", "--porcelain", "--", "."], check=False)
    return rev + ("-dirty" if rc == 0 and out.strip() else "")


def image_labels(version, recipe, fp, parent=None, revision=None, bake_id=None):
    labels = {
        catalog_mod.LABEL_VERSION: str(version),
        catalog_mod.LABEL_CREATED: now_rfc3339(),
        catalog_mod.LABEL_RECIPE: recipe,
        catalog_mod.LABEL_FINGERPRINT: fp,
        catalog_mod.LABEL_BAKE_ID: bake_id or uuid.uuid4().hex,
    }
    if revision:
        labels[catalog_mod.LABEL_REVISION] = revision
    if parent:
        labels[catalog_mod.LABEL_BASE_DIGEST] = parent["digest"]
        labels[catalog_mod.LABEL_BASE_NAME] = parent["repository"]
    return labels


def plan(catalog, name, fp, version=None, force=False, tags=None):
    """Decide what a bake does: ('exists', facts) or ('bake', version)."""
    tags = catalog.list_tags(name) if tags is None else tags
    if version is not None:
        version = catalog_mod.validate_version(version)
        same_tag = catalog.inspect(name, version) if version in tags else None
        if same_tag is not None and same_tag["fingerprint"] == fp and not force:
            return "exists", same_tag
        if same_tag is not None:
            inputs = ("the same inputs (force bakes them again, as a new version)" if same_tag["fingerprint"] == fp
                      else "other inputs (fingerprint %s)" % same_tag["fingerprint"])
            raise ImmutableInfraError(
                "image version %s:%s already exists with %s; versions are immutable: "
                "choose another version or omit it to take the next number" % (name, version, inputs)
            )
    existing = None if force else catalog.find_fingerprint(name, fp, tags)
    if existing is not None:
        return "exists", existing
    return "bake", version or catalog_mod.next_version(tags)


def bake_once(catalog, params, result, started, check_mode, bake):
    """Return the catalog's version of these inputs, or bake(version, tags)'s result.

    Outside check mode this runs under the bake locks: the inputs are held
    for the whole bake (the same inputs wait, then find this bake's version)
    and the new version is reserved until it is published - a number is the
    next after every tag and every version being baked, read under one lock.
    """
    name, fp = result["name"], result["fingerprint"]
    with BakeLocks(state_dir("bake-locks"), catalog.registry, name) as locks:
        if not check_mode:
            locks.hold_inputs(fp, params.get("timeout") or 3600)
        tags = catalog.list_tags(name)
        action, what = plan(catalog, name, fp, params.get("version"), params.get("force"), tags)
        if action == "exists":
            result.update(changed=False, image=what, duration=round(time.monotonic() - started, 3))
            return result
        if not check_mode and params.get("version"):
            what = locks.reserve(lambda _taken: what)
        elif not check_mode:
            what = locks.reserve(lambda taken: catalog_mod.next_version(catalog.list_tags(name) + taken))
        return bake(what, tags)


def version_diff(repository, tags, new_version):
    """Diff mode: the catalog's versions before and after the bake."""
    before = ["%s:%s" % (repository, t) for t in sorted(tags, key=catalog_mod.version_key)]
    return {"before": "\n".join(before) + "\n" if before else "",
            "after": "\n".join(before + ["%s:%s" % (repository, new_version)]) + "\n",
            "before_header": repository, "after_header": repository}


def find_templates(recipe_dir):
    if not os.path.isdir(recipe_dir):
        raise ImmutableInfraError("recipe directory %s does not exist" % recipe_dir)
    templates = sorted(glob.glob(os.path.join(recipe_dir, "*.pkr.hcl")))
    if not templates:
        raise ImmutableInfraError("recipe %s has no Packer template (*.pkr.hcl)" % recipe_dir)
    return templates


def resolve_var_files(recipe_dir, var_files):
    out = []
    for vf in var_files or []:
        path = vf if os.path.isabs(vf) else os.path.join(recipe_dir, vf)
        if not os.path.isfile(path):
            raise ImmutableInfraError("var file %s not found (looked at %s)" % (vf, path))
        out.append(os.path.abspath(path))
    return out


def _shim_dir(workdir):
    """Packer's docker builder calls `docker`: point it at podman for this run only."""
    podman = shutil.which("podman")
    if not podman:
        raise ImmutableInfraError("podman is not installed: the docker builder is driven through podman")
    shim = os.path.join(workdir, "bin")
    os.makedirs(shim, exist_ok=True)
    os.symlink(podman, os.path.join(shim, "docker"))
    return shim


def recipe_inputs(params):
    """What a recipe bake is made of: the recipe directory, the repository name,
    var files, catalog, parent version and input fingerprint. The image_bake
    action reads these too, to answer a no-op without starting the module."""
    recipe_dir = os.path.abspath(params["recipe"])
    find_templates(recipe_dir)
    name = params.get("name") or os.path.basename(recipe_dir.rstrip("/"))
    var_files = resolve_var_files(recipe_dir, params.get("var_files"))
    # No separate ping: the first registry call names an unreachable registry.
    catalog = catalog_mod.Catalog(params["registry"], params.get("validate_certs"))
    parent = catalog.resolve(params["parent"]) if params.get("parent") else None
    fp = fingerprint(recipe_dir, var_files, params.get("variables"), parent and parent["digest"],
                     params.get("collection_version"), list(params.get("fingerprint_paths") or []), params.get("only"))
    return {"recipe": recipe_dir, "name": name, "var_files": var_files, "catalog": catalog, "parent": parent,
            "fingerprint": fp}


def bake_recipe(params, check_mode=False):
    """Bake a Packer recipe once. params mirror image_bake's options."""
    started = time.monotonic()
    inputs = recipe_inputs(params)
    catalog, var_files = inputs["catalog"], inputs["var_files"]
    result = {k: inputs[k] for k in ("fingerprint", "parent", "recipe", "name")}
    return bake_once(catalog, params, result, started, check_mode,
                     lambda version, tags: _run_bake(params, check_mode, catalog, result, var_files, version, tags, started))


def _run_bake(params, check_mode, catalog, result, var_files, version, tags, started):
    """The bake itself, its version reserved: Packer, label check, publish."""
    recipe_dir, name, parent, fp = result["recipe"], result["name"], result["parent"], result["fingerprint"]
    result["diff"] = version_diff(catalog.repository(name), tags, version)
    bake_id = uuid.uuid4().hex[:12]
    labels = image_labels(version, name, fp, parent, params.get("revision") or source_revision(recipe_dir), bake_id)
    contract_vars = {
        "image_version": version,
        "image_labels": labels,
        "build_name": "immutable-bake-%s-%s" % (name.replace("/", "-"), bake_id),
    }
    if parent:
        contract_vars["parent_image"] = parent["reference"]
    workdir = tempfile.mkdtemp(prefix="immutable-infra-bake-")
    try:
        env = dict(PROVISIONER_ENV, PATH=_shim_dir(workdir) + os.pathsep + os.environ.get("PATH", ""))
        if params.get("collections_paths"):
            env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(params["collections_paths"])
        user_vars = dict(params.get("variables") or {})
        user_vars.update(contract_vars)
        var_json = os.path.join(workdir, "immutable-infra.pkrvars.json")
        with open(var_json, "w") as f:
            json.dump(user_vars, f)
        packer = Packer(params.get("packer_path") or "packer", env)
        args = build_args(var_files, params.get("only"), var_json)
        result.update(version=version, labels=labels)
        if check_mode:
            result["commands"] = [packer.validate(recipe_dir, args)]
            result.update(changed=True, image=None, duration=round(time.monotonic() - started, 3))
            return result
        if parent:
            catalog.pull(parent["reference"])
        log_file = params.get("log_file") or os.path.join(workdir, "bake.log")
        try:
            cmd, parsed, seconds = packer.build(recipe_dir, args, log_file, params.get("timeout") or 3600)
            images = container_artifacts(parsed["artifacts"])
            if not images:
                raise ImmutableInfraError("recipe %s built no container image (artifacts: %s)" % (recipe_dir, parsed["artifacts"]))
            if len(images) > 1:
                raise ImmutableInfraError("recipe %s built %d container images (%s); select one source with `only`"
                                          % (recipe_dir, len(images), ", ".join(sorted(images))))
            local_image = list(images.values())[0]
            config = _verify_labels(local_image, labels, recipe_dir)
            facts = catalog.publish(local_image, name, version, labels[catalog_mod.LABEL_BAKE_ID])
        except BaseException:
            # Packer removes only a build container it started: one that was
            # created but never ran (or a killed Packer's) stays, under our name.
            run(["podman", "rm", "-f", "-t", "0", "--ignore", contract_vars["build_name"]], check=False, timeout=120)
            raise
        warning = build_shell_warning(config, "%s:%s" % (name, version))
        if warning:
            result["warnings"] = [warning]
        result.update(changed=True, image=facts, artifacts=parsed["artifacts"], packer_seconds=seconds,
                      log_file=log_file, commands=[cmd], duration=round(time.monotonic() - started, 3))
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_SHELLS = ("sh", "bash", "dash", "ash")


def build_shell_warning(config, image):
    """A warning when the committed image's command is still a shell (the
    docker builder commits run_command's `/bin/sh` as CMD), else None."""
    cmd = config.get("Cmd") or []
    if len(cmd) != 1 or os.path.basename(cmd[0]) not in _SHELLS:
        return None
    entrypoint = config.get("Entrypoint") or []
    effect = ("its ENTRYPOINT %s gets %r as an argument" % (json.dumps(entrypoint), cmd[0]) if entrypoint
              else "it starts a shell, not your service")
    return ("image %s keeps the build shell as its command (CMD %s): %s. Set the command in the docker source's "
            "`changes`: \"CMD []\" with an ENTRYPOINT of your own, or a CMD of your own"
            % (image, json.dumps(cmd), effect))


def _verify_labels(local_image, labels, recipe_dir):
    """Check the image carries the bake's labels; return its config (Cmd, Entrypoint, ...)."""
    _rc, out, _err = run(["podman", "image", "inspect", "--format", "{{json .Config}}", local_image],
                         what="podman image inspect")
    config = json.loads(out or "null") or {}
    got = config.get("Labels") or {}
    if got.get(catalog_mod.LABEL_FINGERPRINT) != labels[catalog_mod.LABEL_FINGERPRINT]:
        run(["podman", "rmi", "-f", local_image], check=False)
        raise ImmutableInfraError(
            "recipe %s did not apply var.image_labels to the image (see the recipe contract: "
            "`changes = [for k, v in var.image_labels : \"LABEL ${k}=${jsonencode(v)}\"]`)" % recipe_dir
        )
    return config


def base_fingerprint(params):
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
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


BASE_NAMES = {"container": "immutable/base", "vm": "immutable/base-vm"}


def build_base_image(params, check_mode=False):
    """A minimal Debian image from Debian packages only: a container image
    (mmdebstrap | podman import) or a bootable VM image (format vm)."""
    started = time.monotonic()
    name = params.get("name") or BASE_NAMES[params.get("format") or "container"]
    catalog = catalog_mod.Catalog(params["registry"], params.get("validate_certs"))
    fp = base_fingerprint(params)
    result = {"fingerprint": fp, "name": name, "parent": None}
    return bake_once(catalog, params, result, started, check_mode,
                     lambda version, tags: _build_base(params, check_mode, catalog, result, version, tags, started))


def _build_base(params, check_mode, catalog, result, version, tags, started):
    name, fp = result["name"], result["fingerprint"]
    result["diff"] = version_diff(catalog.repository(name), tags, version)
    labels = image_labels(version, name, fp, revision=params.get("revision"))
    if params.get("format") == "vm":
        return _build_base_vm(params, check_mode, catalog, result, version, labels, started)
    argv = ["mmdebstrap", "--quiet", "--variant=%s" % params["variant"], "--format=tar"]
    if params.get("packages"):
        argv.append("--include=%s" % ",".join(params["packages"]))
    for pattern in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"):
        argv.append("--dpkgopt=path-exclude=%s" % pattern)
    argv.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    result.update(version=version, labels=labels)
    if check_mode:
        result.update(changed=True, image=None, commands=[argv + [params["suite"], "-"]],
                      duration=round(time.monotonic() - started, 3))
        return result
    workdir = tempfile.mkdtemp(prefix="immutable-infra-base-")
    try:
        tarball = os.path.join(workdir, "rootfs.tar")
        argv += [params["suite"], tarball] + ([params["mirror"]] if params.get("mirror") else [])
        run(argv, timeout=params.get("timeout") or 1800, what="mmdebstrap")
        imp = ["podman", "import", "-q"]
        for k, v in sorted(labels.items()):
            imp += ["--change", "LABEL %s=%s" % (k, json.dumps(v))]
        imp += ["--change", 'CMD ["/bin/bash"]', tarball]
        _rc, out, _err = run(imp, what="podman import")
        facts = catalog.publish(out.strip().splitlines()[-1], name, version, labels[catalog_mod.LABEL_BAKE_ID])
        result.update(changed=True, image=facts, commands=[argv, imp], duration=round(time.monotonic() - started, 3))
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
        facts = catalog.publish(local, result["name"], version, labels[catalog_mod.LABEL_BAKE_ID])
        result.update(changed=True, image=facts, commands=commands, duration=round(time.monotonic() - started, 3))
        return result
    finally:
        if local:
            # The catalog holds it now; a local copy of a disk image is of no use to podman.
            run(["podman", "rmi", "-f", local], check=False, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)
