"""image_test / playbooks/test_image.yml against the real registry and podman:
the web recipe's own testinfra tests pass on a web version and the result is
in the registry (read back with skopeo); a failing outside recipe is recorded
failed with the failing test's id; a version that never gets healthy is
recorded failed; the throwaway container is gone afterwards in every case;
check mode and bad inputs record nothing."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from conftest import TOP, _collection_import_path, free_port, tags

TEST_IMAGE = os.path.join(TOP, "playbooks", "test_image.yml")
TEST_TASK = "Test the image version"
REPO = "relweb"           # release_images bakes the web recipe under this name

FAILING_TESTS = '''
import json
import os
import urllib.request


def test_service_user_exists(host):
    assert host.user("web").exists


def test_message_is_other():
    with urllib.request.urlopen(os.environ["IMMUTABLE_TEST_URL"] + "/version", timeout=5) as r:
        assert json.load(r)["message"] == "not this message"
'''


def containers(stack):
    """Names of the throwaway containers of a stack (any state)."""
    proc = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", "label=infra.immutable.app=imagetest",
                           "--filter", "label=infra.immutable.stack=%s" % stack], capture_output=True, text=True, check=True)
    return proc.stdout.split()


@pytest.fixture
def stack():
    """A unique stack for the run's throwaway instance; whatever a failed test left is removed."""
    name = "t" + uuid.uuid4().hex[:10]
    yield name
    left = containers(name)
    if left:
        subprocess.run(["podman", "rm", "-f", "-t", "0"] + left, capture_output=True, check=False)


def record_tag(digest):
    return digest.replace(":", "-", 1) + ".test"


def skopeo_json(registry, tag, *flags):
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *flags, "docker://%s/%s:%s" % (registry["address"], REPO, tag)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_test_image(ansible, registry, image, stack, check=False, **kw):
    """Run playbooks/test_image.yml on a version of relweb; (run, the test task's result)."""
    extra = {"image": REPO, "version": image["tag"], "recipe": "web", "catalog_registry": registry["address"],
             "test_stack": stack, "test_wait_timeout": 60}
    extra.update(kw)
    run = ansible.playbook(TEST_IMAGE, {k: v for k, v in extra.items() if v is not None}, check=check)
    return run, run.result(TEST_TASK) if run.results(TEST_TASK) else None


def outside_recipe(workdir, files):
    root = os.path.join(workdir, "recipe-%s" % uuid.uuid4().hex[:8])
    os.makedirs(os.path.join(root, "tests"))
    for rel, text in files.items():
        with open(os.path.join(root, "tests", rel), "w") as f:
            f.write(text)
    return root


def test_the_web_version_passes_and_its_record_is_in_the_registry(ansible, registry, release_images, stack):
    image = release_images["ok1"]
    run, result = run_test_image(ansible, registry, image, stack)
    assert run.rc == 0, result
    assert result["status"] == "passed" and result["failures"] == []
    assert result["summary"]["passed"] >= 10 and result["summary"]["failed"] == 0
    # The tests ran against a throwaway instance of its own app/stack, removed afterwards.
    assert result["instance"].startswith("imagetest-%s-v001-" % stack) and result["removed"] == [result["instance"]]
    assert containers(stack) == []
    assert "--hosts" in result["command"] and "podman://root@" + result["instance"] in result["command"]
    # The record is beside the version, read back with skopeo: the config is the record, annotations summarise it.
    assert record_tag(image["digest"]) in tags(registry, REPO)
    record = skopeo_json(registry, record_tag(image["digest"]), "--config", "--raw")
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._packer import tree_digest
    assert record["status"] == "passed" and record["subject"] == image["digest"] and record["version"] == image["tag"]
    assert record["test_digest"] == "sha256:" + tree_digest(os.path.join(TOP, "packer", "web", "tests")) == result["test_digest"]
    assert record["platform"] == "podman" and record["by"] and record["time"]
    assert record["summary"] == result["summary"]
    manifest = skopeo_json(registry, record_tag(image["digest"]), "--raw")
    assert manifest["subject"]["digest"] == image["digest"]
    assert manifest["annotations"]["infra.immutable.status"] == "passed"
    # And through the lifecycle API the other modules use.
    from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
    assert Lifecycle(registry["address"]).test_result(REPO, image["digest"])["status"] == "passed"
    print("\nimage test of the web version: %.1f s (pytest %.1f s)" % (result["duration"], result["summary"]["seconds"]))


def test_a_failing_recipe_is_recorded_failed_with_the_failing_test(ansible, registry, release_images, workdir, stack):
    image = release_images["ok2"]
    recipe = outside_recipe(workdir, {"test_outside.py": FAILING_TESTS})
    before = tags(registry, REPO)
    run, result = run_test_image(ansible, registry, image, stack, recipe=recipe)
    assert run.rc != 0 and result["failed"]
    assert "failed its tests (recorded): test_outside.py::test_message_is_other" in result["msg"]
    assert result["failures"] == ["test_outside.py::test_message_is_other"] and result["summary"]["passed"] == 1
    assert containers(stack) == [] and result["removed"] == [result["instance"]]
    assert set(tags(registry, REPO)) - set(before) == {record_tag(image["digest"])}
    record = skopeo_json(registry, record_tag(image["digest"]), "--config", "--raw")
    assert record["status"] == "failed" and record["summary"]["failures"] == ["test_outside.py::test_message_is_other"]
    assert record["test_digest"] == result["test_digest"] != record_tag(image["digest"])


def test_a_version_that_never_gets_healthy_is_recorded_failed_and_removed(ansible, registry, release_images, stack):
    image = release_images["broken"]
    run, result = run_test_image(ansible, registry, image, stack, test_wait_timeout=8)
    assert run.rc != 0 and result["failures"] == ["image_test::healthy"], result
    assert result["instance"] and containers(stack) == []
    record = skopeo_json(registry, record_tag(image["digest"]), "--config", "--raw")
    assert record["status"] == "failed" and record["summary"]["errors"] == 1


def test_check_mode_by_digest_says_what_would_run_and_records_nothing(ansible, registry, release_images, stack):
    image = release_images["ok3"]
    before = tags(registry, REPO)
    run, result = run_test_image(ansible, registry, image, stack, check=True, version=None, digest=image["digest"])
    assert run.rc == 0, result
    assert result["changed"] and "would start imagetest-%s-v001-" % stack in result["msg"]
    assert "--hosts" in result["would_run"] and result["version"]["tag"] == image["tag"]
    assert "status" not in result and "instance" not in result
    assert tags(registry, REPO) == before and record_tag(image["digest"]) not in before
    assert containers(stack) == []


def test_bad_inputs_are_named_and_record_nothing(ansible, registry, release_images, workdir, stack):
    image = release_images["ok3"]
    empty = outside_recipe(workdir, {"conftest.py": ""})
    before = tags(registry, REPO)
    cases = [
        ({"version": "999"}, "unknown image version '999' of relweb"),
        ({"recipe": os.path.join(workdir, "no-such-recipe")}, "no-such-recipe/tests does not exist"),
        ({"recipe": empty}, "holds no tests"),
        ({"catalog_registry": "127.0.0.1:%d" % free_port()}, "is not reachable"),
        ({"digest": image["digest"]}, "give exactly one of version and digest"),
    ]
    for extra, msg in cases:
        run, result = run_test_image(ansible, registry, image, stack, **extra)
        text = result["msg"] if result else run.stderr + json.dumps(run.doc)
        assert run.rc != 0 and msg in text, (extra, text[-2000:])
        assert containers(stack) == []
    assert tags(registry, REPO) == before


def test_a_revoked_version_is_refused(ansible, registry, release_images, stack):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
    image = release_images["ok3"]
    life = Lifecycle(registry["address"])
    life.revoke(REPO, image["digest"], "bad openssl", "it@test")
    try:
        before = tags(registry, REPO)
        run, result = run_test_image(ansible, registry, image, stack)
        assert run.rc != 0 and "is revoked: bad openssl (revoked by it@test" in result["msg"], result
        assert tags(registry, REPO) == before and containers(stack) == []
    finally:
        life.unrevoke(REPO, image["digest"])
