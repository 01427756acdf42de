#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_test
short_description: Test an image version with its recipe's testinfra tests and record the result in the registry
version_added: 0.2.0
description:
  - Starts a throwaway instance of one image version on the O(platform), waits until it is healthy, runs the
    recipe's testinfra tests against it with C(pytest) (the Python that runs this module, so C(pytest-testinfra)
    must be installed there) and records the result beside the version in the registry, where
    M(immutable.infra.image_info) and the promotion gates read it.
  - The record (tag C(sha256-<hex>.test) in the version's repository, an OCI artifact whose subject is the version)
    holds C(passed) or C(failed), when, who, the platform, the test digest (sha256 over the sorted relative paths
    and contents of the tests directory) and a summary with the failing test ids. Earlier runs are kept in it.
  - The throwaway instance is never one of production's - it belongs to the app O(app) and a stack made for this
    run, and it is never added to a router. It is always removed, also when it does not start, never becomes
    healthy, or the tests time out.
  - A version that never becomes healthy is recorded C(failed) with the test id C(image_test::healthy).
  - A version whose tests fail is recorded C(failed) and the task fails naming the failing tests.
  - Tests that cannot run (none found, a collection error, a timeout), an unknown version, a revoked version and
    an unreachable registry are errors; nothing is recorded.
  - 'The tests get testinfra''s C(host) (the instance, reached as root: on C(podman) through C(podman exec), on
    C(libvirt) with SSH) and the environment variables C(IMMUTABLE_TEST_NAME), C(IMMUTABLE_TEST_VERSION),
    C(IMMUTABLE_TEST_DIGEST), C(IMMUTABLE_TEST_REFERENCE), C(IMMUTABLE_TEST_INSTANCE), C(IMMUTABLE_TEST_PORT) (the
    service port inside), C(IMMUTABLE_TEST_URL) (where this host reaches the service port,
    C(http://127.0.0.1:<port>)), C(IMMUTABLE_TEST_PLATFORM) and C(IMMUTABLE_TEST_AUTHORIZED_KEY) (the public key the
    run gave the instance, empty for a container).'
  - The tests directory is read on the host that runs the module (run it on the controller, as
    C(playbooks/test_image.yml) does).
  - A VM image (platform C(libvirt)) is sealed - no SSH key, no sshd. Its throwaway VM gets an ed25519 key pair made
    for the run (in a private temporary directory, removed afterwards, never logged) - the public key through the
    qemu fw_cfg entry C(opt/immutable/authorized_keys), which makes the guest install it for root and start sshd, and
    port 22 forwarded on C(127.0.0.1). The tests reach it with testinfra's C(ssh) backend (a temporary ssh_config
    and known_hosts; the VM's host key is new on every boot), so C(ssh) and C(ssh-keygen) must be installed.
    Production instances never get a key. The recipe's tests see C(IMMUTABLE_TEST_AUTHORIZED_KEY) and can check
    that the only key present is the run's own.
  - A run killed hard (SIGKILL) cannot remove its instance. A throwaway instance is labelled C(infra.immutable.owner)
    with its owner (host, boot id, pid namespace, pid and process start time of the module's process, as release
    leases name theirs), and every run first removes the instances of O(app) on the platform whose owner is provably
    dead on this machine - never another machine's, never a live run's.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.health_check
  - immutable.infra.platform
  - immutable.infra.registry
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
    details: Says what would run - no instance is started and nothing is recorded.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run starts a new instance and records a new run.
options:
  name:
    description: Repository of the image in the registry (a recipe's images use the recipe's name).
    type: str
    required: true
  version:
    description: The version (tag) to test. One of O(version) or O(digest) is required.
    type: str
  digest:
    description: The version to test, by its manifest digest C(sha256:...).
    type: str
  recipe_dir:
    description: The recipe directory; its C(tests/) holds the tests. Used when O(tests_dir) is not given.
    type: path
  tests_dir:
    description: The directory of the testinfra tests (C(test_*.py), optionally C(conftest.py) and C(pytest.ini)).
    type: path
  app:
    description: The app name of the throwaway instance. No release may use it.
    type: str
    default: imagetest
  stack:
    description:
      - The stack name of the throwaway instance. Defaults to a name made for this run.
      - An app/stack that already has instances is refused.
    type: str
  port:
    description: The service port inside the instance. Defaults to the port the image declares (see M(immutable.infra.server_group)).
    type: int
  env:
    description: Extra environment of the instance.
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to wait for health. Defaults to the time an instance of the O(platform) usually needs to boot.
    type: int
  timeout:
    description: Seconds the tests may take. Tests still running then are stopped; nothing is recorded.
    type: int
    default: 900
  actor:
    description:
      - Who tests, recorded as C(by). Defaults to C(user@host) of the process.
      - Playbooks run by AWX pass its user (C(awx_user_name)).
    type: str
seealso:
  - module: immutable.infra.image_info
  - module: immutable.infra.image_bake
"""

EXAMPLES = r"""
- name: Test web version 3 with the web recipe's tests
  immutable.infra.image_test:
    name: web
    version: "3"
    recipe_dir: "{{ playbook_dir }}/../packer/web"

- name: Test version 4 of the web recipe's VM image in a throwaway libvirt VM (reached with a key made for the run)
  immutable.infra.image_test:
    name: web-vm
    version: "4"
    recipe_dir: "{{ playbook_dir }}/../packer/web"
    platform: libvirt

- name: Test a version by digest with tests kept elsewhere, for at most 5 minutes
  immutable.infra.image_test:
    name: api
    digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    tests_dir: /srv/recipes/api/tests
    timeout: 300
    actor: "{{ awx_user_name | default(omit) }}"
"""

RETURN = r"""
status:
  description: C(passed) or C(failed). A failed run fails the task, with the same keys.
  returned: when the tests ran
  type: str
  sample: passed
passed:
  description: Whether the version passed.
  returned: when the tests ran
  type: bool
  sample: true
summary:
  description: Counts, seconds and the failing test ids (relative to the tests directory, without the instance's name).
  returned: when the tests ran
  type: dict
  sample: {passed: 10, failed: 0, errors: 0, skipped: 0, seconds: 4.4, failures: []}
failures:
  description: The failing test ids.
  returned: when the tests ran
  type: list
  elements: str
  sample: [test_web.py::test_version_answers_the_image_version]
record:
  description: The test record stored in the registry (earlier runs in C(runs)).
  returned: when the tests ran
  type: dict
  sample:
    kind: test
    subject: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    repository: web
    version: "3"
    status: passed
    time: "2026-11-30T11:00:00Z"
    by: root@build1
    test_digest: sha256:1d6e0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c
    platform: podman
    summary: {passed: 10, failed: 0, errors: 0, skipped: 0, seconds: 4.4, failures: []}
    runs: []
version:
  description: The version tested.
  returned: always
  type: dict
  sample:
    version: "3"
    tag: "3"
    digest: sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    reference: 127.0.0.1:5000/web@sha256:9c1e5c5d2c8a0c5f3f6d1e7b9c3b1f1f4b0a3f6c2d8e9a7b6c5d4e3f2a1b0c9d
    repository: 127.0.0.1:5000/web
test_digest:
  description: sha256 over the sorted relative paths and contents of the tests directory.
  returned: always
  type: str
  sample: sha256:1d6e0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c
tests_dir:
  description: The tests directory.
  returned: always
  type: str
  sample: /usr/share/ansible/collections/ansible_collections/immutable/infra/packer/web/tests
test_files:
  description: The test files found, relative to the tests directory.
  returned: always
  type: list
  elements: str
  sample: [test_web.py]
swept:
  description: Stale throwaway instances of O(app) removed first (their owner run died on this machine).
  returned: when an instance was to be started
  type: list
  elements: str
  sample: [imagetest-t0c1d2e3f4a5b-v001-9f8e7d]
would_sweep:
  description: The stale throwaway instances a run would remove first.
  returned: in check mode
  type: list
  elements: str
  sample: []
instance:
  description: The throwaway instance the tests ran against (removed).
  returned: when an instance was started
  type: str
  sample: imagetest-t3f9a1c2b4d5e-v001-1a2b3c
removed:
  description: Instances removed at the end (the throwaway instance).
  returned: when an instance was to be started
  type: list
  elements: str
  sample: [imagetest-t3f9a1c2b4d5e-v001-1a2b3c]
app:
  description: App of the throwaway instance.
  returned: always
  type: str
  sample: imagetest
stack:
  description: Stack of the throwaway instance.
  returned: always
  type: str
  sample: t3f9a1c2b4d5e
command:
  description: The pytest command that ran.
  returned: when the tests ran
  type: list
  elements: str
  sample: [/usr/bin/python3, -B, -m, pytest, /srv/recipes/web/tests, --hosts, "podman://root@imagetest-t3f9a1c2b4d5e-v001-1a2b3c"]
would_run:
  description: The pytest command that would run (the instance name is a placeholder).
  returned: in check mode
  type: list
  elements: str
  sample: [/usr/bin/python3, -B, -m, pytest, /srv/recipes/web/tests, --hosts, "podman://root@imagetest-t3f9a1c2b4d5e-v001-<instance>"]
output:
  description: The last lines pytest printed (or why the instance was not healthy).
  returned: when the tests ran
  type: str
  sample: "10 passed in 4.44s"
duration:
  description: Seconds from the instance's start to the record.
  returned: when the tests ran
  type: float
  sample: 9.8
platform:
  description: The platform the instance ran on.
  returned: always
  type: str
  sample: podman
by:
  description: Who tested.
  returned: always
  type: str
  sample: root@build1
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils._aws import secrets_of
from ansible_collections.immutable.infra.plugins.module_utils._catalog import Catalog
from ansible_collections.immutable.infra.plugins.module_utils._image_test import DEFAULT_TIMEOUT, TEST_APP, run_image_test
from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._module import REGISTRY_ARGS, run_module
from ansible_collections.immutable.infra.plugins.module_utils._platforms._options import PLATFORM_ARGS, platform_from
from ansible_collections.immutable.infra.plugins.module_utils._server_group import HEALTH_OPTIONS


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str"),
            digest=dict(type="str"),
            recipe_dir=dict(type="path"),
            tests_dir=dict(type="path"),
            app=dict(type="str", default=TEST_APP),
            stack=dict(type="str"),
            port=dict(type="int"),
            env=dict(type="dict", default={}),
            health_check=dict(type="dict", default={}, options=HEALTH_OPTIONS),
            wait_timeout=dict(type="int"),
            timeout=dict(type="int", default=DEFAULT_TIMEOUT),
            actor=dict(type="str"),
            **dict(REGISTRY_ARGS, **PLATFORM_ARGS)
        ),
        required_one_of=[("version", "digest"), ("recipe_dir", "tests_dir")],
        mutually_exclusive=[("version", "digest")],
        supports_check_mode=True,
    )
    p = module.params
    module.no_log_values.update(secrets_of(p["platform_options"]))

    def test():
        catalog = Catalog(p["registry"], p["validate_certs"])
        platform = platform_from(p, validate_certs=catalog.validate_certs)
        return run_image_test(p, Lifecycle(p["registry"], p["validate_certs"]), catalog, platform, module.check_mode)

    run_module(module, test)


if __name__ == "__main__":
    main()
