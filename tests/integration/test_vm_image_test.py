# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""image_test on libvirt (VM lane): the web recipe's sealed golden VM image is
tested by playbooks/test_image.yml in a throwaway VM reached with SSH through a
key made for the run (fw_cfg), the recipe's own tests pass (among them: the only
key in the VM is the run's own), the result is recorded with platform libvirt,
and the VM (domain and overlay) is gone afterwards. One VM boot."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import uuid

import pytest

from conftest import LIBVIRT_URI, TOP, _collection_import_path, remove_domains

TEST_IMAGE = os.path.join(TOP, "playbooks", "test_image.yml")
TEST_TASK = "Test the image version"
REPO = "vmweb-vm"          # web_vm_image bakes the web recipe's VM image here


def _domains(prefix):
    out = subprocess.run(["virsh", "-c", LIBVIRT_URI, "list", "--all", "--name"],
                         capture_output=True, text=True, check=True)
    return sorted(d for d in out.stdout.split() if d.startswith(prefix))


def _overlays(env, prefix):
    return sorted(glob.glob(os.path.join(env["HOME"], ".local", "state", "immutable-infra", "libvirt", prefix + "*")))


@pytest.fixture
def stack(env):
    name = "t" + uuid.uuid4().hex[:10]
    yield name
    remove_domains("imagetest-%s" % name, env["HOME"])


def test_the_web_vm_version_passes_over_ssh_and_the_vm_is_removed(ansible, registry, env, web_vm_image, stack):
    image = web_vm_image["image"]
    run = ansible.playbook(TEST_IMAGE, {
        "image": REPO, "version": image["version"], "recipe": "web", "catalog_registry": registry["address"],
        "test_stack": stack, "test_platform": "libvirt", "test_wait_timeout": 300})
    result = run.result(TEST_TASK) if run.results(TEST_TASK) else None
    assert run.rc == 0, (result or {}).get("msg", run.stderr[-3000:]) + "\n" + (result or {}).get("output", "")
    assert result["status"] == "passed" and result["failures"] == [] and result["platform"] == "libvirt"
    summary = result["summary"]
    assert summary["failed"] == summary["errors"] == summary["skipped"] == 0 and summary["passed"] >= 10, summary
    # Reached with SSH on a forwarded loopback port, with the run's own key (its directory is gone).
    command = result["command"]
    hosts = command[command.index("--hosts") + 1]
    assert hosts.startswith("ssh://root@127.0.0.1:"), hosts
    key = command[command.index("--ssh-identity-file") + 1]
    assert not os.path.exists(key) and not os.path.exists(os.path.dirname(key))
    assert "PRIVATE KEY" not in json.dumps(run.doc)
    # The VM is gone: domain and overlay.
    prefix = "imagetest-%s-v001-" % stack
    assert result["instance"].startswith(prefix) and result["removed"] == [result["instance"]]
    assert _domains(prefix) == [] and _overlays(env, prefix) == []
    # Recorded beside the version, platform libvirt.
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
    record = Lifecycle(registry["address"]).test_result(REPO, image["digest"])
    assert record["status"] == "passed" and record["platform"] == "libvirt" and record["summary"] == summary
    print("\nVM image test: %.1f s (pytest %.1f s)" % (result["duration"], summary["seconds"]))
