# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM images in the catalog: a qcow2 disk with its kernel and initrd, packaged
as an OCI image (the KubeVirt containerDisk layout) so a VM image version has
a digest, labels and tags like any container image.

Layout of a VM image (FROM scratch, one layer):
  /disk/disk.qcow2   the root file system (ext4 on the whole disk, no partitions)
  /boot/vmlinuz      the kernel
  /boot/initrd.img   its initramfs
Labels: the usual bake labels, plus infra.immutable.format=vm and
infra.immutable.kernel-args (the kernel command line, e.g. "root=/dev/vda rw console=ttyS0").

fetch() keeps a local, read-only copy per digest for booting (instances boot
from qcow2 overlays on it; the golden disk is never written). package() turns
the three files into a local image for catalog.publish(). accelerator() says
whether qemu can use KVM here or has to emulate (TCG).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

from ansible_collections.immutable.infra.plugins.module_utils import _catalog as catalog_mod
from ansible_collections.immutable.infra.plugins.module_utils._names import label
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

LABEL_FORMAT = catalog_mod.LABEL_FORMAT
LABEL_KERNEL_ARGS = label("kernel-args")
FORMAT_VM = "vm"
FORMAT_CONTAINER = "container"
DEFAULT_KERNEL_ARGS = "root=/dev/vda rw console=ttyS0 panic=-1"

# Where each file sits in the image, and its name in the cache.
MEMBERS = {"disk": "disk/disk.qcow2", "kernel": "boot/vmlinuz", "initrd": "boot/initrd.img"}
_CACHE_NAMES = {"disk": "disk.qcow2", "kernel": "vmlinuz", "initrd": "initrd.img"}
_WHAT = {"disk": "disk (/disk/disk.qcow2)", "kernel": "kernel (/boot/vmlinuz)", "initrd": "initrd (/boot/initrd.img)"}

# A 64 KiB -bios blob: from the reset vector it switches to protected mode,
# then long mode, and writes 0x31 to an isa-debug-exit port at 0xf4 (qemu
# exits with status 99). Where KVM only half works (here: /dev/kvm exists, but
# a guest hangs at its first switch to protected mode) it never gets there.
# Built from (GNU as, linked at 0, code placed at 0xF0000):
#   cli; lgdtl %cs:gdtr; cr0 |= PE; ljmpl $0x08,$pm32
#   pm32: load data segments; identity-map 2 MiB at 0x1000-0x3fff; cr3; cr4 |= PAE;
#         EFER |= LME; cr0 |= PG; ljmp $0x18,$lm64
#   lm64: mov $0x31,%al; out %al,$0xf4; hlt
#   gdt: null, code32, data32, code64
_PROBE_CODE = bytes.fromhex(
    "fa2e660f0116a8000f20c06683c8010f22c066ea1a000f00080066b810008ed88ec08ed0bf0010000031c0b9000c0000f3ab"
    "c7050010000003200000c7050020000003300000c7050030000083000000b8001000000f22d80f20e083c8200f22e0b98000"
    "00c00f320d000100000f300f20c00d000000800f22c0ea81000f001800b031e6f4f4ebfd0000000000000000ffff0000009a"
    "cf00ffff00000092cf00ffff0000009aaf001f0088000f00"
)
_PROBE_EXIT = 99


def cache_root(cache_dir=None):
    """${XDG_CACHE_HOME:-~/.cache}/immutable-infra[/vm-images] unless cache_dir is given."""
    if cache_dir:
        return os.path.abspath(os.path.expanduser(cache_dir))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "immutable-infra", "vm-images")


# ------------------------------------------------------------ accelerator
def _probe_blob():
    blob = bytearray(b"\xf4" * 65536)
    blob[0:len(_PROBE_CODE)] = _PROBE_CODE
    blob[0xFFF0:0xFFF5] = bytes([0xEA, 0x00, 0x00, 0x00, 0xF0])   # reset vector: ljmp $0xf000,$0
    return bytes(blob)


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def probe_kvm(qemu="qemu-system-x86_64", timeout=5):
    """True when KVM runs guest code through protected and long mode here."""
    if not (os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)):
        return False
    tmp = tempfile.mkdtemp(prefix="immutable-infra-kvm-probe-")
    try:
        blob = os.path.join(tmp, "probe.bin")
        with open(blob, "wb") as f:
            f.write(_probe_blob())
        argv = [qemu, "-accel", "kvm", "-display", "none", "-nodefaults", "-no-reboot", "-m", "16",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-bios", blob]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False      # subprocess.run kills qemu on timeout
        except FileNotFoundError:
            raise ImmutableInfraError("qemu is not installed (no %r on PATH): install qemu-system-x86" % qemu)
        return proc.returncode == _PROBE_EXIT
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ssh_key(path, comment):
    """A fresh ed25519 key pair at path (private) and path.pub, for one bake or
    one test run to reach a sealed guest: (private key path, public key line)."""
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], what="ssh-keygen (%s)" % comment)
    with open(path + ".pub") as f:
        return path, f.read().strip()


def accelerator(cache_dir=None, qemu="qemu-system-x86_64"):
    """"kvm" when KVM really runs guests here, else "tcg". The answer is kept per
    boot (keyed by the kernel's boot id) in the cache directory's parent."""
    path = os.path.join(os.path.dirname(cache_root(cache_dir)), "accelerator.json")
    boot = _boot_id()
    try:
        with open(path) as f:
            known = json.load(f)
        if boot and known.get("boot_id") == boot and known.get("accelerator") in ("kvm", "tcg"):
            return known["accelerator"]
    except (OSError, ValueError, AttributeError):
        pass
    answer = "kvm" if probe_kvm(qemu) else "tcg"
    if boot:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = "%s.%d.tmp" % (path, os.getpid())
            with open(tmp, "w") as f:
                json.dump({"boot_id": boot, "accelerator": answer}, f)
            os.replace(tmp, path)
        except OSError:
            pass
    return answer


# ------------------------------------------------------------------ disks
def check_disk(path, what=None):
    """Raise unless path is a readable, consistent qcow2 image."""
    what = what or path
    rc, out, err = run(["qemu-img", "info", "--output=json", path], check=False, what="qemu-img info")
    info = json.loads(out) if rc == 0 and out.strip() else {}
    if info.get("format") != "qcow2":
        raise ImmutableInfraError(
            "%s is not a qcow2 disk (qemu-img sees %s): the VM image is corrupt or was packaged wrong; bake it again"
            % (what, info.get("format") or (err.strip().splitlines() or ["nothing readable"])[-1]))
    rc, out, err = run(["qemu-img", "check", "-q", path], check=False, what="qemu-img check")
    if rc != 0:
        detail = (err or out).strip().splitlines()
        raise ImmutableInfraError("%s is a corrupt qcow2 disk (qemu-img check rc=%d: %s); bake it again"
                                  % (what, rc, detail[-1] if detail else "no detail"))
    return info


def import_image(tar_path, labels, cmd, what, podman="podman", timeout=1800):
    """podman import of a tar of files as a local image with these labels and CMD [cmd]; its id.
    Image versions that are not containers (a VM disk, an AMI's ids) travel in the registry this way."""
    argv = [podman, "import", "-q"]
    for k, v in sorted(labels.items()):
        argv += ["--change", "LABEL %s=%s" % (k, json.dumps(str(v)))]
    argv += ["--change", "CMD %s" % json.dumps([cmd]), tar_path]
    _rc, out, _err = run(argv, timeout=timeout, what=what)
    return out.strip().splitlines()[-1]


def package(disk, kernel, initrd, labels, kernel_args=DEFAULT_KERNEL_ARGS, podman="podman"):
    """Package a qcow2 disk with its kernel and initrd as a local OCI image
    (FROM scratch, containerDisk layout) carrying labels plus format=vm and
    kernel-args. Returns the local image id."""
    for key, path in (("kernel", kernel), ("initrd", initrd)):
        if not path or not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise ImmutableInfraError("cannot package the VM image: its %s %r is missing or empty" % (_WHAT[key], path))
    if not disk or not os.path.isfile(disk):
        raise ImmutableInfraError("cannot package the VM image: its disk %r does not exist" % (disk,))
    check_disk(disk, "disk %s" % disk)
    if not kernel_args or not str(kernel_args).strip():
        raise ImmutableInfraError("cannot package the VM image: kernel_args is empty (it needs at least root=...)")
    workdir = tempfile.mkdtemp(prefix="immutable-infra-vmpkg-")
    try:
        tar_path = os.path.join(workdir, "image.tar")
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            for directory in ("disk", "boot"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for key, path in (("disk", disk), ("kernel", kernel), ("initrd", initrd)):
                info = tar.gettarinfo(path, arcname=MEMBERS[key])
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o444
                info.mtime = 0
                with open(path, "rb") as f:
                    tar.addfile(info, f)
        all_labels = dict(labels or {})
        all_labels[LABEL_FORMAT] = FORMAT_VM
        all_labels[LABEL_KERNEL_ARGS] = str(kernel_args).strip()
        return import_image(tar_path, all_labels, "/disk/disk.qcow2", "podman import of the VM image", podman)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------ fetch
def _resolve(reference, registry=None, validate_certs=None):
    """(Catalog of the reference's registry, version facts) of a reference."""
    parts = catalog_mod.parse_reference(reference, default_registry=registry)
    catalog = catalog_mod.Catalog(parts["registry"], validate_certs)
    return catalog, catalog.resolve(reference)


def _ref_key(reference):
    return hashlib.sha256(reference.encode()).hexdigest()[:32]


def _cached(root, digest):
    entry = os.path.join(root, digest.replace(":", "-"))
    meta = os.path.join(entry, "image.json")
    if not os.path.isfile(meta):
        return None
    with open(meta) as f:
        facts = json.load(f)
    out = {key: os.path.join(entry, name) for key, name in _CACHE_NAMES.items()}
    if not all(os.path.isfile(p) for p in out.values()):
        return None
    out.update(kernel_args=facts["kernel_args"], digest=facts["digest"], labels=facts["labels"],
               reference=facts.get("reference"))
    return out


def _known_digest(root, reference):
    """The digest a tag or digest reference was fetched as before (versions are immutable), or None."""
    if "@sha256:" in reference:
        return reference.rsplit("@", 1)[1]
    try:
        with open(os.path.join(root, "refs", _ref_key(reference))) as f:
            ref, digest = f.read().split()
        return digest if ref == reference else None
    except (OSError, ValueError):
        return None


def vm_facts(facts, reference):
    """Raise unless version facts describe a VM image; return its kernel args."""
    labels = facts.get("labels") or {}
    fmt = labels.get(LABEL_FORMAT) or FORMAT_CONTAINER
    if fmt != FORMAT_VM:
        raise ImmutableInfraError(
            "image %s is a %s image (label %s=%s), not a VM image: give a VM image (a recipe's `-vm` repository, "
            "baked from its qemu source)" % (reference, fmt, LABEL_FORMAT, labels.get(LABEL_FORMAT, "absent")))
    args = labels.get(LABEL_KERNEL_ARGS)
    if not args:
        raise ImmutableInfraError("VM image %s has no %s label: it cannot boot without a root= argument; bake it again"
                                  % (reference, LABEL_KERNEL_ARGS))
    return args


def _extract(layer_paths, entry_tmp, reference):
    """Take the three members out of the image's layers (the last layer wins)."""
    found = {}
    for layer in layer_paths:
        with tarfile.open(layer, "r:*") as tar:
            for member in tar:
                name = member.name.lstrip("./").lstrip("/")
                key = next((k for k, m in MEMBERS.items() if m == name), None)
                if key is None or not member.isfile():
                    continue
                target = os.path.join(entry_tmp, _CACHE_NAMES[key])
                src = tar.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                found[key] = target
    missing = [_WHAT[k] for k in MEMBERS if k not in found or os.path.getsize(found[k]) == 0]
    if missing:
        raise ImmutableInfraError("VM image %s lacks its %s: it cannot boot; bake it again with a qemu source"
                                  % (reference, " and ".join(missing)))
    return found


def fetch(reference, cache_dir=None, registry=None, validate_certs=None):
    """A VM image's files in the local cache: {"disk", "kernel", "initrd",
    "kernel_args", "digest", "labels", "reference"}.

    The cache holds one read-only entry per digest under cache_dir; a tag or
    digest reference fetched before is answered without network I/O. An entry
    is written to a temporary directory and renamed into place when complete,
    so a failed fetch leaves nothing in the cache.
    """
    root = cache_root(cache_dir)
    known = _known_digest(root, reference)
    if known:
        hit = _cached(root, known)
        if hit is not None:
            return hit
    catalog, facts = _resolve(reference, registry, validate_certs)
    kernel_args = vm_facts(facts, reference)
    digest = facts["digest"]
    hit = _cached(root, digest)
    if hit is None:
        os.makedirs(root, exist_ok=True)
        entry = os.path.join(root, digest.replace(":", "-"))
        tmp = tempfile.mkdtemp(prefix=".fetch-", dir=root)
        try:
            oci = os.path.join(tmp, "oci")
            run(["skopeo", "copy", "-q", "--src-tls-verify=%s" % ("true" if catalog.validate_certs else "false")]
                + catalog.access.tool_args("src-") + ["docker://" + facts["reference"], "dir:" + oci],
                timeout=1800, what="skopeo copy %s" % facts["reference"])
            with open(os.path.join(oci, "manifest.json")) as f:
                manifest = json.load(f)
            layers = [os.path.join(oci, layer["digest"].split(":", 1)[1]) for layer in manifest.get("layers") or []]
            files = _extract(layers, tmp, reference)
            shutil.rmtree(oci)
            check_disk(files["disk"], "the disk of VM image %s" % reference)
            with open(os.path.join(tmp, "image.json"), "w") as f:
                json.dump({"digest": digest, "reference": facts["reference"], "kernel_args": kernel_args,
                           "labels": facts["labels"]}, f)
            for path in list(files.values()) + [os.path.join(tmp, "image.json")]:
                os.chmod(path, 0o444)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, entry)
            except OSError:
                if _cached(root, digest) is None:     # not a concurrent fetch of the same digest
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        hit = _cached(root, digest)
    if "@" not in reference and catalog_mod.parse_reference(reference, registry)["tag"]:
        refs = os.path.join(root, "refs")
        os.makedirs(refs, exist_ok=True)
        tmp_ref = os.path.join(refs, ".%s.%d" % (_ref_key(reference), os.getpid()))
        with open(tmp_ref, "w") as f:
            f.write("%s %s\n" % (reference, digest))
        os.replace(tmp_ref, os.path.join(refs, _ref_key(reference)))
    return hit
