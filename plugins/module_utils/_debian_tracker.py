# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Debian security tracker's JSON (https://security-tracker.debian.org/tracker/data/json):

    {source package: {CVE or TEMP id: {"description", "scope", "debianbug",
        "releases": {codename: {"status": open|resolved|undetermined,
                                "fixed_version", "urgency", "repositories"}}}}}

turned into the normalised entries _advisories indexes, keyed by
"Debian:<codename>" and the source package. A resolved entry whose
fixed_version is "0" never affected that release and is dropped; an open or
undetermined one affects every version (no fix)."""

from __future__ import annotations

from ansible_collections.immutable.infra.plugins.module_utils._osv import schema_error, validator as osv_validator
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

TRACKER_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["releases"],
    "properties": {
        "description": {"type": "string"},
        "scope": {"type": "string"},
        "debianbug": {"type": "integer"},
        "releases": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["status"],
            "properties": {
                "status": {"enum": ["open", "resolved", "undetermined"]},
                "fixed_version": {"type": "string", "minLength": 1},
                "urgency": {"type": "string"},
                "nodsa": {"type": "string"},
                "repositories": {"type": "object", "additionalProperties": {"type": "string"}}}}},
    },
}
_validator = None


def looks_like_tracker(doc):
    """A mapping of source packages to mappings of ids to entries with releases."""
    if not isinstance(doc, dict) or not doc or "id" in doc:
        return False
    first = next(iter(doc.values()))
    if not isinstance(first, dict):
        return False
    entry = next(iter(first.values()), None)
    return entry is None or (isinstance(entry, dict) and "releases" in entry)


def check_document(doc, where):
    if not isinstance(doc, dict):
        raise ImmutableInfraError("%s: a Debian security tracker document is an object of source packages, not %s"
                                  % (where, type(doc).__name__))


def normalise_package(source, ids, where):
    """(count, [(key, entry)]) of one source package's ids in a tracker document;
    count is the number of ids with an entry for some release."""
    global _validator  # pylint: disable=global-statement
    if _validator is None:
        _validator = type(osv_validator())(TRACKER_SCHEMA)
    if not isinstance(ids, dict):
        raise ImmutableInfraError("%s: source package %r: expected an object of advisory ids, got %s"
                                  % (where, source, type(ids).__name__))
    count, out = 0, []
    for ident, item in ids.items():
        error = schema_error(_validator, item, "%s: %s %s" % (where, source, ident))
        if error:
            raise ImmutableInfraError(error + "; fix the tracker file or fetch it again")
        kept = False
        for release, info in item["releases"].items():
            status, fixed = info["status"], info.get("fixed_version")
            if status == "resolved":
                if not fixed or fixed == "0":
                    continue
                ranges = [[["i", "0"], ["f", fixed]]]
            else:
                ranges = [[["i", "0"]]]
            kept = True
            out.append(("Debian:%s\0%s" % (release, source),
                        [ident, [], (item.get("description") or "")[:300], [], None, info.get("urgency"), ranges, []]))
        count += kept
    return count, out
