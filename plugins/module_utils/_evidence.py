# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a bake proves about its image, around the publish step.

before_publish(local_image, fmt, params) reads the built (not yet tagged or
pushed) image's files once: the seal check (refuses the image, naming every
finding) and the SBOM. after_publish(catalog, facts, evidence, params) stores
the SBOM beside the published version and signs the version when
params["signing"] is set. Recipe bakes (_bake) and base bakes call both.

complete(catalog, facts, fmt, params) gives a version the bake finds in the
catalog what it lacks: a bake killed between its push and its SBOM (or baked
before SBOMs or signing existed) is completed by the next run of the same bake
instead of staying without them for good.

An AMI version (format ami) has no SBOM and no seal check at bake: its files are
on an EBS snapshot in AWS, which cannot be read offline. The seal role runs in
the AMI's provisioning (SSH bakes); scan gates see such a version as not
scanned. Its catalog version is signed like any other with params["signing"].

params: seal_check (bool, default true), seal_allow (image paths), signing
(dict for _signing.sign_version), lookaside (the signatures' directory).
"""

from __future__ import annotations

import json
import time

from ansible_collections.immutable.infra.plugins.module_utils import _catalog as catalog_mod
from ansible_collections.immutable.infra.plugins.module_utils import _image_files, _sbom, _seal
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._records import SBOM_SUFFIX, record_tag
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run
from ansible_collections.immutable.infra.plugins.module_utils._signing import SIGNING_OPTIONS, sign_version

# The options of the modules that bake (doc fragment immutable.infra.bake_evidence).
EVIDENCE_ARGS = dict(
    seal_check=dict(type="bool", default=True),
    seal_allow=dict(type="list", elements="str", default=[]),
    signing=dict(type="dict", options=SIGNING_OPTIONS,
                 mutually_exclusive=[("key_file", "key")], required_one_of=[("key_file", "key")]),
    lookaside=dict(type="path"),
)


def _labels(local_image, podman="podman"):
    _rc, out, _err = run([podman, "image", "inspect", "--format", "{{json .Config.Labels}}", local_image],
                         what="podman image inspect")
    return json.loads(out or "null") or {}


def not_sealed(image, findings):
    return ImmutableInfraError(
        "image %s is not sealed: %s; remove them in the recipe (the immutable.infra.seal role does) or list a path "
        "in seal_allow" % (image, _seal.describe(findings)), seal_findings=findings)


def before_publish(local_image, fmt, params, labels=None):
    """Seal check and SBOM of a built local image: {"sbom": bytes, "summary", "created", "seconds",
    "seal": {"checked", "allowed"}}. Raises ImmutableInfraError naming every finding when the image
    is not sealed (the caller removes the local image; nothing is published)."""
    started = time.monotonic()
    labels = labels if labels is not None else _labels(local_image)
    name = labels.get(catalog_mod.LABEL_RECIPE) or local_image
    version = labels.get(catalog_mod.LABEL_VERSION)
    image = "%s:%s" % (name, version) if version else name
    created = labels.get(catalog_mod.LABEL_CREATED)
    check = params.get("seal_check", True) is not False
    allow = list(params.get("seal_allow") or [])
    with _image_files.image_root(local_image, fmt) as root:
        if check:
            findings = _seal.seal_findings(root, allow)
            if findings:
                raise not_sealed(image, findings)
        data = _sbom.build_sbom(root, name, created)
    return {"sbom": data, "summary": _sbom.summary(data), "created": created,
            "seconds": round(time.monotonic() - started, 3), "seal": {"checked": check, "allowed": allow}}


def _repository_name(catalog, facts):
    repo = facts["repository"]
    prefix = catalog.registry + "/"
    return repo[len(prefix):] if repo.startswith(prefix) else catalog_mod.parse_reference(repo)["name"]


def after_publish(catalog, facts, evidence, params, check_mode=False):
    """Store the SBOM beside the published version (Lifecycle.put_sbom), then sign the version when
    params["signing"] is set. Returns {"sbom": {components, types, digest, tag, changed, seconds},
    "signature": what _signing.sign_version returned, or None}."""
    if not evidence:
        return {"sbom": None, "signature": None}
    name = _repository_name(catalog, facts)
    summ = evidence["summary"]
    lifecycle = Lifecycle(catalog.registry, catalog.validate_certs)
    changed = lifecycle.put_sbom(name, facts["digest"], evidence["sbom"], evidence.get("created") or facts["created"],
                                 summary={"components": summ["components"], "sbom_digest": summ["digest"]},
                                 check_mode=check_mode)
    sbom = {"components": summ["components"], "types": summ["types"], "digest": summ["digest"],
            "tag": record_tag(facts["digest"], SBOM_SUFFIX), "changed": changed, "seconds": evidence.get("seconds")}
    signature = None
    if params.get("signing"):
        signature = sign_version(catalog.registry, facts, params["signing"], params.get("lookaside"),
                                 check_mode=check_mode)
    return {"sbom": sbom, "signature": signature}


def sbom_expected(facts):
    """False for an AMI version: its volume is not readable offline, it never gets an SBOM at bake."""
    return (facts or {}).get("format") != "ami"


def sign_only(catalog, facts, params, check_mode=False):
    """The signature of a version that has no SBOM (an AMI version), or None without params["signing"]."""
    if not params.get("signing"):
        return None
    return sign_version(catalog.registry, facts, params["signing"], params.get("lookaside"), check_mode=check_mode)


def has_sbom(catalog, facts):
    """True when the version's SBOM is stored (one HEAD request)."""
    return catalog.client.head(_repository_name(catalog, facts), record_tag(facts["digest"], SBOM_SUFFIX)) is not None


def complete(catalog, facts, fmt, params, check_mode=False):
    """Store what an existing version lacks: its SBOM (read from the published image, pulled by
    digest; the seal check is not run again on a published version) and, with params["signing"],
    its signature. Returns {"sbom": ... or None, "signature": ... or None, "changed": bool}."""
    out = {"sbom": None, "signature": None, "changed": False}
    if sbom_expected(facts) and not has_sbom(catalog, facts):
        if check_mode:
            out["sbom"] = {"tag": record_tag(facts["digest"], SBOM_SUFFIX), "changed": True}
        else:
            catalog.pull(facts["reference"])
            evidence = before_publish(facts["reference"], fmt, dict(params, seal_check=False),
                                      labels=facts.get("labels") or _labels(facts["reference"]))
            out["sbom"] = after_publish(catalog, facts, evidence, {}, check_mode)["sbom"]
        out["changed"] = True
    if params.get("signing"):
        out["signature"] = sign_version(catalog.registry, facts, params["signing"], params.get("lookaside"),
                                        check_mode=check_mode)
        out["changed"] = out["changed"] or out["signature"]["changed"]
    return out
