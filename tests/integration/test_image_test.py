"""image_test / playbooks/test_image.yml against the real registry and podman:
the web recipe's own testinfra tests pass on a web version and the result is
in the registry (read back with skopeo); a failing outside recipe is recorded
failed with the failing test's id; a version that never gets healthy is
recorded failed; the throwaway container is gone afterwards in every case;
check mode and bad inputs record nothing; a run killed with SIGKILL leaves its
container, which the next run removes (and never a live run's or another
machine's)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import TOP, _collection_import_path, alive, children, free_port, tags, wait_for

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


SLOW_TESTS = '''
import time


def test_slow(host):
    assert host.user("web").exists
    time.sleep(600)
'''


def _pytest_children(pid):
    def cmd(child):
        try:
            with open("/proc/%d/cmdline" % child, "rb") as f:
                return f.read().split(b"\0")
        except OSError:
            return []
    return [c for c in children(pid) if b"pytest" in cmd(c)]


def owned(owner):
    """Names of the imagetest containers (any state) labelled with this owner."""
    proc = subprocess.run(["podman", "ps", "-a", "--format", "json", "--filter", "label=infra.immutable.app=imagetest"],
                          capture_output=True, text=True, check=True)
    return sorted(c["Names"][0] for c in json.loads(proc.stdout or "[]")
                  if (c.get("Labels") or {}).get("infra.immutable.owner") == owner)


def _create_labelled(image, owner):
    """A created (never started) container labelled as a throwaway instance of `owner`."""
    stack = "t" + uuid.uuid4().hex[:10]
    name = "imagetest-%s-v001-%s" % (stack, uuid.uuid4().hex[:6])
    labels = {"app": "imagetest", "stack": stack, "group": "imagetest-%s-v001" % stack, "sequence": "1", "port": "8080",
              "owner": owner}
    argv = ["podman", "create", "--tls-verify=false", "--name", name]
    argv += [a for k, v in labels.items() for a in ("--label", "infra.immutable.%s=%s" % (k, v))]
    subprocess.run(argv + [image["reference"]], capture_output=True, text=True, check=True)
    return name


def test_a_run_killed_with_sigkill_leaves_its_container_and_the_next_run_removes_it(
        ansible, registry, env, release_images, workdir, stack):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _image_test as it
    image = release_images["ok3"]
    recipe = outside_recipe(workdir, {"test_slow.py": SLOW_TESTS})
    args = os.path.join(workdir, "args-%s.json" % uuid.uuid4().hex[:6])
    with open(args, "w") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": {"name": REPO, "version": image["tag"], "recipe_dir": recipe,
                                           "registry": registry["address"], "wait_timeout": 60}}, f)
    # A python process running the module's code, as Ansible's worker would; its pid is kept.
    module = os.path.join(TOP, "plugins", "modules", "image_test.py")
    proc = subprocess.Popen([sys.executable, module, args], env=dict(env, PYTHONPATH=os.path.join(TOP, ".cache", "collections")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dead_owner = it.owner_label(proc.pid)
    assert json.loads(dead_owner)["pid"] == proc.pid
    # Instances that must survive: a live owner's (this test process) and another machine's (a dead pid there).
    live_owner = it.owner_label()
    other = json.dumps(dict(json.loads(dead_owner), host="elsewhere"), sort_keys=True, separators=(",", ":"))
    keep = [_create_labelled(image, live_owner), _create_labelled(image, other)]
    pytest_pids = []
    try:
        # Killed while its tests run: the container is up and pytest (its child) is running.
        wait_for(lambda: (owned(dead_owner) and _pytest_children(proc.pid)) or proc.poll() is not None, 180,
                 "the module's instance and its pytest")
        assert proc.poll() is None, "the module ended before it could be killed (rc=%s)" % proc.returncode
        time.sleep(1)
        pytest_pids = _pytest_children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        [left] = owned(dead_owner)
        # The next run removes it first, and only it.
        run, result = run_test_image(ansible, registry, image, stack)
        assert run.rc == 0, result
        assert result["swept"] == [left] and owned(dead_owner) == []
        assert owned(live_owner) == [keep[0]] and owned(other) == [keep[1]]
        # In check mode nothing is removed: the live and foreign ones are not even proposed.
        run, result = run_test_image(ansible, registry, image, stack, check=True)
        assert run.rc == 0 and keep[0] not in result["would_sweep"] and keep[1] not in result["would_sweep"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pytest_pids:          # pytest, orphaned by the kill: started by this test, killed by pid
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        for owner in (dead_owner, live_owner, other):
            left = owned(owner)
            if left:
                subprocess.run(["podman", "rm", "-f", "-t", "0"] + left, capture_output=True, check=False)
