"""Bad VM images: a parent VM image without its kernel or initrd, a corrupt
qcow2, a container image where a VM image is needed. Each is a clear error,
and nothing is left behind: no tag, no cache entry, no temporary directory."""
from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import tempfile
import uuid

import pytest

from conftest import TOP, tags, vm_cache_dir

BAKE = os.path.join(TOP, "playbooks", "bake.yml")


def push_image(registry, workdir, name, files, labels):
    """Push a one-layer image FROM scratch holding `files` ({path in image: bytes}) with `labels`."""
    tmp = tempfile.mkdtemp(prefix="badvm-", dir=workdir)
    tar_path = os.path.join(tmp, "layer.tar")
    with tarfile.open(tar_path, "w") as tar:
        for path, data in files.items():
            src = os.path.join(tmp, path.replace("/", "_"))
            with open(src, "wb") as f:
                f.write(data)
            tar.add(src, arcname=path)
    argv = ["podman", "import", "-q"]
    for k, v in labels.items():
        argv += ["--change", "LABEL %s=%s" % (k, json.dumps(v))]
    image_id = subprocess.run(argv + [tar_path], capture_output=True, text=True, check=True).stdout.strip()
    target = "%s/%s:1" % (registry["address"], name)
    subprocess.run(["podman", "tag", image_id, target], check=True)
    subprocess.run(["podman", "push", "-q", "--tls-verify=false", target], check=True, capture_output=True)
    subprocess.run(["podman", "rmi", "-f", image_id], capture_output=True, check=False)
    return target


def qcow2(workdir):
    path = os.path.join(workdir, "tiny-%s.qcow2" % uuid.uuid4().hex[:6])
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "16M"], check=True)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


VM = {"infra.immutable.format": "vm", "infra.immutable.kernel-args": "root=/dev/vda rw console=ttyS0"}
CASES = {
    "no-initrd": (lambda disk: {"disk/disk.qcow2": disk, "boot/vmlinuz": b"kernel"}, VM,
                  r"lacks its initrd \(/boot/initrd.img\)"),
    "no-kernel": (lambda disk: {"disk/disk.qcow2": disk, "boot/initrd.img": b"initrd"}, VM,
                  r"lacks its kernel \(/boot/vmlinuz\)"),
    "corrupt-disk": (lambda disk: {"disk/disk.qcow2": b"QFI\xfb" + os.urandom(4096), "boot/vmlinuz": b"k",
                                   "boot/initrd.img": b"i"}, VM, "corrupt|not a qcow2 disk"),
    "container": (lambda disk: {"etc/hostname": b"x\n"}, {}, "is a container image .*not a VM image"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_parent_vm_image_is_refused_leaving_nothing(case, env, workdir, registry):
    members, labels, message = CASES[case]
    bad = push_image(registry, workdir, "bad%s-vm" % uuid.uuid4().hex[:6], members(qcow2(workdir)), labels)
    name = "badchild%s" % uuid.uuid4().hex[:6]
    tmp = tempfile.mkdtemp(prefix="bad-tmp-", dir=workdir)
    cache = vm_cache_dir(env)
    before = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    vars_file = os.path.join(workdir, "bad-%s.json" % uuid.uuid4().hex[:6])
    with open(vars_file, "w") as f:
        json.dump({"catalog_registry": registry["address"], "recipe": "web", "recipe_name": name, "bake_only": "vm",
                   "recipe_vm_parent": bad}, f)
    proc = subprocess.run(["ansible-playbook", BAKE, "-e", "@" + vars_file], env=dict(env, TMPDIR=tmp), cwd=TOP,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode != 0
    assert any(re.search(message, line) and bad.rsplit(":", 1)[0] in line for line in proc.stdout.splitlines()), \
        proc.stdout[-3000:]
    assert tags(registry, name + "-vm") == [] and tags(registry, name) == []
    assert (sorted(os.listdir(cache)) if os.path.isdir(cache) else []) == before
    assert os.listdir(tmp) == [], "temporary files left behind: %s" % os.listdir(tmp)
