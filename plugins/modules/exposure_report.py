#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: exposure_report
short_description: Where a vulnerability runs right now - CVE, image versions, channels, server groups, instances, zones
version_added: 0.3.0
description:
  - "Joins the stored scan records of the image versions (see M(immutable.infra.image_scan)) with the channels
    pointing at those versions and the server groups running them: for each CVE, the image versions whose latest
    scan has a finding for it, the channels pointing at them, the server groups on O(platforms) running them (by
    image digest, in any repository), whether each group is live (the router gives it weight) or retained (kept
    warm out of traffic, or not routed), and their instance counts and zones; and for each app/stack, what it
    runs and which CVEs it carries, worst severity first."
  - Everything is read from the registry, the platforms' labels and the router's routes. No instance is logged into.
    A platform that cannot be read fails the task, so a CVE is never reported as running nowhere by mistake.
  - Server groups running a version that was never scanned are listed in RV(unscanned).
  - With O(dest), writes C(exposure.json), C(exposure.md) and C(exposure.html) (a static, self-contained page
    with inline CSS and no script) into that directory. A file is rewritten only when its content, apart from
    the generated time, differs; its generated time is therefore when that content was first reported.
  - Ordering is deterministic (severity, then id).
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.registry
  - immutable.infra.router
  - immutable.infra.router.BACKEND
  - immutable.infra.fleet_platforms
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: Reports which files would change and writes nothing.
  diff_mode:
    support: full
    details: Shows each report file that would change, before and after.
  idempotent:
    support: full
    details: The generated time alone never rewrites a file.
options:
  cves:
    description:
      - Report only these vulnerabilities, each matched against a finding's id and its aliases (case-insensitive),
        e.g. V(CVE-2024-12345) or V(DSA-5800-1).
      - Requested names no finding matches are listed in RV(not_found).
    type: list
    elements: str
  apps:
    description: Read the server groups of these apps only (every stack). Default every app.
    type: list
    elements: str
  repositories:
    description: Read the scan records of these repositories only. Default every repository of the registry.
    type: list
    elements: str
  dest:
    description:
      - A directory to write the reports into (created when missing). Without it nothing is written and the
        task only returns the data.
    type: path
  formats:
    description: The report files to write into O(dest).
    type: list
    elements: str
    choices: [json, markdown, html]
    default: [json, markdown, html]
seealso:
  - module: immutable.infra.image_prune
  - module: immutable.infra.server_group_info
"""

EXAMPLES = r"""
- name: Find where CVE-2024-12345 runs
  immutable.infra.exposure_report:
    cves: [CVE-2024-12345]
  register: exposure

- name: Report the web app's exposure only
  immutable.infra.exposure_report:
    apps: [web]
    repositories: [web]

- name: Write the fleet's exposure page for the operators
  immutable.infra.exposure_report:
    dest: /srv/reports/exposure
    formats: [html, json]
"""

RETURN = r"""
cves:
  description:
    - One entry per vulnerability found in a scanned version, worst severity first, then by id.
    - C(groups) are the server groups running an affected version (C(traffic) V(live) or V(retained)).
    - A version's C(waived) is C({reason, expires}) when its scan's policy verdict waived the finding, else null.
  returned: always
  type: list
  elements: dict
  sample:
    - id: CVE-2024-12345
      aliases: [DSA-5800-1]
      severity: critical
      fix_available: true
      summary: heap overflow in libexample
      packages: [{package: libexample1, source: libexample, installed: 1.2-1, fixed: 1.2-2, fix_available: true,
                  severity: critical}]
      versions: [{repository: web, version: "7", digest: "sha256:3f1c...", scanned: "2026-11-30T14:00:00Z",
                  channels: ["web:production"], packages: ["libexample1 1.2-1 -> 1.2-2"], groups: [web-prod-v007],
                  waived: null}]
      channels: ["web:production"]
      groups: [{name: web-prod-v007, app: web, stack: prod, platform: podman, repository: web, version: "7",
                digest: "sha256:3f1c...", channel: production, traffic: live, weight: 100, instances: 2, running: 2,
                zones: [zone-a, zone-b], instance_names: [web-prod-v007-1a2b3c, web-prod-v007-4d5e6f]}]
      stacks: [web/prod]
      live_stacks: [web/prod]
      instances: 2
      live_instances: 2
      zones: [zone-a, zone-b]
      live: true
stacks:
  description: Per app/stack (worst severity first, then by name) its groups and the vulnerabilities it carries.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web/prod
      app: web
      stack: prod
      worst: critical
      counts: {critical: 1, high: 0, medium: 0, low: 0, negligible: 0, unknown: 0}
      instances: 2
      groups: [{name: web-prod-v007, version: "7", traffic: live, instances: 2, zones: [zone-a, zone-b],
                cves: [CVE-2024-12345]}]
      cves: [{id: CVE-2024-12345, aliases: [DSA-5800-1], severity: critical, fix_available: true,
              packages: ["libexample1 1.2-1 -> 1.2-2"], groups: [web-prod-v007], live_groups: [web-prod-v007],
              live: true}]
summary:
  description: Counts over the report.
  returned: always
  type: dict
  sample: {cves: 1, by_severity: {critical: 1, high: 0, medium: 0, low: 0, negligible: 0, unknown: 0}, live: 1,
           fixable: 1, versions_scanned: 4, stacks: 2, groups: 3, instances: 5, unscanned_groups: 0}
unscanned:
  description: Server groups running a version that has no scan record (their exposure is unknown).
  returned: always
  type: list
  elements: dict
  sample: []
not_found:
  description: Names in O(cves) that no finding of a scanned version matches.
  returned: always
  type: list
  elements: str
  sample: [CVE-2023-0001]
scanned_at:
  description: The time of the newest scan record read, or null.
  returned: always
  type: str
  sample: "2026-11-30T14:00:00Z"
generated:
  description: When this report was made (UTC).
  returned: always
  type: str
  sample: "2026-11-30T14:05:00Z"
registry:
  description: The registry read.
  returned: always
  type: str
  sample: 127.0.0.1:5000
platforms:
  description: The platforms whose server groups were read.
  returned: always
  type: list
  elements: str
  sample: [podman]
filter:
  description: The O(cves) asked for (empty for every CVE).
  returned: always
  type: list
  elements: str
  sample: [CVE-2024-12345]
apps:
  description: The O(apps) whose server groups were read (empty for every app).
  returned: always
  type: list
  elements: str
  sample: [web]
files:
  description: The report files under O(dest), and whether each changed (in check mode, would change).
  returned: always
  type: list
  elements: dict
  sample: [{format: html, path: /srv/reports/exposure/exposure.html, changed: true}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._exposure import FORMATS, report
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, ROUTER_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._platforms import AVAILABLE
from ansible_collections.immutable.infra.plugins.module_utils._prune import platforms_from
from ansible_collections.immutable.infra.plugins.module_utils._traffic import ROUTER_BACKEND_ARGS, router_from, router_secrets


def main():
    argument_spec = dict(
        cves=dict(type="list", elements="str"),
        repositories=dict(type="list", elements="str"),
        apps=dict(type="list", elements="str"),
        platforms=dict(type="list", elements="str", choices=list(AVAILABLE)),
        platform_options=dict(type="dict", default={}),
        dest=dict(type="path"),
        formats=dict(type="list", elements="str", choices=list(FORMATS), default=list(FORMATS)),
        **dict(REGISTRY_ARGS, **dict(ROUTER_ARGS, **ROUTER_BACKEND_ARGS))
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    module.no_log_values.update(router_secrets(p))

    def run():
        return report(Lifecycle(p["registry"], p["validate_certs"]), platforms_from(p["platforms"], p["platform_options"]),
                      router_from(p), p["cves"], p["repositories"], p["dest"], p["formats"],
                      check_mode=module.check_mode, want_diff=module._diff, apps=p["apps"])

    run_module(module, run)


if __name__ == "__main__":
    main()
