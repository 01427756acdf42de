"""Fixtures of the web recipe's image tests (run by immutable.infra.image_test
against a throwaway instance: testinfra's `host` is the instance, and the
IMMUTABLE_TEST_* variables say which version it runs and where its service is)."""
import json
import os
import urllib.error
import urllib.request

import pytest

# Lists the processes inside the instance: [{"pid", "uid", "cmd"}], from /proc only.
PROCESSES = """
import json, os
out = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\\0", b" ").decode().strip()
        uid = [l.split()[1] for l in open("/proc/%s/status" % pid) if l.startswith("Uid:")][0]
    except OSError:
        continue
    out.append({"pid": int(pid), "uid": int(uid), "cmd": cmd})
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def image():
    """The version under test: name, version, digest, reference, instance, port, url."""
    keys = ("NAME", "VERSION", "DIGEST", "REFERENCE", "INSTANCE", "PORT", "URL")
    missing = [k for k in keys if not os.environ.get("IMMUTABLE_TEST_" + k)]
    if missing:
        pytest.fail("run these tests with immutable.infra.image_test (IMMUTABLE_TEST_%s not set)" % missing[0])
    return {k.lower(): os.environ["IMMUTABLE_TEST_" + k] for k in keys}


@pytest.fixture(scope="session")
def run_key():
    """The public key the test run itself gave the instance to reach it ('' when none: a
    container is reached without SSH; a VM gets a key made for the run, sshd starts with it)."""
    return os.environ.get("IMMUTABLE_TEST_AUTHORIZED_KEY", "").strip()


@pytest.fixture(scope="session")
def http_get(image):
    """GET a path of the service from the controller: (status, body)."""
    def get(path):
        try:
            with urllib.request.urlopen(image["url"] + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
    return get


@pytest.fixture(scope="module")
def processes(host):
    result = host.run("python3 -c %s", PROCESSES)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)
