"""SBOM and seal check at bake, on real bakes of a recipe outside the collection: the SBOM stored
beside the version lists the base's Debian packages with their source packages, the same image
gives the same SBOM bytes, and an unsealed image fails the bake naming what it holds, publishing
nothing."""
from __future__ import annotations

import hashlib
import os
import subprocess
import uuid

from conftest import _collection_import_path, bake_containers, tags
from test_bad_inputs import bake, copy_recipe

_collection_import_path()
from ansible_collections.immutable.infra.plugins.module_utils import _image_files, _sbom  # noqa: E402
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle  # noqa: E402
from ansible_collections.immutable.infra.plugins.module_utils._seal import seal_findings  # noqa: E402

CREATED = "org.opencontainers.image.created"


def local_images(name):
    proc = subprocess.run(["podman", "images", "-q", "--filter", "label=infra.immutable.recipe=%s" % name],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


def test_sbom_is_stored_at_bake_with_source_packages(ansible, registry, base, workdir):
    name = "sbom-%s" % uuid.uuid4().hex[:6]
    rc, res = bake(ansible, registry, recipe=copy_recipe(workdir, name), name=name)
    assert rc == 0, res.get("msg")
    image, summary = res["image"], res["sbom"]
    data = Lifecycle(registry["address"], False).sbom(name, image["digest"])
    assert data is not None and summary["changed"] is True
    print("container SBOM: %d components in %.2fs" % (summary["components"], summary["seconds"]))
    assert summary["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert summary["tag"] == image["digest"].replace(":", "-") + ".sbom" and summary["tag"] in tags(registry, name)
    parsed = _sbom.read_sbom(data)
    assert parsed["os"] == {"id": "debian", "version_id": "12", "codename": "bookworm"}
    comps = {c["name"]: c for c in parsed["components"] if c["type"] == "deb"}
    assert summary["components"] == len(parsed["components"])
    # Source packages as dpkg records them: libc6 comes from glibc, bsdutils from util-linux.
    assert comps["libc6"]["source"] == "glibc" and comps["bsdutils"]["source"] == "util-linux"
    assert "upstream=glibc" in comps["libc6"]["purl"] and comps["libc6"]["purl"].startswith("pkg:deb/debian/libc6@")
    # The base bake stores its own SBOM (the base passes the seal check too).
    base_name = base["image"]["repository"].split("/", 1)[1]
    base_sbom = Lifecycle(registry["address"], False).sbom(base_name, base["image"]["digest"])
    assert base_sbom is not None
    base_listed = {c["name"]: c["version"] for c in _sbom.read_sbom(base_sbom)["components"]}
    assert base_listed and base_listed.items() <= {n: c["version"] for n, c in comps.items()}.items()
    # Every package of the base is listed, at its version.
    subprocess.run(["podman", "pull", "-q", "--tls-verify=false", base["image"]["reference"]], capture_output=True,
                   check=True)
    with _image_files.image_root(base["image"]["reference"]) as root:
        base_packages = _sbom.deb_packages(root)
    assert base_packages and {p["name"]: p["version"] for p in base_packages}.items() <= \
        {n: c["version"] for n, c in comps.items()}.items()
    # The same image gives the same SBOM, byte for byte.
    with _image_files.image_root("%s:%s" % (image["repository"], image["tag"])) as root:
        assert _sbom.build_sbom(root, name, image["labels"][CREATED]) == data
    # A bake of the same inputs is a no-op and stores nothing new.
    before = tags(registry, name)
    rc, again = bake(ansible, registry, recipe=copy_recipe(workdir, name + "-again"), name=name)
    assert rc == 0 and again["changed"] is False and again["image"]["digest"] == image["digest"]
    assert tags(registry, name) == before
    # A bake killed between its push and its SBOM: the next run of the same bake completes the
    # version (the SBOM read from the published image, the same bytes), then is a no-op again.
    lc = Lifecycle(registry["address"], False)
    lc.client.delete_manifest(name, lc.client.head(name, summary["tag"]))
    assert lc.sbom(name, image["digest"]) is None
    rc, repaired = bake(ansible, registry, recipe=copy_recipe(workdir, name + "-repair"), name=name)
    assert rc == 0 and repaired["changed"] is True and repaired["image"]["digest"] == image["digest"], repaired
    assert repaired["sbom"]["changed"] is True and lc.sbom(name, image["digest"]) == data
    rc, last = bake(ansible, registry, recipe=copy_recipe(workdir, name + "-last"), name=name)
    assert rc == 0 and last["changed"] is False and tags(registry, name) == before


def test_an_unsealed_image_fails_the_bake_and_publishes_nothing(ansible, registry, base, workdir):
    name = "unsealed-%s" % uuid.uuid4().hex[:6]
    planted = (
        "    - name: Make root's SSH directory\n"
        "      ansible.builtin.file: {path: /root/.ssh, state: directory, mode: \"0700\"}\n"
        "    - name: Leave a private key behind\n"
        "      ansible.builtin.copy: {dest: /root/.ssh/id_rsa, content: \"not really a key\\n\", mode: \"0600\"}\n"
        "    - name: Leave a machine id behind\n"
        "      ansible.builtin.copy: {dest: /etc/machine-id, content: \"0123456789abcdef0123456789abcdef\\n\", "
        "mode: \"0444\"}\n")
    rc, res = bake(ansible, registry, recipe=copy_recipe(workdir, name, planted), name=name)
    assert rc != 0 and res.get("failed"), res
    assert "image %s:1 is not sealed" % name in res["msg"], res["msg"]
    assert "/root/.ssh/id_rsa (private key)" in res["msg"] and "/etc/machine-id (machine id" in res["msg"]
    assert "seal_allow" in res["msg"]
    assert {f["path"] for f in res["seal_findings"]} == {"/root/.ssh/id_rsa", "/etc/machine-id"}
    assert tags(registry, name) == []
    assert local_images(name) == []
    assert [c for c in bake_containers() if c.startswith("immutable-bake-%s-" % name)] == []


def test_a_vm_bake_is_sealed_and_stores_its_sbom(web_vm_image, registry):
    """The web recipe's VM (its seal role applied, the base VM making its host key at boot) passes the seal
    check; its SBOM is read from the qcow2's ext4 file system and lists the kernel and sshd."""
    image, summary = web_vm_image["image"], web_vm_image["sbom"]
    data = Lifecycle(registry["address"], False).sbom("vmweb-vm", image["digest"])
    assert data is not None and summary["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    comps = {c["name"]: c for c in _sbom.read_sbom(data)["components"]}
    assert comps["openssh-server"]["source"] == "openssh"
    assert any(n.startswith("linux-image-") for n in comps), sorted(comps)
    print("VM SBOM: %d components in %.2fs" % (summary["components"], summary["seconds"]))


def test_a_vm_disk_is_read_through_debugfs(tmp_path):
    """_image_files.disk_root on a real ext4 qcow2 (no partition table, as VM images are): the paths the
    checks read are copied out, links stay links, and what is planted is found."""
    tree = tmp_path / "tree"
    for rel, text in {"etc/os-release.real": "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
                      "var/lib/dpkg/status": "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n"
                                             "Source: glibc\nVersion: 2.36-9+deb12u9\n",
                      "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA": "Name: six\nVersion: 1.16.0\n",
                      "usr/lib/python3/dist-packages/big.py": "x" * 100000,
                      "root/.ssh/id_ed25519": "key", "etc/machine-id": "", "usr/share/doc/x": "not read",
                      "etc/ssh/ssh_host_ed25519_key": "key", "var/lib/app/.psql_history": "select 1;\n"}.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    (tree / "etc/os-release").symlink_to("/etc/os-release.real")   # absolute: resolved inside the image
    raw, disk = str(tmp_path / "disk.raw"), str(tmp_path / "disk.qcow2")
    subprocess.run(["truncate", "-s", "64M", raw], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), raw], check=True, capture_output=True)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, disk], check=True)
    with _image_files.disk_root(disk) as root:
        assert not os.path.exists(os.path.join(root, "usr/share/doc/x"))
        assert not os.path.exists(os.path.join(root, "usr/lib/python3/dist-packages/big.py"))
        assert seal_findings(root) == [{"path": "/etc/ssh/ssh_host_ed25519_key", "what": "SSH host key"},
                                       {"path": "/root/.ssh/id_ed25519", "what": "private key"},
                                       {"path": "/var/lib/app/.psql_history", "what": "shell history"}]
        parsed = _sbom.read_sbom(_sbom.build_sbom(root, "disk", "2026-11-30T12:00:00Z"))
    assert parsed["os"]["codename"] == "bookworm"
    assert [(c["name"], c["source"]) for c in parsed["components"]] == [("libc6", "glibc"), ("six", "six")]
