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


def test_nothing_listens_beyond_the_service_port(host, image, run_key):
    tcp = _listening(host, "tcp", "0A") | _listening(host, "tcp6", "0A")
    # sshd runs only because the run gave the instance its key (test_only_the_runs_own_key_is_installed).
    assert tcp == {int(image["port"])} | ({22} if run_key else set())
    # A VM (the one kind reached with a key) has its own network stack: its DHCP client owns UDP 68.
    assert _listening(host, "udp") | _listening(host, "udp6") <= ({68} if run_key else set())


@pytest.mark.parametrize("pattern", [".bash_history", ".python_history"])
def test_seal_left_nothing_of_the_build(host, pattern):
    found = host.run("find / -xdev -name %s -print", pattern)
    assert found.rc == 0, found.stderr
    assert found.stdout.split() == []


def _found(host, pattern):
    found = host.run("find / -xdev -name %s -print", pattern)
    assert found.rc == 0, found.stderr
    return sorted(found.stdout.split())


def test_only_the_runs_own_key_is_installed(host, run_key):
    """The seal left no key: the only one present is the run's own (installed at this boot), or none."""
    if not run_key:
        assert _found(host, "authorized_keys") == []
        return
    assert _found(host, "authorized_keys") == ["/root/.ssh/authorized_keys"]
    assert host.file("/root/.ssh/authorized_keys").content_string.split("\n") == [run_key, ""]


def test_the_seal_left_no_host_key(host, run_key):
    """No host key from the build: none, or (with the run's key) the one made at this boot."""
    found = _found(host, "ssh_host_*")
    if not run_key:
        assert found == []
        return
    assert found == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"]
    boot = host.run("awk '/^btime /{print $2}' /proc/stat")
    assert boot.rc == 0 and all(host.file(f).mtime.timestamp() >= int(boot.stdout) for f in found)


def test_seal_left_no_apt_lists(host):
    found = host.run("find /var/lib/apt/lists -type f -name %s -print", "*_Packages*")
    assert found.stdout.split() == []
