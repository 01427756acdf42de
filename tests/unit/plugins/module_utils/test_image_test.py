"""image_test's logic: the tests directory and its digest, real pytest runs
parsed from their junit report, and the run's promises against fakes of the
platform and lifecycle interfaces - the throwaway instance is always removed,
a failing or never-healthy version is recorded failed, tests that cannot run,
a revoked version and check mode record nothing."""
from __future__ import annotations

import http.server
import json
import os
import sys
import textwrap
import subprocess
import tempfile
import threading

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _image_test as it
from ansible_collections.immutable.infra.plugins.module_utils import _lease, _lifecycle
from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import Platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

DIGEST = "sha256:" + "ab" * 32

PASSING = '''
import os, urllib.request

def test_version_is_given():
    assert os.environ["IMMUTABLE_TEST_VERSION"] == "3"

def test_service_answers():
    with urllib.request.urlopen(os.environ["IMMUTABLE_TEST_URL"] + "/healthz", timeout=5) as r:
        assert r.status == 200
'''
FAILING = '''
import pytest

class TestThings:
    def test_fails(self):
        assert 1 == 2

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n == 1

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass
'''


def write_tests(root, files):
    os.makedirs(root, exist_ok=True)
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
    return str(root)


# ------------------------------------------------------------------ tests directory
def test_tests_dir_from_recipe_dir_or_given(tmp_path):
    assert it.tests_dir_of({"recipe_dir": str(tmp_path)}) == os.path.join(str(tmp_path), "tests")
    assert it.tests_dir_of({"recipe_dir": "/x", "tests_dir": str(tmp_path)}) == str(tmp_path)
    with pytest.raises(ImmutableInfraError, match="tests_dir or recipe_dir"):
        it.tests_dir_of({})


def test_find_tests_names_a_missing_or_empty_directory(tmp_path):
    with pytest.raises(ImmutableInfraError, match="%s does not exist" % (tmp_path / "nope")):
        it.find_tests(str(tmp_path / "nope"))
    write_tests(tmp_path / "t", {"conftest.py": "", "helpers.py": "", "__pycache__/test_x.py": ""})
    with pytest.raises(ImmutableInfraError, match="holds no tests"):
        it.find_tests(str(tmp_path / "t"))
    write_tests(tmp_path / "t", {"test_b.py": "", "sub/test_a.py": ""})
    assert it.find_tests(str(tmp_path / "t")) == ["test_b.py", os.path.join("sub", "test_a.py")]


def test_digest_covers_paths_and_contents_only(tmp_path):
    a = write_tests(tmp_path / "a", {"test_x.py": "x = 1\n", "conftest.py": ""})
    b = write_tests(tmp_path / "b", {"test_x.py": "x = 1\n", "conftest.py": ""})
    assert it.tests_digest(a) == it.tests_digest(b)
    assert it.tests_digest(a).startswith("sha256:") and len(it.tests_digest(a)) == 71
    write_tests(tmp_path / "b", {"__pycache__/test_x.cpython-311.pyc": "junk"})
    assert it.tests_digest(a) == it.tests_digest(b)
    write_tests(tmp_path / "b", {"test_x.py": "x = 2\n"})
    assert it.tests_digest(a) != it.tests_digest(b)
    os.rename(os.path.join(a, "test_x.py"), os.path.join(a, "test_y.py"))
    write_tests(tmp_path / "b", {"test_x.py": "x = 1\n"})
    assert it.tests_digest(a) != it.tests_digest(b)


# ------------------------------------------------------------------ real pytest
def pytest_run(tmp_path, files, timeout=120, instance="inst-1"):
    tests = write_tests(tmp_path / "tests", files)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    junit = str(work / "junit.xml")
    argv = it.pytest_argv(sys.executable, tests, str(work), "local://", junit)
    env = {"IMMUTABLE_TEST_VERSION": "3", "IMMUTABLE_TEST_URL": "http://127.0.0.1:1", "PYTHONDONTWRITEBYTECODE": "1"}
    return it.run_pytest(argv, env, timeout, junit, instance), tests


def test_failing_tests_are_named_by_id(tmp_path):
    (summary, output), tests = pytest_run(tmp_path, {"test_f.py": FAILING})
    assert summary["failures"] == ["test_f.py::TestThings::test_fails", "test_f.py::test_param[2]"]
    assert (summary["passed"], summary["failed"], summary["errors"], summary["skipped"]) == (1, 2, 0, 1)
    assert "2 failed" in output
    assert os.listdir(tests) == ["test_f.py"], "pytest wrote into the tests directory"


def test_passing_tests(tmp_path):
    (summary, _out), _tests = pytest_run(tmp_path, {"test_p.py": "def test_a():\n    pass\n"})
    assert summary == {"passed": 1, "failed": 0, "errors": 0, "skipped": 0, "seconds": summary["seconds"],
                       "failures": [], "tests": 1}


@pytest.mark.parametrize("files, why", [
    ({"test_c.py": "import nonexistent_module_xyz\n"}, "interrupted"),
    ({"test_n.py": "x = 1\n"}, "no tests were collected"),
])
def test_tests_that_cannot_run_are_an_error(tmp_path, files, why):
    with pytest.raises(ImmutableInfraError, match="could not run .*%s.*nothing recorded" % why):
        pytest_run(tmp_path, files)


def test_a_timeout_is_an_error(tmp_path):
    with pytest.raises(ImmutableInfraError, match="did not finish within 3s"):
        pytest_run(tmp_path, {"test_s.py": "import time\ndef test_slow():\n    time.sleep(60)\n"}, timeout=3)


def test_the_instance_name_is_taken_out_of_the_ids():
    xml = ('<testsuites><testsuite tests="3" failures="3" errors="0" skipped="0" time="1.5">'
           '<testcase classname="test_web" file="test_web.py" name="test_a[podman://imagetest-t1-v001-abc]"><failure/></testcase>'
           '<testcase classname="test_web" file="test_web.py" name="test_b[podman://imagetest-t1-v001-abc-authorized_keys]">'
           '<failure/></testcase>'
           '<testcase classname="sub.test_z.TestK" file="sub/test_z.py" name="test_c"><error/></testcase>'
           '</testsuite></testsuites>')
    summary = it.parse_junit(xml, "imagetest-t1-v001-abc")
    assert summary["failures"] == ["test_web.py::test_a", "test_web.py::test_b[authorized_keys]",
                                   "sub/test_z.py::TestK::test_c"]
    with pytest.raises(ImmutableInfraError, match="unreadable junit"):
        it.parse_junit("<testsuites", None)


# ------------------------------------------------------------------ the run, against fakes
class Service:
    """An HTTP server on loopback answering `status`."""

    def __init__(self, status=200):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakePlatform(Platform):
    """Instances are dicts; the service port is reached at the given service (None: never answers)."""
    name = "podman"

    def __init__(self, service=None, fail_create=False, existing=()):
        self.service, self.fail_create = service, fail_create
        self.live, self.created, self.destroyed = {}, [], []
        for inst in existing:
            self.live[inst["name"]] = inst

    def list_instances(self, app=None, stack=None, group=None):
        return [i for i in self.live.values() if (app is None or i["app"] == app) and (stack is None or i["stack"] == stack)]

    def instance(self, name):
        return self.live[name]

    def pull(self, reference):
        pass

    def create_instances(self, specs):
        if self.fail_create:
            raise ImmutableInfraError("podman run failed (rc=125): no space left")
        out = []
        for spec in specs:
            inst = dict(spec, name=spec["group"] + "-abc123", state="running",
                        ports={spec["port"]: self.service.port} if self.service else {})
            self.live[inst["name"]] = inst
            self.created.append(inst["name"])
            out.append(inst)
        return out

    def destroy_instances(self, names, timeout=5):
        for n in names:
            self.live.pop(n, None)
            self.destroyed.append(n)
        return list(names)

    def logs(self, name, lines=20):
        return ""


class FakeLifecycle:
    def __init__(self, revoked=None, fmt="container"):
        self.revoked, self.records, self.fmt = revoked, [], fmt

    def version(self, name, version=None, digest=None):
        if version not in (None, "3") or digest not in (None, DIGEST):
            raise ImmutableInfraError("unknown image version %s:%s" % (name, version or digest))
        return {"version": "3", "tag": "3", "digest": DIGEST, "reference": "127.0.0.1:5000/web@" + DIGEST,
                "repository": "127.0.0.1:5000/web", "format": self.fmt, "labels": {}}

    def revocation(self, name, digest):
        return self.revoked

    def record_test(self, name, digest, result, check_mode=False):
        assert not check_mode
        self.records.append((name, digest, result))
        return dict(result, kind="test", subject=digest)


@pytest.fixture(autouse=True)
def _actor(monkeypatch):
    monkeypatch.setattr(_lifecycle, "actor", lambda given=None: given or "tester@host")


@pytest.fixture
def service():
    s = Service()
    yield s
    s.close()


def params(tests_dir, **kw):
    p = {"name": "web", "version": "3", "digest": None, "tests_dir": tests_dir, "recipe_dir": None, "app": "imagetest",
         "stack": None, "port": 8080, "env": {}, "health_check": {"interval": 0.05, "healthy_threshold": 1},
         "wait_timeout": 2, "timeout": 120, "actor": "ci"}
    p.update(kw)
    return p


def test_a_passing_version_is_recorded_and_its_instance_removed(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform, life = FakePlatform(service), FakeLifecycle()
    result = it.run_image_test(params(tests), life, None, platform)
    assert result["status"] == "passed" and result["summary"]["passed"] == 2
    assert platform.created and platform.destroyed == platform.created and not platform.live
    assert result["app"] == "imagetest" and platform.created[0].startswith("imagetest-%s-v001-" % result["stack"])
    [(name, digest, record)] = life.records
    assert (name, digest, record["status"], record["by"], record["platform"]) == ("web", DIGEST, "passed", "ci", "podman")
    assert record["test_digest"] == it.tests_digest(tests) and record["summary"]["failures"] == []


def test_a_failing_version_is_recorded_failed_and_the_task_fails(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_f.py": FAILING})
    platform, life = FakePlatform(service), FakeLifecycle()
    with pytest.raises(ImmutableInfraError, match=r"failed its tests \(recorded\): test_f.py::TestThings::test_fails") as exc:
        it.run_image_test(params(tests), life, None, platform)
    assert exc.value.details["changed"] is True and exc.value.details["status"] == "failed"
    assert [r[2]["status"] for r in life.records] == ["failed"]
    assert not platform.live and platform.destroyed == platform.created


def test_a_never_healthy_version_is_recorded_failed_and_removed(tmp_path):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform, life = FakePlatform(service=None), FakeLifecycle()
    with pytest.raises(ImmutableInfraError, match=it.HEALTH_TEST_ID):
        it.run_image_test(params(tests, wait_timeout=1), life, None, platform)
    assert life.records[0][2]["summary"]["failures"] == [it.HEALTH_TEST_ID]
    assert platform.created and not platform.live


@pytest.mark.parametrize("case", ["create fails", "timeout", "collection error"])
def test_nothing_is_recorded_when_the_tests_cannot_run_and_the_instance_goes(tmp_path, service, case):
    files = {"test_c.py": "import nonexistent_module_xyz\n"} if case == "collection error" else \
        {"test_s.py": "import time\ndef test_slow():\n    time.sleep(60)\n"}
    platform, life = FakePlatform(service, fail_create=case == "create fails"), FakeLifecycle()
    with pytest.raises(ImmutableInfraError):
        it.run_image_test(params(write_tests(tmp_path / "t", files), timeout=3), life, None, platform)
    assert life.records == [] and not platform.live
    assert platform.destroyed == platform.created


def test_check_mode_starts_nothing_and_records_nothing(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform, life = FakePlatform(service), FakeLifecycle()
    result = it.run_image_test(params(tests), life, None, platform, check_mode=True)
    assert result["changed"] and "would start" in result["msg"] and "--hosts" in result["would_run"]
    assert platform.created == [] and life.records == []


def test_refusals_start_nothing(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    revoked = {"reason": "CVE-1", "by": "sec", "time": "2026-11-30T10:00:00Z"}
    cases = [
        (FakeLifecycle(revoked), FakePlatform(service), params(tests), r"revoked: CVE-1 \(revoked by sec at 2026-11-30T10:00:00Z\)"),
        (FakeLifecycle(), FakePlatform(service), params(tests, version="9"), "unknown image version web:9"),
        (FakeLifecycle(), FakePlatform(service), params(str(tmp_path / "none")), "does not exist"),
        (FakeLifecycle(), FakePlatform(service, existing=[{"name": "imagetest-prod-v001-x", "app": "imagetest",
                                                          "stack": "prod"}]),
         params(tests, stack="prod"), "already has instances"),
        (FakeLifecycle(), FakePlatform(service), params(tests, app="Bad"), "invalid app 'Bad'"),
    ]
    for life, platform, p, msg in cases:
        with pytest.raises(ImmutableInfraError, match=msg):
            it.run_image_test(p, life, None, platform)
        assert platform.created == [] and life.records == []


def test_a_platform_it_cannot_reach_is_refused_before_anything_starts(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform = FakePlatform(service)
    platform.name = "cloud"
    with pytest.raises(ImmutableInfraError, match="cannot reach instances of platform cloud"):
        it.run_image_test(params(tests), FakeLifecycle(), None, platform)
    assert platform.created == []


# ------------------------------------------------------------------ VMs: a key for the run, SSH
class FakeVmPlatform(FakePlatform):
    name, image_format = "libvirt", "vm"

    def create_instances(self, specs):
        out = super().create_instances(specs)
        for inst in out:        # port 22 forwarded to a loopback port nothing listens on
            inst["ports"][22] = free_port()
        self.specs = specs
        return out


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_vm_gets_a_key_made_for_the_run_and_ssh_forwarded_and_everything_goes_when_ssh_never_answers(
        tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform, life = FakeVmPlatform(service), FakeLifecycle(fmt="vm")
    with pytest.raises(ImmutableInfraError, match=r"does not answer SSH on 127\.0\.0\.1:\d+ within 2s") as exc:
        it.run_image_test(params(tests), life, None, platform)
    [spec] = platform.specs
    assert spec["extra_ports"] == [22] and spec["port"] == 8080
    [key] = spec["authorized_keys"]
    assert key.startswith("ssh-ed25519 ") and key.endswith(" immutable-infra-image-test")
    assert "PRIVATE" not in repr(exc.value.msg) + repr(exc.value.details)
    # Nothing recorded, the VM removed, the key pair gone with the run's directory.
    assert life.records == [] and not platform.live and platform.destroyed == platform.created
    assert not [d for d in os.listdir(tempfile.gettempdir()) if d.startswith("immutable-image-test-")
                and os.path.exists(os.path.join(tempfile.gettempdir(), d, "id_ed25519.pub"))
                and open(os.path.join(tempfile.gettempdir(), d, "id_ed25519.pub")).read().strip() == key]


def test_a_container_platform_gets_no_key_and_no_ssh(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform = FakePlatform(service)
    seen = []
    real = platform.create_instances
    platform.create_instances = lambda specs: seen.extend(specs) or real(specs)
    result = it.run_image_test(params(tests), FakeLifecycle(), None, platform)
    assert "authorized_keys" not in seen[0] and seen[0]["extra_ports"] == []
    assert "--ssh-identity-file" not in result["command"]


def test_the_vm_is_reached_with_the_ssh_backend_its_own_config_and_key(tmp_path):
    config = it.ssh_config(str(tmp_path), str(tmp_path / "id_ed25519"))
    text = open(config).read()
    for line in ("IdentityFile %s/id_ed25519" % tmp_path, "IdentitiesOnly yes", "StrictHostKeyChecking no",
                 "UserKnownHostsFile %s/known_hosts" % tmp_path, "BatchMode yes", "User root"):
        assert "\n  %s\n" % line in text, text
    vm = FakeVmPlatform()
    assert it.host_spec(vm, "i", ("127.0.0.1", 40022)) == "ssh://root@127.0.0.1:40022"
    assert it.host_id(vm, "i", ("127.0.0.1", 40022)) == "127.0.0.1"
    assert it.host_spec(FakePlatform(), "i") == "podman://root@i" and it.host_id(FakePlatform(), "i") == "i"
    xml = ('<testsuite tests="1" failures="1"><testcase classname="test_web" file="test_web.py" '
           'name="test_a[ssh://127.0.0.1-authorized_keys]"><failure/></testcase></testsuite>')
    assert it.parse_junit(xml, "127.0.0.1")["failures"] == ["test_web.py::test_a[authorized_keys]"]


def test_check_mode_on_a_vm_says_it_would_use_ssh(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform = FakeVmPlatform(service)
    result = it.run_image_test(params(tests), FakeLifecycle(fmt="vm"), None, platform, check_mode=True)
    assert "ssh://root@127.0.0.1:<port>" in result["would_run"] and "--ssh-identity-file" in result["would_run"]
    assert platform.created == []


# ------------------------------------------------------------------ stale throwaway instances
def labelled(name, owner, app="imagetest"):
    return {"name": name, "app": app, "stack": name.split("-")[1],
            "labels": {it.LABEL_OWNER: owner if isinstance(owner, str) else json.dumps(owner)}}


def test_a_throwaway_instance_is_labelled_with_its_owner_this_process(tmp_path, service):
    owner = json.loads(it.owner_label())
    assert owner["pid"] == os.getpid() and _lease.same_machine(owner, _lease.machine())
    assert _lease.owner_status(owner) == "alive" and set(owner) == set(it.OWNER_KEYS)
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    platform, seen = FakePlatform(service), []
    real = platform.create_instances
    platform.create_instances = lambda specs: seen.extend(specs) or real(specs)
    it.run_image_test(params(tests), FakeLifecycle(), None, platform)
    assert json.loads(seen[0]["labels"][it.LABEL_OWNER]) == owner


def test_only_instances_of_dead_owners_on_this_machine_are_stale():
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead_owner = json.loads(it.owner_label(dead.pid))
    finally:
        dead.kill()
        dead.wait()
    me = json.loads(it.owner_label())
    here = _lease.machine()
    elsewhere = dict(me, host="elsewhere", start=me["start"] + 1)
    instances = [labelled("imagetest-a-v001-1", me), labelled("imagetest-b-v001-1", dict(me, start=me["start"] + 1)),
                 labelled("imagetest-c-v001-1", elsewhere), labelled("imagetest-d-v001-1", dead_owner),
                 labelled("imagetest-e-v001-1", dict(dead_owner, boot_id="another boot")),
                 labelled("imagetest-f-v001-1", "not json"), labelled("imagetest-g-v001-1", {"pid": 1}),
                 {"name": "imagetest-h-v001-1", "labels": {}}, {"name": "imagetest-i-v001-1"}]
    # Gone (d) and pid reused (b) on this machine; never a live owner's (a), another machine's or boot's (c, e).
    assert it.stale(instances, here) == ["imagetest-b-v001-1", "imagetest-d-v001-1"]
    assert it.stale(instances, dict(here, host="elsewhere")) == ["imagetest-c-v001-1"]


def test_each_run_first_removes_the_stale_instances_of_its_app_and_no_other(tmp_path, service):
    tests = write_tests(tmp_path / "tests", {"test_p.py": PASSING})
    me = json.loads(it.owner_label())
    gone = dict(me, start=me["start"] + 1)
    existing = [labelled("imagetest-x-v001-1", gone), labelled("imagetest-y-v001-1", me),
                labelled("shop-z-v001-1", gone, app="shop")]
    platform = FakePlatform(service, existing=existing)
    checked = it.run_image_test(params(tests, stack="mine"), FakeLifecycle(), None, platform, check_mode=True)
    assert checked["would_sweep"] == ["imagetest-x-v001-1"] and platform.destroyed == []
    result = it.run_image_test(params(tests, stack="mine"), FakeLifecycle(), None, platform)
    assert result["swept"] == ["imagetest-x-v001-1"]
    assert set(platform.live) == {"imagetest-y-v001-1", "shop-z-v001-1"}
