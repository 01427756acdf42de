"""The web image: its service runs as its own user, answers health and its
version, listens on its port only, and the seal left nothing of the build."""
import json

import pytest


def test_service_runs_as_its_user(host, processes):
    web = host.user("web")
    assert web.exists, "the image has no user web"
    assert web.uid != 0
    service = [p for p in processes if "/opt/web/web.py" in p["cmd"]]
    assert service, "web.py is not running; processes: %s" % processes
    assert {p["uid"] for p in service} == {web.uid}, service


def test_service_files_are_not_writable_by_the_service(host):
    for path in ("/opt/web/web.py", "/opt/web/image.json"):
        f = host.file(path)
        assert f.exists and f.user == "root" and f.mode & 0o022 == 0, (path, f.user, oct(f.mode))


def test_healthz_answers_200(http_get):
    status, body = http_get("/healthz")
    assert (status, body.strip()) == (200, "ok")


def test_version_answers_the_image_version(http_get, image):
    status, body = http_get("/version")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["app"] == "web"
    assert doc["version"] == image["version"]
    assert doc["instance"] == image["instance"]


def _listening(host, table, state=None):
    """Local ports of /proc/net/<table> entries (in `state`, when given)."""
    f = host.file("/proc/net/" + table)
    if not f.exists:
        return set()
    ports = set()
    for line in f.content_string.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and (state is None or fields[3] == state):
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_nothing_listens_beyond_the_service_port(host, image):
    tcp = _listening(host, "tcp", "0A") | _listening(host, "tcp6", "0A")
    assert tcp == {int(image["port"])}
    assert not _listening(host, "udp") | _listening(host, "udp6")


@pytest.mark.parametrize("pattern", ["authorized_keys", "ssh_host_*", ".bash_history", ".python_history"])
def test_seal_left_nothing_of_the_build(host, pattern):
    found = host.run("find / -xdev -name %s -print", pattern)
    assert found.rc == 0, found.stderr
    assert found.stdout.split() == []


def test_seal_left_no_apt_lists(host):
    found = host.run("find /var/lib/apt/lists -type f -name %s -print", "*_Packages*")
    assert found.stdout.split() == []
