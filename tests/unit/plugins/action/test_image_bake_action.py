"""The image_bake action's bookkeeping: where the bake log goes, and which
bakes it leaves to the module without looking at the catalog."""
from __future__ import annotations

import os
import re

import pytest

from ansible_collections.immutable.infra.plugins.action.image_bake import catalog_hit, log_path
from ansible_collections.immutable.infra.plugins.module_utils import _catalog
from ansible_collections.immutable.infra.plugins.module_utils._packer import fingerprint


def test_log_path_defaults_to_the_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("IMMUTABLE_INFRA_STATE_DIR", str(tmp_path))
    path = log_path("", "/somewhere/recipes/web/")
    assert os.path.dirname(path) == os.path.join(str(tmp_path), "bake-logs")
    assert re.fullmatch(r"web-\d{8}T\d{6}Z-[0-9a-f]{4}\.log", os.path.basename(path)), path


def test_log_path_in_a_given_directory_is_unique(tmp_path):
    paths = {log_path(str(tmp_path), "/r/api") for _i in range(20)}
    assert len(paths) == 20 and all(os.path.dirname(p) == str(tmp_path) for p in paths)


PARENT = "sha256:" + "0" * 64
VM_PARENT = "sha256:" + "1" * 64


class FakeCatalog:
    """The catalog interface the shortcut reads; holds one version of each given fingerprint, if any."""

    holds = ()
    without_sbom = ()

    def __init__(self, registry, validate_certs=None):
        self.registry = registry
        self.client = self

    def head(self, name, tag):
        """The registry's HEAD of a record tag: every version has its SBOM but those in without_sbom."""
        return None if tag in [fp.replace(":", "-") + ".sbom" for fp in self.without_sbom] else "sha256:" + "e" * 64

    def resolve(self, ref):
        if ref.endswith("-vm"):
            return {"digest": VM_PARENT, "reference": ref,
                    "labels": {"infra.immutable.format": "vm", "infra.immutable.kernel-args": "root=/dev/vda"}}
        return {"digest": PARENT, "reference": ref}

    def list_tags(self, name):
        return ["1"] if self.holds else []

    def find_fingerprint(self, name, fp, tags=None):
        return ({"version": "1", "fingerprint": fp, "digest": fp, "repository": "127.0.0.1:5000/" + name}
                if fp in self.holds else None)


SOURCES = 'source "docker" "container" {}\nsource "qemu" "vm" {}\n'


def fp_of(recipe, source, parent=PARENT):
    return fingerprint(recipe["recipe"], [], {"a": 1}, parent, None, [], [source])


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    (tmp_path / "sources.pkr.hcl").write_text(SOURCES)
    (tmp_path / "build.pkr.hcl").write_text("build {}\n")
    monkeypatch.setattr(_catalog, "Catalog", FakeCatalog)
    return {"recipe": str(tmp_path), "registry": "127.0.0.1:1", "parent": "immutable/base", "variables": {"a": 1}}


def test_a_version_with_the_same_inputs_is_returned_unchanged(recipe, monkeypatch):
    recipe = dict(recipe, only=["container"])
    assert catalog_hit(recipe) is None  # an empty catalog: the module bakes
    fp = fp_of(recipe, "docker.container")
    monkeypatch.setattr(FakeCatalog, "holds", (fp,))
    hit = catalog_hit(recipe)
    assert hit["changed"] is False and hit["image"]["version"] == "1" and hit["image"]["fingerprint"] == fp
    assert hit["name"] == os.path.basename(recipe["recipe"]) and hit["parent"]["digest"].startswith("sha256:0")
    assert hit["format"] == "container" and [o["source"] for o in hit["outputs"]] == ["docker.container"]
    assert catalog_hit(dict(recipe, variables={"a": 2})) is None  # other inputs


def test_each_source_is_its_own_version_and_a_hit_needs_them_all(recipe, monkeypatch):
    container, vm = fp_of(recipe, "docker.container"), fp_of(recipe, "qemu.vm", VM_PARENT)
    assert container != vm
    recipe = dict(recipe, only=["container", "vm"])
    monkeypatch.setattr(FakeCatalog, "holds", (container,))
    assert catalog_hit(recipe) is None                       # both: the VM is missing, the module bakes it
    assert catalog_hit(dict(recipe, only=["qemu.vm"])) is None
    monkeypatch.setattr(FakeCatalog, "holds", (container, vm))
    hit = catalog_hit(recipe)
    assert [(o["source"], o["format"], o["name"], o["parent"]["digest"], o["changed"]) for o in hit["outputs"]] == [
        ("docker.container", "container", os.path.basename(recipe["recipe"]), PARENT, False),
        ("qemu.vm", "vm", os.path.basename(recipe["recipe"]) + "-vm", VM_PARENT, False)]
    assert hit["changed"] is False and catalog_hit(dict(recipe, only=["vm"]))["name"].endswith("-vm")


@pytest.mark.parametrize("args", [
    {"force": True}, {"force": "yes"}, {"variables": "not a dict"}, {"validate_certs": "maybe"},
])
def test_the_module_decides_what_the_shortcut_does_not_read(args, recipe, monkeypatch):
    monkeypatch.setattr(FakeCatalog, "holds", (fp_of(recipe, "docker.container"), fp_of(recipe, "qemu.vm", VM_PARENT)))
    assert catalog_hit(recipe) is not None
    assert catalog_hit(dict(recipe, **args)) is None


def test_errors_are_left_to_the_module(tmp_path):
    assert catalog_hit({"recipe": str(tmp_path / "missing"), "registry": "127.0.0.1:1"}) is None
    (tmp_path / "build.pkr.hcl").write_text("")
    assert catalog_hit({"recipe": str(tmp_path), "registry": "127.0.0.1:1", "parent": "immutable/base"}) is None


def test_a_version_without_its_sbom_goes_to_the_module_which_completes_it(recipe, monkeypatch):
    fp = fp_of(recipe, "docker.container")
    monkeypatch.setattr(FakeCatalog, "holds", (fp,))
    assert catalog_hit(dict(recipe, only=["docker.container"])) is not None
    monkeypatch.setattr(FakeCatalog, "without_sbom", (fp,))
    assert catalog_hit(dict(recipe, only=["docker.container"])) is None


def test_an_ami_version_is_a_hit_without_an_sbom_and_its_regions_are_inputs(recipe, monkeypatch):
    with open(os.path.join(recipe["recipe"], "sources.pkr.hcl"), "w") as f:
        f.write(SOURCES + 'source "amazon-ebs" "ami" {}\n')
    args = dict(recipe, only=["ami"], ami_regions=["us-east-1"], ami_communicator="ssh")
    fp = fingerprint(recipe["recipe"], [], {"a": 1}, None, None, [], ["amazon-ebs.ami"],
                     extra={"regions": ["us-east-1"], "communicator": "ssh"})
    monkeypatch.setattr(FakeCatalog, "holds", (fp,))
    monkeypatch.setattr(FakeCatalog, "without_sbom", (fp,))
    real = FakeCatalog.find_fingerprint

    def find_ami(self, name, f, tags=None):
        found = real(self, name, f, tags)
        return dict(found, format="ami") if found else None
    monkeypatch.setattr(FakeCatalog, "find_fingerprint", find_ami)
    hit = catalog_hit(args)
    assert hit["changed"] is False and hit["name"].endswith("-ami") and hit["outputs"][0]["format"] == "ami"
    assert hit["parent"] is None                                      # an AMI starts from a source AMI
    assert catalog_hit(dict(args, ami_regions=["us-east-1", "eu-west-1"])) is None
    assert catalog_hit(dict(args, ami_communicator="none")) is None   # and the recipe has no offline variant
