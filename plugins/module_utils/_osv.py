# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OSV records (https://ossf.github.io/osv-schema/): the part of the schema the
scanner relies on, validated with jsonschema, and the normalised entries
_advisories indexes (see entry() there for their shape).

Only the Debian ecosystems ("Debian", "Debian:<release>") and PyPI are kept;
withdrawn records are dropped."""

from __future__ import annotations

import re

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

try:
    import jsonschema
    JSONSCHEMA_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported when used
    jsonschema = None
    JSONSCHEMA_IMPORT_ERROR = exc

_STRINGS = {"type": "array", "items": {"type": "string"}}
_SEVERITY = {"type": "array", "items": {
    "type": "object", "required": ["type", "score"],
    "properties": {"type": {"enum": ["CVSS_V2", "CVSS_V3", "CVSS_V4", "Ubuntu"]}, "score": {"type": "string"}}}}
_EVENT = {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
          "properties": {k: {"type": "string", "minLength": 1} for k in ("introduced", "fixed", "last_affected", "limit")}}

# The subset of the OSV schema (1.6) the scanner relies on.
OSV_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["id", "modified"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "modified": {"type": "string", "minLength": 1},
        "published": {"type": "string"},
        "withdrawn": {"type": "string"},
        "aliases": _STRINGS, "upstream": _STRINGS, "related": _STRINGS,
        "summary": {"type": "string"},
        "details": {"type": "string"},
        "severity": _SEVERITY,
        "database_specific": {"type": "object"},
        "affected": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "package": {"type": "object", "required": ["ecosystem", "name"], "properties": {
                    "ecosystem": {"type": "string", "minLength": 1},
                    "name": {"type": "string", "minLength": 1},
                    "purl": {"type": "string"}}},
                "severity": _SEVERITY,
                "ranges": {"type": "array", "items": {
                    "type": "object", "required": ["type", "events"],
                    "properties": {"type": {"enum": ["GIT", "SEMVER", "ECOSYSTEM"]},
                                   "repo": {"type": "string"},
                                   "events": {"type": "array", "minItems": 1, "items": _EVENT}}}},
                "versions": _STRINGS,
                "ecosystem_specific": {"type": "object"},
                "database_specific": {"type": "object"}}}},
    },
}

DEBIAN_RE = re.compile(r"^Debian(:[A-Za-z0-9.]+)?$")
_EVENT_KINDS = {"introduced": "i", "fixed": "f", "last_affected": "l"}
_validator = None


def validator():
    global _validator  # pylint: disable=global-statement
    if jsonschema is None:
        raise ImmutableInfraError("jsonschema is required to read OSV advisories (%s); run `make setup` "
                                  "(or pip install jsonschema)" % JSONSCHEMA_IMPORT_ERROR)
    if _validator is None:
        _validator = jsonschema.Draft7Validator(OSV_SCHEMA)
    return _validator


def schema_error(validate, doc, where):
    """None when doc is valid, else 'at <json path>: <message>' of its first error."""
    if validate.is_valid(doc):
        return None
    err = sorted(validate.iter_errors(doc), key=lambda e: list(e.absolute_path))[0]
    path = "".join("[%s]" % p if isinstance(p, int) else ".%s" % p for p in err.absolute_path) or "(top level)"
    return "%s: schema violation at %s: %s" % (where, path, err.message)


def pypi_name(name):
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _first(mapping_list, key):
    for mapping in mapping_list:
        value = (mapping or {}).get(key)
        if isinstance(value, str) and value:
            return value
    return None


def normalise(record, where):
    """[(key, entry)] of one OSV record (validated here); [] when it concerns
    no ecosystem we scan or is withdrawn. where names the record for errors."""
    error = schema_error(validator(), record, where)
    if error:
        raise ImmutableInfraError(error + "; fix or remove this advisory record")
    if record.get("withdrawn"):
        return []
    aliases = sorted((set(record.get("aliases", [])) | set(record.get("upstream", []))) - {record["id"]})
    summary = record.get("summary") or (record.get("details") or "").strip().split("\n", 1)[0][:300]
    out = []
    for affected in record.get("affected", []):
        package = affected.get("package")
        if not package:
            continue
        ecosystem, name = package["ecosystem"], package["name"]
        if DEBIAN_RE.match(ecosystem):
            key = "%s\0%s" % (ecosystem, name)
        elif ecosystem == "PyPI":
            key = "PyPI\0%s" % pypi_name(name)
        else:
            continue
        ranges = [[[_EVENT_KINDS[k], v] for event in r["events"] for k, v in event.items() if k in _EVENT_KINDS]
                  for r in affected.get("ranges", []) if r["type"] == "ECOSYSTEM"]
        specifics = [affected.get("ecosystem_specific"), affected.get("database_specific"), record.get("database_specific")]
        cvss = [[s["type"], s["score"]] for s in affected.get("severity", []) + record.get("severity", [])]
        out.append((key, [record["id"], aliases, summary, cvss, _first(specifics, "severity"),
                          _first(specifics, "urgency"), [r for r in ranges if r], sorted(affected.get("versions", []))]))
    return out
