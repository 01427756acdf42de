"""Shared helpers: the web service runs inside the instance, reached over its loopback."""

import json
import uuid

import pytest

WEB_PORT = 8081  # not the default 8080: proves WEB_PORT is honoured
LOG = "/run/molecule-web.log"

# Runs inside the instance: GET a URL, retrying until the service answers or the time is up.
FETCH = """
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            sys.stdout.write(r.read().decode())
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit("no answer from %s: %s" % (sys.argv[1], exc))
        time.sleep(0.1)
"""


def fetch(host, path, wait=0):
    """Body of http://127.0.0.1:WEB_PORT/path inside the instance."""
    url = "http://127.0.0.1:%d%s" % (WEB_PORT, path)
    result = host.run("python3 -c %s %s %s", FETCH, url, str(wait))
    assert result.rc == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def http_get(host):
    """GET a path from the service inside the instance."""
    return lambda path: fetch(host, path)


@pytest.fixture(scope="module")
def instance_id():
    return "molecule-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def web_service(host, instance_id):
    """Start /opt/web/web.py as the web user the way an instance would, stop it afterwards."""
    started = host.run(
        "INSTANCE_ID=%s WEB_PORT=%s setpriv --reuid=web --regid=web --init-groups"
        " python3 /opt/web/web.py </dev/null >%s 2>&1 & echo $!",
        instance_id,
        str(WEB_PORT),
        LOG,
    )
    assert started.rc == 0, started.stderr
    pid = started.stdout.strip()
    try:
        fetch(host, "/healthz", wait=15)
    except AssertionError:
        # Say why the service did not come up, not just that it did not.
        pytest.fail("web.py did not answer; its log:\n" + host.run("cat %s", LOG).stdout)
    yield
    host.run("kill %s", pid)
    host.run("rm -f %s", LOG)


@pytest.fixture(scope="module")
def version_doc(web_service, http_get):
    return json.loads(http_get("/version"))
