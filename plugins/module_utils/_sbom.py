# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SBOMs of image versions: CycloneDX 1.6 JSON built from an image's files.

build_sbom(root, image_name, created) reads, under the image's root directory
(never running the image):
  etc/os-release (or usr/lib/os-release)     the OS: id, version_id, codename
  var/lib/dpkg/status                        installed Debian packages, with their
                                             source package (dpkg's Source field)
  usr/lib/python3*/dist-packages,            Python distributions (*.dist-info /
  usr/local/lib/python3*/{dist,site}-packages *.egg-info METADATA or PKG-INFO)
and returns the document's bytes. The same files give the same bytes: sorted
components, bom-refs from the purls, the timestamp is `created` (the image's
creation label), the serial number a uuid5 of the content.

read_sbom(data) turns such a document back into
  {"os": {"id", "version_id", "codename"},
   "components": [{"type": "deb"|"pypi", "name", "version", "arch", "source",
                   "source_version", "purl"}]}
which is the only way the rest of the collection reads SBOMs.
"""

from __future__ import annotations

import datetime
import email.parser
import glob
import hashlib
import json
import os
import re
import uuid

from ansible_collections.immutable.infra.plugins.module_utils._image_files import inside
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

try:
    from debian import deb822
    HAS_DEBIAN = True
    DEBIAN_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported when used
    HAS_DEBIAN = False
    DEBIAN_IMPORT_ERROR = exc

try:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL
    HAS_CYCLONEDX = True
    CYCLONEDX_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported when used
    HAS_CYCLONEDX = False
    CYCLONEDX_IMPORT_ERROR = exc

# Property names (CycloneDX properties are free-form; these are ours).
PROP = "immutable-infra:"
PROP_OS_ID = PROP + "os:id"
PROP_OS_VERSION_ID = PROP + "os:version_id"
PROP_OS_CODENAME = PROP + "os:codename"
PROP_SOURCE = PROP + "deb:source"
PROP_SOURCE_VERSION = PROP + "deb:source_version"
PROP_ARCH = PROP + "arch"
PROP_TYPE = PROP + "type"
# Namespace of the serial numbers (uuid5 of the document's content).
SERIAL_NAMESPACE = uuid.UUID("6f1c1c1e-3f3a-5b8e-9a53-1a2b3c4d5e6f")

PYTHON_DIRS = ("usr/lib/python3*/dist-packages", "usr/lib/python3*/site-packages",
               "usr/local/lib/python3*/dist-packages", "usr/local/lib/python3*/site-packages")
_SOURCE_RE = re.compile(r"^\s*(\S+)(?:\s+\(([^)]+)\))?\s*$")


def require_libraries():
    """ImmutableInfraError naming the missing library (the SBOM needs both)."""
    if not HAS_DEBIAN:
        raise ImmutableInfraError("python-debian is required to read dpkg's status (%s): run make setup "
                                  "or pip install python-debian" % DEBIAN_IMPORT_ERROR)
    if not HAS_CYCLONEDX:
        raise ImmutableInfraError("cyclonedx-python-lib is required to write SBOMs (%s): run make setup "
                                  "or pip install cyclonedx-python-lib" % CYCLONEDX_IMPORT_ERROR)


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def read_os_release(root):
    """{"id", "version_id", "codename", "name"} from etc/os-release (empty strings when absent)."""
    text = None
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = inside(root, rel)
        text = _read_text(path) if path else None
        if text is not None:
            break
    text = text or ""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key.strip()] = value
    return {"id": values.get("ID", ""), "version_id": values.get("VERSION_ID", ""),
            "codename": values.get("VERSION_CODENAME", ""), "name": values.get("PRETTY_NAME", "")}


def split_source(field, name, version):
    """dpkg's Source field ("src" or "src (ver)") -> (source, source_version), defaulting to the binary's."""
    match = _SOURCE_RE.match(field or "")
    if not match:
        return name, version
    return match.group(1), match.group(2) or version


def deb_packages(root):
    """Installed packages of <root>/var/lib/dpkg/status: [{"name", "version", "arch", "source", "source_version"}]."""
    require_libraries()
    path = inside(root, "var/lib/dpkg/status")
    if not path or not os.path.isfile(path):
        return []
    packages = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for para in deb822.Packages.iter_paragraphs(handle, use_apt_pkg=False):
            status = para.get("Status", "").split()
            if len(status) < 3 or status[2] not in ("installed", "half-configured", "unpacked", "triggers-awaited",
                                                    "triggers-pending"):
                continue
            name, version = para.get("Package"), para.get("Version")
            if not name or not version:
                continue
            source, source_version = split_source(para.get("Source"), name, version)
            packages.append({"name": name, "version": version, "arch": para.get("Architecture", ""),
                             "source": source, "source_version": source_version})
    return packages


def _metadata_file(entry):
    for name in ("METADATA", "PKG-INFO"):
        candidate = os.path.join(entry, name)
        if os.path.isfile(candidate):
            return candidate
    return entry if os.path.isfile(entry) else None  # a bare foo.egg-info file


def python_packages(root):
    """Python distributions installed under the image's dist/site-packages: [{"name", "version", "path"}]."""
    found = {}
    for pattern in PYTHON_DIRS:
        for directory in sorted(glob.glob(os.path.join(root, pattern))):
            for entry in sorted(os.listdir(directory)):
                if not entry.endswith((".dist-info", ".egg-info")):
                    continue
                meta = _metadata_file(os.path.join(directory, entry))
                text = _read_text(meta) if meta else None
                if not text:
                    continue
                headers = email.parser.Parser().parsestr(text, headersonly=True)
                name, version = headers.get("Name"), headers.get("Version")
                if not name or not version:
                    continue
                name, version = name.strip(), version.strip()
                key = (re.sub(r"[-_.]+", "-", name).lower(), version)
                found.setdefault(key, {"name": name, "version": version,
                                       "path": os.path.relpath(directory, root)})
    return [found[key] for key in sorted(found)]


def _deb_purl(pkg, os_info):
    qualifiers = {"arch": pkg["arch"]} if pkg["arch"] else {}
    if os_info.get("id") and os_info.get("version_id"):
        qualifiers["distro"] = "%s-%s" % (os_info["id"], os_info["version_id"])
    if (pkg["source"], pkg["source_version"]) != (pkg["name"], pkg["version"]):
        qualifiers["upstream"] = pkg["source"]  # its version is in the component's properties
    return PackageURL(type="deb", namespace=os_info.get("id") or "debian", name=pkg["name"],
                      version=pkg["version"], qualifiers=qualifiers)


def _created(created):
    """The image's creation label -> an aware datetime (UTC); ImmutableInfraError when unreadable."""
    if isinstance(created, datetime.datetime):
        value = created
    else:
        text = str(created or "").strip()
        if not text:
            raise ImmutableInfraError("the SBOM needs the image's creation time (the created label), got %r"
                                      % (created,))
        text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
        try:
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ImmutableInfraError("the image's creation time %r is not ISO 8601" % (created,))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).replace(microsecond=0)


def _properties(pairs):
    return [Property(name=key, value=str(value)) for key, value in pairs if value not in (None, "")]


def build_sbom(root, image_name, created):
    """CycloneDX 1.6 JSON (bytes) of the image whose files are under root; deterministic (see the module doc)."""
    require_libraries()
    os_info = read_os_release(root)
    components = []
    for pkg in deb_packages(root):
        purl = _deb_purl(pkg, os_info)
        components.append(Component(
            type=ComponentType.LIBRARY,
            name=pkg["name"], version=pkg["version"], purl=purl, bom_ref=purl.to_string(),
            properties=_properties([(PROP_TYPE, "deb"), (PROP_ARCH, pkg["arch"]), (PROP_SOURCE, pkg["source"]),
                                    (PROP_SOURCE_VERSION, pkg["source_version"])])))
    for pkg in python_packages(root):
        purl = PackageURL(type="pypi", name=re.sub(r"[-_.]+", "-", pkg["name"]).lower(), version=pkg["version"])
        ref = purl.to_string()
        if any(str(c.bom_ref) == ref for c in components):
            continue
        components.append(Component(type=ComponentType.LIBRARY, name=pkg["name"], version=pkg["version"], purl=purl,
                                    bom_ref=ref, properties=_properties([(PROP_TYPE, "pypi")])))
    components.sort(key=lambda c: str(c.bom_ref))
    # The serial number is a uuid5 of what the SBOM says, so it changes only with the content.
    content = json.dumps([image_name, str(created), os_info, [str(c.bom_ref) for c in components]],
                         sort_keys=True).encode()
    serial = uuid.uuid5(SERIAL_NAMESPACE, hashlib.sha256(content).hexdigest())
    bom = Bom(serial_number=serial, components=components)
    bom.metadata.timestamp = _created(created)
    bom.metadata.component = image = Component(
        type=ComponentType.CONTAINER, name=str(image_name), bom_ref="image",
        properties=_properties([(PROP_OS_ID, os_info["id"]), (PROP_OS_VERSION_ID, os_info["version_id"]),
                                (PROP_OS_CODENAME, os_info["codename"])]))
    bom.register_dependency(image, components)  # the image holds every component
    text = JsonV1Dot6(bom).output_as_string(indent=None)
    # Re-serialise with sorted keys: the library's key order is its own business, the bytes are ours.
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")).encode("utf-8")


def _props(item):
    return {p.get("name"): p.get("value") for p in item.get("properties") or [] if isinstance(p, dict)}


def _component_type(item, props):
    if props.get(PROP_TYPE) in ("deb", "pypi"):
        return props[PROP_TYPE]
    purl = str(item.get("purl") or "")
    return "pypi" if purl.startswith("pkg:pypi/") else "deb" if purl.startswith("pkg:deb/") else None


def read_sbom(data):
    """An SBOM document (bytes or str) -> {"os": {...}, "components": [...]} (see the module doc)."""
    try:
        doc = json.loads(data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImmutableInfraError("the SBOM is not JSON (%s): expected CycloneDX JSON written at bake" % exc)
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise ImmutableInfraError("the SBOM is not a CycloneDX document (bomFormat %r)"
                                  % (doc.get("bomFormat") if isinstance(doc, dict) else type(doc).__name__))
    meta = _props((doc.get("metadata") or {}).get("component") or {})
    os_info = {"id": meta.get(PROP_OS_ID, ""), "version_id": meta.get(PROP_OS_VERSION_ID, ""),
               "codename": meta.get(PROP_OS_CODENAME, "")}
    components = []
    for item in doc.get("components") or []:
        props = _props(item)
        kind = _component_type(item, props)
        if kind is None:
            continue
        name, version = item.get("name", ""), item.get("version", "")
        components.append({"type": kind, "name": name, "version": version, "arch": props.get(PROP_ARCH, ""),
                           "source": props.get(PROP_SOURCE, name) if kind == "deb" else name,
                           "source_version": props.get(PROP_SOURCE_VERSION, version) if kind == "deb" else version,
                           "purl": item.get("purl", "")})
    return {"os": os_info, "components": components}


def summary(data):
    """A short summary of an SBOM for records and module results: components, by type, digest."""
    parsed = read_sbom(data)
    counts = {}
    for comp in parsed["components"]:
        counts[comp["type"]] = counts.get(comp["type"], 0) + 1
    return {"components": len(parsed["components"]), "types": counts, "os": parsed["os"],
            "digest": "sha256:" + hashlib.sha256(data).hexdigest()}
