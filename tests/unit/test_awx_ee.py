"""The execution environment, offline: `ansible-builder create` on execution-environment.yml gives a build
context with the collection and its requirements; ansible-builder's own introspection of the installed
collection (meta/execution-environment.yml) yields its Python libraries and system packages; and those
cover what the collection's code imports and runs."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys

import ansible_builder
import pytest
import yaml

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
INTROSPECT = os.path.join(os.path.dirname(ansible_builder.__file__), "_target_scripts", "introspect.py")
# Third-party imports of plugins/ (always inside try/except ImportError) -> their distributions.
DISTRIBUTIONS = {"boto3": "boto3", "botocore": "botocore", "debian": "python-debian", "cyclonedx": "cyclonedx-python-lib",
                 "jsonschema": "jsonschema", "cvss": "cvss"}
# Brought by a listed requirement: ansible-core (PyYAML, packaging), cyclonedx-python-lib (packageurl-python).
BROUGHT = {"yaml": "ansible-core", "packaging": "ansible-core", "packageurl": "cyclonedx-python-lib"}
# Optional speed-ups the code falls back from (never required).
OPTIONAL_IMPORTS = {"apt_pkg"}
# CLIs the modules run that an EE must carry, and the ones that are host services on purpose (docs/awx.md).
EE_TOOLS = {"git": "git", "skopeo": "skopeo", "gpg": "gnupg2", "gpgconf": "gnupg2", "ssh": "openssh-clients",
            "ssh-keygen": "openssh-clients", "qemu-img": "qemu-img", "debugfs": "e2fsprogs"}
HOST_TOOLS = {"podman", "virsh", "mmdebstrap", "apt-get"}
DEFINITION_TOOLS = {"packer"}                                 # installed by execution-environment.yml itself
BASE_TOOLS = {"id", "ps", "rm", "truncate", "shutdown", "open"}       # in any base image (or run inside an instance)


def _env(tmp_path):
    return dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], HOME=str(tmp_path / "home"),
                ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The collection tarball and the builder context made from the EE definition, in a temporary copy."""
    tmp = tmp_path_factory.mktemp("ee")
    env = _env(tmp)
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(tmp),
                    TOP], env=env, check=True, capture_output=True)
    (tmp / ".cache" / "ee").mkdir(parents=True)
    shutil.copy(next(tmp.glob("immutable-infra-*.tar.gz")), tmp / ".cache" / "ee" / "immutable-infra.tar.gz")
    shutil.copy(os.path.join(TOP, "execution-environment.yml"), tmp / "execution-environment.yml")
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml", "-c",
                           "context"], cwd=tmp, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp


def test_the_definition_is_ansible_builder_v3():
    with open(os.path.join(TOP, "execution-environment.yml")) as f:
        ee = yaml.safe_load(f)
    assert ee["version"] == 3
    assert ee["dependencies"]["ansible_core"]["package_pip"].startswith("ansible-core")
    assert ee["dependencies"]["ansible_runner"]["package_pip"].startswith("ansible-runner")


def test_create_puts_the_collection_and_its_dependencies_in_the_context(built):
    ctx = built / "context"
    containerfile = (ctx / "Containerfile").read_text()
    with open(ctx / "_build" / "requirements.yml") as f:
        galaxy = yaml.safe_load(f)["collections"]
    ours = [c for c in galaxy if c.get("type") == "file"]
    assert ours == [{"name": "collection/immutable-infra.tar.gz", "type": "file"}]
    assert (ctx / "_build" / "collection" / "immutable-infra.tar.gz").is_file()
    with open(os.path.join(TOP, "galaxy.yml")) as f:
        for dependency in yaml.safe_load(f)["dependencies"]:
            assert dependency in [c["name"] for c in galaxy], "galaxy.yml dependency %s not in the EE" % dependency
    assert "ansible-galaxy collection install" in containerfile and "COPY _build /build" in containerfile
    assert "introspect.py introspect" in containerfile                # the collection's own requirements
    assert "ansible-core>=2.19" in containerfile and "ansible-runner>=2.4" in containerfile
    assert "install -y packer" in containerfile


def test_ansible_builder_introspects_the_installed_collection(built):
    cols = built / "cols"
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p",
                           str(cols), str(built / ".cache" / "ee" / "immutable-infra.tar.gz")],
                          env=_env(built), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([sys.executable, INTROSPECT, "introspect", str(cols)], capture_output=True, text=True, check=True)
    found = yaml.safe_load(out.stdout)
    python = {re.split(r"[<>=\s]", line, maxsplit=1)[0] for line in found["python"]}
    system = {line.split()[0] for line in found["system"]}
    assert set(DISTRIBUTIONS.values()) <= python, python
    assert not python & {"ansible-lint", "molecule", "moto", "pytest"}, "developer tools leaked into the EE: %s" % python
    assert set(EE_TOOLS.values()) <= system, system
    assert not system & {"podman", "haproxy", "libvirt-daemon", "docker-registry"}, system


def _plugin_sources():
    for root, _dirs, files in os.walk(os.path.join(TOP, "plugins")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    yield f.read()


def test_every_third_party_import_is_an_ee_requirement():
    imported = set()
    for source in _plugin_sources():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    stdlib = set(sys.stdlib_module_names) | {"ansible", "ansible_collections", "__future__"}
    third_party = imported - stdlib - OPTIONAL_IMPORTS - set(BROUGHT)
    assert "boto3" in third_party                                   # the scan sees the guarded imports
    assert third_party <= set(DISTRIBUTIONS), "imported but not mapped to an EE requirement: %s" % (
        third_party - set(DISTRIBUTIONS))
    with open(os.path.join(TOP, "meta", "ee-requirements.txt")) as f:
        listed = {re.split(r"[<>=\s]", line, maxsplit=1)[0] for line in f if line.strip() and not line.startswith("#")}
    assert {DISTRIBUTIONS[m] for m in third_party} <= listed


def test_every_cli_the_modules_run_is_in_the_ee_or_a_documented_host_service():
    run = set()
    for source in _plugin_sources():
        run |= set(re.findall(r'\[\s*"([a-z][\w-]*)"\s*,', source))
    tools = {t for t in run if shutil.which(t) or t in EE_TOOLS or t in HOST_TOOLS} - BASE_TOOLS - DEFINITION_TOOLS
    with open(os.path.join(TOP, "execution-environment.yml")) as f:
        definition = f.read()
    assert all("install -y %s" % t in definition for t in DEFINITION_TOOLS)
    assert {"git", "skopeo", "podman", "qemu-img"} <= tools          # the scan finds the argv lists
    with open(os.path.join(TOP, "bindep.txt")) as f:
        bindep = {line.split()[0] for line in f if line.strip() and not line.startswith("#")}
    with open(os.path.join(TOP, "docs", "awx.md")) as f:
        doc = f.read()
    for tool in tools:
        if tool in EE_TOOLS:
            assert EE_TOOLS[tool] in bindep, tool
        else:
            assert tool in HOST_TOOLS, "%s is run by the modules: add it to bindep.txt or document it" % tool
            assert "`%s`" % tool in doc, "docs/awx.md does not say why %s is not in the EE" % tool
