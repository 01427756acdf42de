"""SBOM building and reading (_sbom) on a planted image tree: dpkg status with Source fields and
epochs, Python distributions, os-release; the same files give the same bytes."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _sbom as sbom
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

STATUS = """\
Package: bsdutils
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5+deb12u3)
Version: 1:2.38.1-5+deb12u3

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.15-1~deb12u1

Package: adduser
Status: install ok installed
Architecture: all
Version: 3.134

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
"""
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'


def plant(root, status=STATUS, python=True):
    def write(rel, text):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    write("etc/os-release", OS_RELEASE)
    write("var/lib/dpkg/status", status)
    if python:
        write("usr/lib/python3/dist-packages/Jinja2-3.1.2.dist-info/METADATA", "Name: Jinja2\nVersion: 3.1.2\n\nbody\n")
        write("usr/local/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
              "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n")
        write("usr/lib/python3/dist-packages/six-1.16.0.egg-info", "Name: six\nVersion: 1.16.0\n")
    return str(root)


def by_name(parsed):
    return {c["name"]: c for c in parsed["components"]}


def test_sbom_lists_debian_packages_with_source_names_and_versions(tmp_path):
    parsed = sbom.read_sbom(sbom.build_sbom(plant(tmp_path), "web", "2026-11-30T12:00:00Z"))
    assert parsed["os"] == {"id": "debian", "version_id": "12", "codename": "bookworm"}
    comps = by_name(parsed)
    assert "removed-one" not in comps  # only installed packages
    assert comps["bsdutils"] == {
        "type": "deb", "name": "bsdutils", "version": "1:2.38.1-5+deb12u3", "arch": "amd64",
        "source": "util-linux", "source_version": "2.38.1-5+deb12u3",
        "purl": "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=util-linux"}
    # Source without a version: the binary's version; no Source at all: the binary itself.
    assert (comps["libssl3"]["source"], comps["libssl3"]["source_version"]) == ("openssl", "3.0.15-1~deb12u1")
    assert (comps["adduser"]["source"], comps["adduser"]["source_version"]) == ("adduser", "3.134")
    assert "upstream" not in comps["adduser"]["purl"]


def test_sbom_lists_python_distributions(tmp_path):
    comps = by_name(sbom.read_sbom(sbom.build_sbom(plant(tmp_path), "web", "2026-11-30T12:00:00Z")))
    assert comps["Jinja2"]["purl"] == "pkg:pypi/jinja2@3.1.2"
    assert comps["requests"]["type"] == "pypi" and comps["requests"]["version"] == "2.31.0"
    assert comps["six"]["version"] == "1.16.0"


def test_sbom_is_cyclonedx_1_6_with_the_creation_time(tmp_path):
    doc = json.loads(sbom.build_sbom(plant(tmp_path), "web", "2026-11-30T12:00:00.123456789Z"))
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    assert doc["metadata"]["timestamp"] == "2026-11-30T12:00:00+00:00"
    assert doc["serialNumber"].startswith("urn:uuid:")


def test_same_files_give_the_same_bytes(tmp_path):
    a = sbom.build_sbom(plant(tmp_path / "a"), "web", "2026-11-30T12:00:00Z")
    # The same packages in another order, in another directory: the same document.
    paras = STATUS.strip().split("\n\n")
    b = sbom.build_sbom(plant(tmp_path / "b", status="\n\n".join(reversed(paras)) + "\n"), "web",
                        "2026-11-30T12:00:00Z")
    assert a == b
    # A changed package changes the document and its serial number.
    c = sbom.build_sbom(plant(tmp_path / "c", status=STATUS.replace("3.134", "3.135")), "web", "2026-11-30T12:00:00Z")
    assert c != a
    assert json.loads(c)["serialNumber"] != json.loads(a)["serialNumber"]


def test_summary_counts_components_by_type(tmp_path):
    data = sbom.build_sbom(plant(tmp_path), "web", "2026-11-30T12:00:00Z")
    summ = sbom.summary(data)
    assert summ["components"] == 6 and summ["types"] == {"deb": 3, "pypi": 3}
    assert summ["digest"].startswith("sha256:")


def test_an_image_without_dpkg_gives_an_empty_sbom(tmp_path):
    parsed = sbom.read_sbom(sbom.build_sbom(str(tmp_path), "scratch", "2026-11-30T12:00:00Z"))
    assert parsed == {"os": {"id": "", "version_id": "", "codename": ""}, "components": []}


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"bomFormat": "SPDX"}'])
def test_read_sbom_refuses_what_is_not_cyclonedx(data):
    with pytest.raises(ImmutableInfraError, match="SBOM"):
        sbom.read_sbom(data)


def test_a_missing_creation_time_is_refused(tmp_path):
    with pytest.raises(ImmutableInfraError, match="creation time"):
        sbom.build_sbom(plant(tmp_path), "web", "")
