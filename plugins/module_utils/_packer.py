# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packer: argv building, the machine-readable parser, the input fingerprint
and a runner that streams a bake to a log file an operator can follow."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, command_env, run

FINGERPRINT_SCHEME = "immutable.infra/fingerprint/v1"
# Directories of a recipe that are not inputs of its image: its tests run
# against a baked version (image_test) and have their own digest.
RECIPE_NOT_INPUTS = ("tests",)
# The image format each Packer builder type makes, and where its output goes:
# a recipe's container output to <name>, its VM output to <name>-vm, its AMI
# output (a catalog version naming the AMI per region) to <name>-ami.
SOURCE_FORMATS = {"docker": "container", "qemu": "vm", "amazon-ebs": "ami"}
# The build-block variant of an AMI source that runs with communicator "none"
# (nothing provisioned): "<source>-offline" (see packer/web/build.pkr.hcl).
OFFLINE_SUFFIX = "-offline"
AMAZON_EBS_BUILDER_ID = "mitchellh.amazonebs"
_SOURCE_RE = re.compile(r'^[ \t]*source[ \t]+"([^"]+)"[ \t]+"([^"]+)"', re.M)
_IGNORED_DIRS = {".git", "__pycache__", "packer_cache", ".molecule", "output"}
_IGNORED_SUFFIXES = (".pyc", ".log", ".swp", "~")


# ---------------------------------------------------------------- parsing
def decode(text):
    """Undo Packer's machine-readable escaping of commas and newlines."""
    return text.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_line(line):
    """One machine-readable line -> (timestamp, target, type, [data...]) or None."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return parts[0], parts[1], parts[2], [decode(p) for p in parts[3:]]


def parse_machine_readable(lines):
    """Artifacts per build and the error lines, from `packer -machine-readable`.

    Artifact lines look like `ts,build,artifact,N,key,value...`; a key of
    `files-count`/`file` lists files, `end` closes the artifact.
    """
    artifacts = {}
    errors = []
    ui_errors = []
    messages = []
    for line in lines:
        parsed = parse_line(line)
        if parsed is None:
            continue
        _ts, target, kind, data = parsed
        if kind == "artifact" and len(data) >= 2 and data[0].isdigit():
            key = (target, int(data[0]))
            art = artifacts.setdefault(key, {"build": target, "index": int(data[0]), "files": []})
            field, values = data[1], data[2:]
            if field == "file" and len(values) >= 2:
                art["files"].append(values[1])
            elif field in ("id", "string", "builder-id") and values:
                art[field.replace("-", "_")] = ",".join(values)
        elif kind == "error" and target and data:
            errors.append(data[0].strip())
        elif kind == "ui" and len(data) >= 2:
            if data[0] == "error":
                ui_errors.append(data[1].strip())
            elif data[0] in ("say", "message"):
                messages.append(data[1])
    ordered = [artifacts[k] for k in sorted(artifacts)]
    return {"artifacts": ordered, "errors": errors, "ui_errors": ui_errors, "messages": messages}


def _strip_build_prefix(line):
    """'    docker.container: text' -> 'text' (Packer prefixes provisioner output)."""
    head, sep, rest = line.partition(": ")
    return rest if sep and head.strip() and " " not in head.strip() else line


def _provisioner_failures(messages):
    """For each failed Ansible task: its TASK line, the fatal line and its msg/stderr."""
    lines = [_strip_build_prefix(m.rstrip("\n")) for m in messages]
    out, task = [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("TASK ["):
            task = s.rstrip("* ").strip()
        elif s.startswith(("fatal:", "failed:")) or s.startswith("ERROR!") or s.startswith("[ERROR]"):
            if task:
                out.append(task)
            out.append(s)
            for follow in lines[i + 1:i + 40]:
                f = follow.strip()
                if not f or f.startswith(("TASK [", "PLAY RECAP", "fatal:", "failed:")):
                    break
                if f.startswith(("msg:", "stderr:", "module_stderr:", "reason:")):
                    out.append(f)
    return out


def relevant_errors(parsed, limit=25):
    """The lines that explain a failed build, most specific first, deduplicated."""
    lines = _provisioner_failures(parsed["messages"])
    for err in parsed["errors"] + [e for e in parsed["ui_errors"] if "Warning:" not in e]:
        for ln in err.splitlines():
            s = ln.strip().lstrip("=>- ").strip()
            if s and not s.startswith("Some builds didn't complete"):
                lines.append(s)
    seen, out = set(), []
    for ln in lines:
        if ln not in seen:
            seen.add(ln)
            out.append(ln)
    return out[:limit]


def vm_artifacts(artifacts):
    """The qcow2 file of each build's qemu artifact: {build: path}."""
    found = {}
    for art in artifacts:
        files = [f for f in art.get("files") or [] if f.endswith(".qcow2")]
        if art.get("builder_id") == "transcend.qemu" and files:
            found[art["build"]] = files[0]
    return found


def ami_artifacts(artifacts):
    """The AMIs of each build's amazon-ebs artifact: {build: {region: ami id}} (its id reads
    "eu-west-1:ami-1,us-east-1:ami-2")."""
    found = {}
    for art in artifacts:
        if art.get("builder_id") == AMAZON_EBS_BUILDER_ID and art.get("id"):
            pairs = [p.split(":", 1) for p in art["id"].split(",") if ":" in p]
            found[art["build"]] = {region.strip(): ami.strip() for region, ami in pairs}
    return found


def offline_variant(templates, source):
    """The build-block variant "<type>.<name>-offline" of an amazon-ebs source (communicator "none"),
    or None when the recipe does not declare it."""
    name = source.split(".", 1)[1] + OFFLINE_SUFFIX
    pattern = re.compile(r'source[ \t]+"source\.%s"[ \t]*\{[^}]*name[ \t]*=[ \t]*"%s"'
                         % (re.escape(source), re.escape(name)), re.S)
    for path in templates:
        with open(path) as f:
            if pattern.search(f.read()):
                return source + OFFLINE_SUFFIX
    return None


def container_artifacts(artifacts):
    """The artifact of each build that names a container image (last one wins:
    a docker-tag post-processor's reference is preferred to the bare image id)."""
    found = {}
    for art in artifacts:
        bid = art.get("builder_id", "")
        if art.get("id") and (bid.startswith("packer.docker") or bid.startswith("packer.post-processor.docker-")):
            found[art["build"]] = art["id"]
    return found


# ---------------------------------------------------------------- sources
def recipe_sources(templates):
    """The sources ("type.name") the recipe's templates declare, in order."""
    found = []
    for path in templates:
        with open(path) as f:
            found += ["%s.%s" % m for m in _SOURCE_RE.findall(f.read())]
    return list(dict.fromkeys(found))


def select_sources(sources, only, recipe_dir):
    """The sources a bake builds: `only` names sources ("docker.container", also
    with the build's name in front) or formats ("container", "vm"). Empty means
    the container source, or every source when the recipe has none: a recipe
    that gains a VM source does not make every existing bake boot VMs.
    At most one source per format (each format is one image version)."""
    picked, explicit = [], bool(only)
    if not only:
        only = [s for s in sources if SOURCE_FORMATS.get(s.split(".", 1)[0]) == "container"] \
            or list(dict.fromkeys(SOURCE_FORMATS.values()))
    for item in only:
        item = str(item)
        if item in SOURCE_FORMATS.values():
            match = [s for s in sources if SOURCE_FORMATS.get(s.split(".", 1)[0]) == item]
            if not match and explicit:
                raise ImmutableInfraError("recipe %s has no %s source (its sources: %s)"
                                          % (recipe_dir, item, ", ".join(sources) or "none"))
        else:
            match = [s for s in sources if item == s or item.endswith("." + s)]
            if not match:
                raise ImmutableInfraError("unknown source %r in only: recipe %s has %s; or give a format: %s"
                                          % (item, recipe_dir, ", ".join(sources) or "no sources",
                                             ", ".join(sorted(set(SOURCE_FORMATS.values())))))
        picked += [s for s in match if s not in picked]
    for s in picked:
        if s.split(".", 1)[0] not in SOURCE_FORMATS:
            raise ImmutableInfraError("source %s of recipe %s: immutable.infra bakes only %s sources"
                                      % (s, recipe_dir, ", ".join(sorted(SOURCE_FORMATS))))
    for fmt in set(SOURCE_FORMATS.values()):
        same = [s for s in picked if SOURCE_FORMATS[s.split(".", 1)[0]] == fmt]
        if len(same) > 1:
            raise ImmutableInfraError("recipe %s has several %s sources (%s); select one with `only`"
                                      % (recipe_dir, fmt, ", ".join(same)))
    if not picked:
        raise ImmutableInfraError("recipe %s has no docker, qemu or amazon-ebs source to bake (its sources: %s)"
                                  % (recipe_dir, ", ".join(sources) or "none"))
    return picked


def source_format(source):
    return SOURCE_FORMATS[source.split(".", 1)[0]]


# ------------------------------------------------------------ fingerprint
def _walk_files(root, exclude=()):
    if os.path.isfile(root):
        yield root, os.path.basename(root)
        return
    if not os.path.isdir(root):
        raise ImmutableInfraError("fingerprint input %s does not exist" % root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        top = dirpath == root
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS and not (top and d in exclude))
        for fn in sorted(filenames):
            if fn.endswith(_IGNORED_SUFFIXES):
                continue
            full = os.path.join(dirpath, fn)
            yield full, os.path.relpath(full, root)


def _file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root, exclude=()):
    """sha256 over relative paths and contents of a file or directory tree,
    leaving out the top-level directories named in exclude."""
    h = hashlib.sha256()
    for full, rel in _walk_files(root, exclude):
        h.update(rel.encode() + b"\0" + _file_digest(full).encode() + b"\n")
    return h.hexdigest()


def fingerprint(recipe_dir, var_files=(), variables=None, parent_digest=None,
                collection_version=None, paths=(), only=(), extra=None):
    """The input fingerprint of a bake: every input that can change the image.

    Covers the recipe directory (templates, var files, playbook), var files
    outside it, the roles and other paths the provisioner applies, variable
    values, the parent image digest, the selected sources and the collection
    version; `extra`, when given, holds a format's own inputs (an AMI's regions and
    communicator). Output names (version, labels) are not inputs.
    """
    doc = {
        "scheme": FINGERPRINT_SCHEME,
        "recipe": tree_digest(recipe_dir, exclude=RECIPE_NOT_INPUTS),
        "var_files": [tree_digest(p) for p in var_files],
        "paths": sorted(tree_digest(p) for p in set(paths)),
        "variables": variables or {},
        "parent_digest": parent_digest,
        "collection_version": collection_version,
        "only": sorted(only or []),
    }
    if extra is not None:
        doc["extra"] = extra
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------- runner
def build_args(var_files=(), only=(), extra_var_file=None):
    args = []
    for vf in var_files:
        args.append("-var-file=%s" % vf)
    if extra_var_file:
        args.append("-var-file=%s" % extra_var_file)
    if only:
        # A named build prefixes its sources (`web.qemu.vm`): match both spellings.
        args.append("-only=%s" % ",".join(p for s in only for p in (s, "*." + s)))
    return args


class Packer:
    def __init__(self, binary="packer", env=None):
        self.binary = binary
        self.env = dict(env or {})
        self.env.setdefault("CHECKPOINT_DISABLE", "1")

    def version(self):
        _rc, out, _err = run([self.binary, "version"], env=self.env, what="packer version")
        return out.strip().splitlines()[0] if out.strip() else ""

    def validate(self, recipe_dir, args):
        cmd = [self.binary, "validate"] + args + ["."]
        rc, out, err = run(cmd, env=self.env, cwd=recipe_dir, check=False, what="packer validate")
        if rc != 0:
            lines = [ln.strip() for ln in (err + "\n" + out).splitlines() if ln.strip()]
            raise ImmutableInfraError(
                "recipe %s is not a valid Packer template: %s" % (recipe_dir, " | ".join(lines[:12])),
                cmd=cmd, rc=rc, stdout=out, stderr=err,
            )
        return cmd

    def build(self, recipe_dir, args, log_file, timeout=3600):
        """Run `packer build`, writing a readable log as it goes; return
        (cmd, parsed, seconds). Raises with Packer's error lines on failure."""
        cmd = [self.binary, "build", "-machine-readable", "-color=false", "-on-error=cleanup"] + args + ["."]
        started = time.monotonic()
        raw = []
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        try:
            proc = subprocess.Popen(cmd, cwd=recipe_dir, env=command_env(self.env), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
        except FileNotFoundError:
            raise ImmutableInfraError("packer is not installed (no %r on PATH)" % self.binary, cmd=cmd)
        with open(log_file, "a") as log:
            log.write("# %s\n" % " ".join(cmd))
            log.flush()
            for line in proc.stdout:
                raw.append(line)
                parsed = parse_line(line)
                if parsed and parsed[2] == "ui" and len(parsed[3]) >= 2:
                    log.write(parsed[3][1].rstrip("\n") + "\n")
                else:
                    log.write(decode(line))
                log.flush()
                if time.monotonic() - started > timeout:
                    proc.kill()
                    break
            rc = proc.wait()
        seconds = round(time.monotonic() - started, 3)
        parsed = parse_machine_readable(raw)
        if rc != 0 or not parsed["artifacts"]:
            errs = relevant_errors(parsed)
            reason = "timed out after %ss" % timeout if seconds > timeout else "failed (rc=%s)" % rc
            raise ImmutableInfraError(
                "packer build of %s %s: %s" % (recipe_dir, reason, " | ".join(errs) or "no artifact produced"),
                cmd=cmd, rc=rc, errors=errs, log_file=log_file,
            )
        return cmd, parsed, seconds
