#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: server_group_info
short_description: List the server groups of an app and stack with their instances
version_added: 0.1.0
description:
  - Reads server groups from the platform's labels, the system of record. Nothing is changed.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.server_group
  - immutable.infra.platform
  - immutable.infra.aws
  - immutable.infra.attributes
  - immutable.infra.attributes.INFO_MODULE
options:
  group:
    description: Only this group.
    type: str
seealso:
  - module: immutable.infra.server_group
"""

EXAMPLES = r"""
- name: List web/prod's groups
  immutable.infra.server_group_info:
    app: web
    stack: prod
  register: groups
"""

RETURN = r"""
groups:
  description: Server groups, oldest first, each as M(immutable.infra.server_group) returns it.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web-prod-v001
      app: web
      stack: prod
      sequence: 1
      image: 127.0.0.1:5000/web@sha256:260b2c8db11f6fa9902a288a0804e0195fb1a8fe884d89ebd1ee0b4c23b201b6
      image_digest: sha256:260b2c8db11f6fa9902a288a0804e0195fb1a8fe884d89ebd1ee0b4c23b201b6
      image_version: "1"
      instances: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._aws import secrets_of
from ansible_collections.immutable.infra.plugins.module_utils._module import run_module
from ansible_collections.immutable.infra.plugins.module_utils._names import check_name
from ansible_collections.immutable.infra.plugins.module_utils._platforms._options import PLATFORM_ARGS, platform_from
from ansible_collections.immutable.infra.plugins.module_utils._server_group import groups_of, summary


def main():
    module = AnsibleModule(
        argument_spec=dict(app=dict(type="str", required=True), stack=dict(type="str", required=True),
                           group=dict(type="str"), **PLATFORM_ARGS),
        supports_check_mode=True,
    )
    p = module.params
    module.no_log_values.update(secrets_of(p["platform_options"]))

    def info():
        check_name("app", p["app"])
        check_name("stack", p["stack"])
        instances = platform_from(p).list_instances(app=p["app"], stack=p["stack"], group=p["group"])
        return {"changed": False, "groups": [summary(n, i) for n, i in groups_of(instances).items()]}

    run_module(module, info)


if __name__ == "__main__":
    main()
