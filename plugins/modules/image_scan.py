#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_scan
short_description: Scan image versions in the registry for known vulnerabilities and judge them by a policy
version_added: 0.3.0
description:
  - Scans image versions from their SBOM stored in the registry at bake (the C(sha256-<hex>.sbom) artifact beside
    the version). It never runs, starts or logs into an instance.
  - Advisories come from files or URLs the user supplies (OSV JSON with ecosystem C(Debian:12), a directory or a
    zip; or the Debian security tracker JSON), loaded before anything is read; a source that cannot be read or
    parsed fails the task and nothing is stored.
  - Each version's result is stored beside it (the C(sha256-<hex>.scan) artifact) with its findings and the
    policy's verdict. A re-scan with the same SBOM, advisories, policy and verdict writes nothing
    (C(changed=false)); a waiver that expired since changes the verdict and the record.
  - A version without an SBOM (baked before SBOMs were recorded) is reported with what to do (rebake it); it
    fails the policy only when the policy sets C(require_scan).
  - With O(mode=evaluate) nothing is scanned; the stored scans are judged by O(policy) now (waivers that expired
    since stop counting; a version never scanned passes unless C(require_scan)). With O(fail_on_violation) a
    failing version fails the task naming its findings, unless O(override_reason) is given - then the override
    (who, when, why, for what) is appended to the version's scan record and returned as a warning.
    C(playbooks/release.yml) does this before a release.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: Scans and judges; stores nothing (no scan record, no override).
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A re-scan with unchanged SBOMs, advisories and policy changes nothing.
options:
  images:
    description:
      - The versions to scan - C(web:3), C(web@sha256:...), or C(web) for every version of the repository (its
        newest only with O(newest_only); the target of O(channel) with O(channel)). A C(registry/) prefix must
        name O(registry).
      - Default every version a channel of any repository points at, or a server group (enabled, disabled and
        kept warm, or stopped; any app and stack) runs on O(platforms).
    type: list
    elements: str
  channel:
    description: With a bare repository name in O(images), the version this channel points at.
    type: str
  newest_only:
    description: A bare repository name in O(images) means its newest version (as M(immutable.infra.server_group) reads it).
    type: bool
    default: false
  mode:
    description: C(scan) scans and stores; C(evaluate) judges the stored scans by O(policy) now.
    type: str
    choices: [scan, evaluate]
    default: scan
  advisories:
    description: The advisory sources (required with O(mode=scan)).
    type: list
    elements: dict
    suboptions:
      path:
        description: A file, directory or zip on the control node.
        type: path
      url:
        description: An http(s) URL of a file or zip.
        type: str
      format:
        description: The source's format; guessed from the content when not given.
        type: str
        choices: [osv, debian-tracker]
  policy:
    description:
      - "The policy. Keys (each optional, defaults in brackets): C(fail_on) severities that fail a version
        [critical, high]; C(fixable_only) only findings with a fix available count [true]; C(max) C({severity: n}),
        more than n counted findings of that severity fail [none]; C(require_scan) a version never scanned or
        without an SBOM fails [false]; C(waivers) a list of C({id, reason, expires, images, packages})."
      - A waiver needs an C(id) (advisory id or alias), a C(reason) and C(expires) (C(YYYY-MM-DD), valid through that
        day); C(images) (repository names) and C(packages) (binary or source names) narrow it. An expired waiver
        stops counting and is reported in the C(expired_waivers) of each entry of RV(versions). A waiver without a
        reason or with a bad date fails the task.
    type: dict
  store:
    description: Store each version's scan record in the registry.
    type: bool
    default: true
  fail_on_violation:
    description:
      - With O(mode=evaluate), fail when a version fails the policy (naming its findings), unless O(override_reason).
    type: bool
    default: false
  override_reason:
    description: With O(fail_on_violation), let failing versions through; recorded in their scan records with O(actor).
    type: str
  override_for:
    description: What the override lets through (for example C(release to web/prod)), recorded with it.
    type: str
  actor:
    description: Who scans (or overrides), recorded. Defaults to C(user@host) of the process running the module.
    type: str
  platforms:
    description:
      - The platforms whose server groups make the default targets. Default C(podman), plus C(libvirt) when its
        state directory exists.
    type: list
    elements: str
    choices: [podman, libvirt, aws]
  platform_options:
    description: "Options per platform, as C({platform name: options})."
    type: dict
    default: {}
seealso:
  - module: immutable.infra.image_channel
  - module: immutable.infra.image_info
"""

EXAMPLES = r"""
- name: Scan everything a channel or a server group uses
  immutable.infra.image_scan:
    advisories:
      - {path: /srv/advisories/osv-debian.zip, format: osv}
      - {url: "https://security-tracker.debian.org/tracker/data/json", format: debian-tracker}
    policy:
      fail_on: [critical, high]
      fixable_only: true
      waivers:
        - {id: CVE-2024-1234, reason: "not reachable: no TLS in this image", expires: "2027-01-31", images: [web]}
  register: scan

- name: Refuse web:3 unless its stored scan passes the policy now
  immutable.infra.image_scan:
    mode: evaluate
    images: ["web:3"]
    fail_on_violation: true
"""

RETURN = r"""
versions:
  description: One entry per version.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web
      version: "3"
      digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
      reference: 127.0.0.1:5000/web:3
      sbom: true
      scanned: true
      counts: {critical: 0, high: 1, medium: 2, low: 0, negligible: 0, unknown: 0}
      fixable: 1
      passed: false
      violations: [CVE-2024-1234]
      waived: []
      expired_waivers: []
      reasons: ["CVE-2024-1234 (high, openssl 3.0.11-1~deb12u1, fixed in 3.0.13-1~deb12u1): severity high fails the policy"]
      changed: true
      referenced_by: ["channel production of web (head)"]
      message: "web:3 fails the scan policy: CVE-2024-1234 (high, ...)"
totals:
  description: Counts over every version.
  returned: always
  type: dict
  sample: {versions: 3, scanned: 2, without_sbom: 1, passed: 2, failed: 1, findings: 3, fixable: 1, changed: 2,
           counts: {critical: 0, high: 1, medium: 2, low: 0, negligible: 0, unknown: 0}}
findings:
  description: Every finding (mode scan), one per advisory, package and installed version, with the versions it is in.
  returned: always
  type: list
  elements: dict
  sample:
    - {id: CVE-2024-1234, aliases: [DSA-5678-1], package: libssl3, source: openssl, type: deb,
       installed: 3.0.11-1~deb12u1, fixed: 3.0.13-1~deb12u1, fix_available: true, severity: high, urgency: null,
       summary: "...", feeds: [osv], images: ["web:3"]}
advisories:
  description: The advisories used (mode scan) - their digest, count and sources.
  returned: when mode is scan
  type: dict
  sample: {digest: "sha256:4f...", count: 1234, sources: [{source: /srv/advisories/osv-debian.zip, count: 1234}]}
policy:
  description: The policy applied, with its defaults filled in.
  returned: always
  type: dict
  sample: {fail_on: [critical, high], fixable_only: true, max: {}, require_scan: false, waivers: []}
policy_digest:
  description: The digest of the policy (stored with each scan).
  returned: always
  type: str
  sample: "sha256:0b5f..."
overrides:
  description: With O(override_reason), the failing versions let through and the override recorded for each.
  returned: when mode is evaluate
  type: list
  elements: dict
  sample: [{name: web, version: "3", digest: "sha256:9c1e...", by: alice, reason: "hotfix for outage", recorded: true,
            for: release to web/prod, time: "2026-11-30T14:00:00Z", epoch: 1796047200.0, violations: [CVE-2024-1234]}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._platforms import AVAILABLE
from ansible_collections.immutable.infra.plugins.module_utils._prune import platforms_from
from ansible_collections.immutable.infra.plugins.module_utils._scan import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images=dict(type="list", elements="str"),
            channel=dict(type="str"),
            newest_only=dict(type="bool", default=False),
            mode=dict(type="str", default="scan", choices=["scan", "evaluate"]),
            advisories=dict(type="list", elements="dict", options=dict(
                path=dict(type="path"), url=dict(type="str"), format=dict(type="str", choices=["osv", "debian-tracker"])),
                mutually_exclusive=[("path", "url")], required_one_of=[("path", "url")]),
            policy=dict(type="dict"),
            store=dict(type="bool", default=True),
            fail_on_violation=dict(type="bool", default=False),
            override_reason=dict(type="str"),
            override_for=dict(type="str"),
            actor=dict(type="str"),
            platforms=dict(type="list", elements="str", choices=list(AVAILABLE)),
            platform_options=dict(type="dict", default={}),
            **REGISTRY_ARGS
        ),
        required_if=[("mode", "scan", ("advisories",))],
        supports_check_mode=True,
    )
    p = module.params

    def go():
        platforms = [] if p["images"] else platforms_from(p["platforms"], p["platform_options"])
        return run(Lifecycle(p["registry"], p["validate_certs"]), p, platforms, module.check_mode)

    run_module(module, go)


if __name__ == "__main__":
    main()
