# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bake once: turn a recipe (or a Debian package set) into an image version.

Both bakes follow one path: fingerprint the inputs; if the catalog holds a
version with that fingerprint, return it unchanged; otherwise build, label,
verify and publish. Nothing is tagged or pushed unless the build succeeded.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import re
import shutil
import tempfile
import time
import uuid

from ansible_collections.immutable.infra.plugins.module_utils import _ami_bake
from ansible_collections.immutable.infra.plugins.module_utils import _catalog as catalog_mod
from ansible_collections.immutable.infra.plugins.module_utils import _evidence, _vm_image
from ansible_collections.immutable.infra.plugins.module_utils._bake_locks import BakeLocks
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import LABEL_PARENT_CHANNEL, Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import state_dir
from ansible_collections.immutable.infra.plugins.module_utils._packer import (
    Packer,
    ami_artifacts,
    build_args,
    container_artifacts,
    fingerprint,
    offline_variant,
    recipe_sources,
    select_sources,
    source_format,
    vm_artifacts,
)
from ansible_collections.immutable.infra.plugins.module_utils._revocation import usable_image
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

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


def image_labels(version, recipe, fp, parent=None, revision=None, bake_id=None, parent_channel=None):
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
    if parent and parent_channel:
        labels[LABEL_PARENT_CHANNEL] = parent_channel
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


def vm_parent_reference(params):
    """The parent of a recipe's VM source: `vm_parent`, else the `-vm` repository
    of `parent` (immutable/base -> immutable/base-vm, its newest version); a
    parent that is a VM repository already is taken as it is."""
    if params.get("vm_parent"):
        return params["vm_parent"]
    parent = params.get("parent")
    if not parent:
        return None
    parts = catalog_mod.parse_reference(parent, default_registry=params["registry"])
    if parts["name"].endswith("-vm"):
        return parent
    if parts["tag"] or parts["digest"]:
        raise ImmutableInfraError(
            "parent %r pins a container image version; the VM source needs its own: give vm_parent "
            "(for example %s-vm or %s-vm:<version>)" % (parent, parts["name"], parts["name"]))
    return "%s/%s-vm" % (parts["registry"], parts["name"])


def parent_resolver(catalog, params):
    """resolve(reference) -> the parent version of a bake: the reference in the catalog, or with
    `parent_channel` that channel's target in the repository the reference names. A revoked
    parent is refused, naming the revocation, before anything is baked (also a bake the catalog
    already holds: its inputs include a version that must not be used)."""
    def lifecycle_for(registry):
        return Lifecycle(registry, params.get("validate_certs") if registry == catalog.registry else None)
    return usable_image(catalog.resolve, lifecycle_for, catalog.registry, params.get("parent_channel"),
                        doing="cannot bake on")


def parent_input(parent, channel):
    """The parent as an input of the fingerprint: its digest, and the channel it was resolved
    from (recorded as a label, so a version baked from a channel differs from one pinned by digest)."""
    if not parent:
        return None
    return parent["digest"] + (" channel=%s" % channel if channel else "")


def recipe_inputs(params):
    """What a recipe bake is made of: the recipe directory, var files, catalog
    and one output per selected source - its format, repository (<name>, or
    <name>-vm for a VM), parent version and input fingerprint. The image_bake
    action reads these too, to answer a no-op without starting the module."""
    recipe_dir = os.path.abspath(params["recipe"])
    templates = find_templates(recipe_dir)
    name = params.get("name") or os.path.basename(recipe_dir.rstrip("/"))
    var_files = resolve_var_files(recipe_dir, params.get("var_files"))
    sources = select_sources(recipe_sources(templates), params.get("only"), recipe_dir)
    # No separate ping: the first registry call names an unreachable registry.
    catalog = catalog_mod.Catalog(params["registry"], params.get("validate_certs"))
    channel = params.get("parent_channel")
    if channel and not params.get("parent"):
        raise ImmutableInfraError("parent_channel %s needs parent: the repository whose channel it is "
                                  "(for example immutable/base)" % channel)
    resolve_parent = parent_resolver(catalog, params)
    outputs = []
    for source in sources:
        fmt = source_format(source)
        if fmt == "ami":
            outputs.append(_ami_output(recipe_dir, templates, var_files, params, source, name))
            continue
        ref = params.get("parent") if fmt == "container" else vm_parent_reference(params)
        parent = resolve_parent(ref) if ref else None
        if fmt == "vm" and parent is None:
            raise ImmutableInfraError("the VM source %s of recipe %s needs a parent VM image: give parent (its -vm "
                                      "repository is used) or vm_parent" % (source, recipe_dir))
        if fmt == "vm":
            _vm_image.vm_facts(parent, ref)
        fp = fingerprint(recipe_dir, var_files, params.get("variables"), parent_input(parent, channel),
                         params.get("collection_version"), list(params.get("fingerprint_paths") or []), [source])
        outputs.append({"source": source, "format": fmt, "name": name if fmt == "container" else name + "-vm",
                        "parent": parent, "fingerprint": fp, "parent_channel": channel if parent else None})
    return {"recipe": recipe_dir, "var_files": var_files, "catalog": catalog, "outputs": outputs}


def _ami_output(recipe_dir, templates, var_files, params, source, name):
    """An AMI output (repository <name>-ami): no parent image (it starts from a source AMI, a recipe
    variable); its regions and communicator are inputs of the fingerprint."""
    ami = _ami_bake.settings(params)
    run_source = source
    if ami["communicator"] == "none":
        run_source = offline_variant(templates, source)
        if not run_source:
            raise ImmutableInfraError(
                "ami_communicator none needs the recipe's variant of %s with communicator \"none\": recipe %s "
                "declares no `source \"source.%s\" { name = \"%s-offline\" ... }` in its build block"
                % (source, recipe_dir, source, source.split(".", 1)[1]))
    fp = fingerprint(recipe_dir, var_files, params.get("variables"), None, params.get("collection_version"),
                     list(params.get("fingerprint_paths") or []), [source], extra=_ami_bake.fingerprint_input(ami))
    return {"source": source, "format": "ami", "name": name + "-ami", "parent": None, "fingerprint": fp,
            "parent_channel": None, "ami": ami, "run_source": run_source}


def summary(recipe_dir, outputs):
    """The module's result: the first output's facts at the top (a one-source
    bake reads as it always did), every output under `outputs`."""
    keys = ("source", "format", "name", "fingerprint", "parent", "parent_channel", "image", "version", "changed",
            "sbom", "signature", "amis", "adopted")
    result = {k: outputs[0].get(k) for k in ("fingerprint", "parent", "parent_channel", "name", "image", "format", "source",
                                             "sbom", "signature")}
    result.update(recipe=recipe_dir, changed=any(o.get("changed") for o in outputs),
                  outputs=[{k: o[k] for k in keys if k in o} for o in outputs])
    return result


def bake_recipe(params, check_mode=False):
    """Bake a Packer recipe once per output. params mirror image_bake's options.

    Each selected source is its own image version with its own fingerprint;
    Packer runs (once per source) only for outputs the catalog lacks. Every
    output's repository is locked as bake_once does, in name order."""
    started = time.monotonic()
    inputs = recipe_inputs(params)
    catalog, outputs = inputs["catalog"], inputs["outputs"]
    extra = {}
    with contextlib.ExitStack() as stack:
        locks = {}
        for out in sorted(outputs, key=lambda o: o["name"]):
            locks[out["name"]] = stack.enter_context(BakeLocks(state_dir("bake-locks"), catalog.registry, out["name"]))
            if not check_mode:
                locks[out["name"]].hold_inputs(out["fingerprint"], params.get("timeout") or 3600)
        for out in outputs:
            name = out["name"]
            tags = catalog.list_tags(name)
            action, what = plan(catalog, name, out["fingerprint"], params.get("version"), params.get("force"), tags)
            if action == "exists":
                done = _evidence.complete(catalog, what, out["format"], params, check_mode)
                out.update(changed=done["changed"], image=what, sbom=done["sbom"], signature=done["signature"])
                continue
            if not check_mode:
                what = locks[name].reserve(lambda taken, v=what, n=name: v if params.get("version")
                                           else catalog_mod.next_version(catalog.list_tags(n) + taken))
            out.update(version=what, diff=version_diff(catalog.repository(name), tags, what))
            _run_bake(params, check_mode, catalog, inputs, out, extra)
    result = summary(inputs["recipe"], outputs)
    baked = [o for o in outputs if "diff" in o]
    if baked:
        result.update(version=baked[0]["version"], labels=baked[0]["labels"], diff=baked[0]["diff"])
        result.update({k: baked[0][k] for k in ("sbom", "signature") if k in baked[0]})
        if len(baked) > 1:
            result["diff"] = {k: "".join(o["diff"][k] for o in baked) if "header" not in k
                              else " ".join(o["diff"][k] for o in baked) for k in baked[0]["diff"]}
    result.update(extra, duration=round(time.monotonic() - started, 3))
    return result


def _vm_vars(workdir, parent, log_file, accelerator):
    """The recipe contract's variables for a VM source: the parent VM image from
    the cache, the accelerator and a key pair for Packer's SSH (public half
    given to the guest through fw_cfg)."""
    files = _vm_image.fetch(parent["reference"])
    key, _public = _vm_image.ssh_key(os.path.join(workdir, "ssh-key"), "immutable-infra-bake")
    return {"parent_disk": files["disk"], "parent_kernel": files["kernel"], "parent_initrd": files["initrd"],
            "parent_kernel_args": files["kernel_args"], "accelerator": accelerator, "ssh_private_key_file": key,
            "ssh_public_key_file": key + ".pub", "vm_output_dir": os.path.join(workdir, "vm"),
            "vm_serial_log": re.sub(r"(\.log)?$", "-serial.log", log_file, count=1),
            "vm_manifest": os.path.join(workdir, "vm-manifest.json")}, files


def _manifest_labels(path):
    """Labels a recipe gives its VM image: custom_data of its manifest post-processor (last build)."""
    try:
        with open(path) as f:
            builds = json.load(f).get("builds") or []
    except (OSError, ValueError):
        return {}
    data = (builds[-1].get("custom_data") if builds else None) or {}
    return {str(k): str(v) for k, v in data.items()}


def _run_bake(params, check_mode, catalog, inputs, out, extra):
    """One output's bake, its version reserved: Packer for its source, then
    label check (container) or packaging (VM), then publish. Fills `out`."""
    recipe_dir, name, parent, fp, version = inputs["recipe"], out["name"], out["parent"], out["fingerprint"], out["version"]
    bake_id = uuid.uuid4().hex[:12]
    labels = image_labels(version, name, fp, parent, params.get("revision") or source_revision(recipe_dir), bake_id,
                          out.get("parent_channel"))
    out["labels"] = labels
    contract_vars = {
        "image_version": version,
        "image_labels": labels,
        "build_name": "immutable-bake-%s-%s" % (name.replace("/", "-"), bake_id),
    }
    if parent:
        contract_vars["parent_image"] = parent["reference"]
    ami = out.get("ami")
    if ami:
        _ami_bake.preflight(ami)
        contract_vars.update(_ami_bake.contract_vars(ami, name, version, bake_id, labels, catalog.repository(name)))
        if not check_mode and _adopt(catalog, out, ami, labels, params):
            return
    workdir = tempfile.mkdtemp(prefix="immutable-infra-bake-")
    try:
        env = dict(PROVISIONER_ENV, PATH=_shim_dir(workdir) + os.pathsep + os.environ.get("PATH", ""),
                   PACKER_CACHE_DIR=os.path.join(workdir, "packer_cache"))
        if ami:
            env.update(_ami_bake.packer_env(ami))
        if params.get("collections_paths"):
            env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(params["collections_paths"])
        packer = Packer(params.get("packer_path") or "packer", env)
        log_file = params.get("log_file") or os.path.join(workdir, "bake.log")
        parent_files = None
        if out["format"] == "vm" and not check_mode:
            vm_vars, parent_files = _vm_vars(workdir, parent, log_file, _vm_image.accelerator())
            contract_vars.update(vm_vars)
        user_vars = dict(params.get("variables") or {})
        user_vars.update(contract_vars)
        var_json = os.path.join(workdir, "immutable-infra.pkrvars.json")
        with open(var_json, "w") as f:
            json.dump(user_vars, f)
        args = build_args(inputs["var_files"], [out.get("run_source") or out["source"]], var_json)
        if check_mode:
            extra.setdefault("commands", []).append(packer.validate(recipe_dir, args))
            out.update(changed=True, image=None)
            return
        if parent and out["format"] == "container":
            catalog.pull(parent["reference"])
        try:
            cmd, parsed, seconds = packer.build(recipe_dir, args, log_file, params.get("timeout") or 3600)
            if ami:
                amis = _ami_bake.amis_of_build(ami_artifacts(parsed["artifacts"]), ami, recipe_dir)
                facts = _ami_bake.publish(catalog, out, ami, amis, labels)
                out.update(amis=amis, sbom=None, signature=_evidence.sign_only(catalog, facts, params))
            elif out["format"] == "vm":
                facts = _publish_vm(catalog, out, parsed, parent_files, labels, contract_vars, recipe_dir, params)
            else:
                facts, warning = _publish_container(catalog, out, parsed, labels, recipe_dir, params)
                if warning:
                    extra.setdefault("warnings", []).append(warning)
        except BaseException:
            # Packer removes only a build container it started: one that was
            # created but never ran (or a killed Packer's) stays, under our name.
            if out["format"] == "container":
                run(["podman", "rm", "-f", "-t", "0", "--ignore", contract_vars["build_name"]], check=False, timeout=120)
            raise
        out.update(changed=True, image=facts)
        extra.setdefault("artifacts", []).extend(parsed["artifacts"])
        extra["packer_seconds"] = round(extra.get("packer_seconds", 0) + seconds, 3)
        extra["log_file"] = log_file
        extra.setdefault("commands", []).append(cmd)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _adopt(catalog, out, ami, labels, params):
    """Publish the AMIs a dead bake of these inputs left unpublished (no new AMI); False when there are none."""
    amis = _ami_bake.unpublished(ami, out["fingerprint"], catalog.repository(out["name"]))
    if not amis:
        return False
    facts = _ami_bake.publish(catalog, out, ami, amis, labels)
    out.update(changed=True, image=facts, amis=amis, adopted=True, sbom=None,
               signature=_evidence.sign_only(catalog, facts, params))
    return True


def _one(found, kind, recipe_dir, artifacts):
    if not found:
        raise ImmutableInfraError("recipe %s built no %s (artifacts: %s)" % (recipe_dir, kind, artifacts))
    if len(found) > 1:
        raise ImmutableInfraError("recipe %s built %d %ss (%s); select one source with `only`"
                                  % (recipe_dir, len(found), kind, ", ".join(sorted(found))))
    return list(found.values())[0]


def _publish_container(catalog, out, parsed, labels, recipe_dir, params):
    """Verify the labels, seal check + SBOM (an unsealed image is removed, nothing published), publish,
    then store the SBOM and sign (out gets "sbom" and "signature")."""
    local_image = _one(container_artifacts(parsed["artifacts"]), "container image", recipe_dir, parsed["artifacts"])
    config = _verify_labels(local_image, labels, recipe_dir)
    try:
        evidence = _evidence.before_publish(local_image, "container", params, labels=config.get("Labels") or labels)
    except ImmutableInfraError:
        run(["podman", "rmi", "-f", local_image], check=False, timeout=120)
        raise
    facts = catalog.publish(local_image, out["name"], out["version"], labels[catalog_mod.LABEL_BAKE_ID])
    out.update(_evidence.after_publish(catalog, facts, evidence, params))
    return facts, build_shell_warning(config, "%s:%s" % (out["name"], out["version"]))


def _publish_vm(catalog, out, parsed, parent_files, labels, contract_vars, recipe_dir, params):
    """Package Packer's qcow2 with the parent's kernel and initrd; seal check + SBOM of its disk; publish
    it; store the SBOM and sign (out gets "sbom" and "signature"). The local image is removed either way."""
    disk = _one(vm_artifacts(parsed["artifacts"]), "qcow2 disk", recipe_dir, parsed["artifacts"])
    all_labels = dict(_manifest_labels(contract_vars["vm_manifest"]), **labels)
    local = _vm_image.package(disk, parent_files["kernel"], parent_files["initrd"], all_labels,
                              parent_files["kernel_args"])
    try:
        evidence = _evidence.before_publish(local, "vm", params, labels=all_labels)
        facts = catalog.publish(local, out["name"], out["version"], labels[catalog_mod.LABEL_BAKE_ID])
        out.update(_evidence.after_publish(catalog, facts, evidence, params))
        return facts
    finally:
        run(["podman", "rmi", "-f", local], check=False, timeout=120)


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
