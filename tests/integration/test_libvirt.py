"""The libvirt platform against real libvirt and qemu (TCG here): two instances
of the base VM with their identity, reachable on 127.0.0.1, a killed domain seen
as not running, removal leaving nothing; and each bad input a clear error that
leaves no domain and no overlay behind."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import uuid

import pytest

from conftest import _collection_import_path, vm_cache_dir

URI = "qemu:///system" if os.geteuid() == 0 else "qemu:///session"


def virsh(*args):
    return subprocess.run(["virsh", "-q", "-c", URI] + list(args), capture_output=True, text=True, check=False)


def domains(prefix):
    return sorted(n for n in virsh("list", "--all", "--name").stdout.split() if n.startswith(prefix))


def answer(port, timeout=3.0):
    """What the guest behind a forwarded port says: its banner, b"" when it refuses the
    connection (qemu closes ours on the guest's RST), None while no guest network answers
    (qemu holds the connection open, unanswered)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.settimeout(timeout)
            return s.recv(64)
    except socket.timeout:
        return None
    except ConnectionResetError:
        return b""


@pytest.fixture
def libvirt(env, workdir):
    """A LibvirtPlatform on the session's VM image cache and its own state dir; every domain
    of the apps a test names (platform.apps) is removed afterwards, even when the test failed."""
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._platforms import get_platform
    state = tempfile.mkdtemp(prefix="libvirt-state-", dir=workdir)
    platform = get_platform("libvirt", cache_dir=vm_cache_dir(env), state_dir=state)
    platform.apps = []
    yield platform
    for app in platform.apps:
        leftover = domains(app + "-")
        for name in leftover:
            virsh("destroy", name)
            virsh("undefine", name)
        assert not leftover, "the test left domains behind: %s" % leftover


def spec(app, image, sequence=1, port=22, zone="zone-a", **kw):
    out = {"app": app, "stack": "prod", "group": "%s-prod-v%03d" % (app, sequence), "sequence": sequence,
           "image": image["reference"], "image_digest": image["digest"], "image_version": image["version"],
           "zone": zone, "port": port, "extra_ports": [], "env": {}, "stop_timeout": 5}
    out.update(kw)
    return out


def new_app(platform):
    app = "lv%s" % uuid.uuid4().hex[:6]
    platform.apps.append(app)
    return app


def test_two_instances_run_with_their_identity_die_and_leave_nothing(libvirt, base_vm_image):
    image = base_vm_image["image"]
    app = new_app(libvirt)
    libvirt.pull(image["reference"])
    started = time.monotonic()
    made = libvirt.create_instances([spec(app, image, zone="zone-a", env={"GREETING": "hi there"}),
                                     spec(app, image, zone="zone-b")])
    running = time.monotonic()
    names = [i["name"] for i in made]
    assert [i["state"] for i in made] == ["running", "running"] and len(set(names)) == 2
    listed = libvirt.list_instances(app=app)
    assert sorted(i["name"] for i in listed) == sorted(names) == domains(app + "-")
    for inst, zone in zip(sorted(listed, key=lambda i: i["zone"]), ("zone-a", "zone-b")):
        assert inst == dict(inst, app=app, stack="prod", group="%s-prod-v001" % app, sequence=1, zone=zone,
                            instance_id=inst["name"], image=image["reference"], image_digest=image["digest"],
                            image_version=image["version"], port=22, host="127.0.0.1", state="running")
        assert inst["ports"] == {22: inst["host_port"]} and inst["id"] and inst["created"]
        assert libvirt.address(inst, 22) == ("127.0.0.1", inst["host_port"])
        assert libvirt.instance(inst["name"]) == inst
    # The overlay is the only disk written; its backing file is the read-only cached golden disk.
    golden = os.path.realpath(libvirt._fetch(image["reference"])["disk"])
    overlays = sorted(f for f in os.listdir(libvirt.state_dir) if f.endswith(".qcow2"))
    assert overlays == sorted(n + ".qcow2" for n in names)
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json",
                                      os.path.join(libvirt.state_dir, overlays[0])],
                                     capture_output=True, text=True, check=True).stdout)
    assert os.path.realpath(info["backing-filename"]) == golden and os.stat(golden).st_mode & 0o222 == 0

    # The base VM runs no sshd without a key: the guest's network answers port 22 with a refusal
    # (a banner would do too) once it has booted; before, nothing answers.
    ports = {i["name"]: i["host_port"] for i in made}
    assert answer(ports[names[0]]) is None, "a guest answered before it could have booted"
    reached = {}
    while len(reached) < 2 and time.monotonic() - running < 300:
        for name, port in ports.items():
            if name not in reached and answer(port) is not None:
                reached[name] = time.monotonic() - running
        time.sleep(0.5)
    assert len(reached) == 2, "not every guest answered on its forwarded port: %s; console: %s" % (
        reached, libvirt.logs(names[0]))
    for name in names:       # the guest got its identity through fw_cfg
        assert "immutable-identity: hostname=%s instance-id=%s" % (name, name) in libvirt.logs(name, 400)

    # Only loopback: the forwarded port does not listen on other addresses.
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=False).stdout
    for port in ports.values():
        assert [line for line in listening.splitlines() if line.split()[3].endswith(":%d" % port)] != []
        assert all(line.split()[3] == "127.0.0.1:%d" % port
                   for line in listening.splitlines() if line.split()[3].endswith(":%d" % port))

    assert virsh("destroy", names[0]).returncode == 0            # its qemu is killed
    assert libvirt.instance(names[0])["state"] != "running"
    assert [i["state"] for i in libvirt.list_instances(group="%s-prod-v001" % app)
            if i["name"] == names[1]] == ["running"]

    removing = time.monotonic()
    assert libvirt.destroy_instances(names, timeout=60) == names
    removed = time.monotonic()
    assert domains(app + "-") == [] and libvirt.list_instances(app=app) == []
    assert os.listdir(libvirt.state_dir) == []
    print("libvirt: create to running %.1fs for 2, boot to port %s, destroy (ACPI) %.1fs"
          % (running - started, ", ".join("%.1fs" % s for s in sorted(reached.values())), removed - removing))


# ------------------------------------------------------------------ bad inputs
def assert_nothing_left(platform, app):
    assert domains(app + "-") == [], "a domain was left behind"
    assert os.listdir(platform.state_dir) == [], "files were left behind"


def push_vm_image(env, registry, repository, members, kernel_args="root=/dev/vda rw console=ttyS0"):
    """A hand-made VM image (format=vm labels, the given {path in image: bytes}) pushed to the registry."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fd, path = tempfile.mkstemp(suffix=".tar")
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    ref = "%s/%s:1" % (registry["address"], repository)
    try:
        out = subprocess.run(["podman", "import", "-q", "--change", "LABEL infra.immutable.format=vm",
                              "--change", "LABEL infra.immutable.kernel-args=%s" % json.dumps(kernel_args), path],
                             env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
        subprocess.run(["podman", "push", "-q", "--tls-verify=false", out, "docker://" + ref],
                       env=env, capture_output=True, text=True, check=True)
        subprocess.run(["podman", "rmi", "-f", out], env=env, capture_output=True, check=False)
    finally:
        os.unlink(path)
    return {"reference": ref, "digest": "sha256:" + "0" * 64, "version": "1"}


@pytest.mark.parametrize("missing", ["boot/vmlinuz", "boot/initrd.img"])
def test_a_vm_image_without_kernel_or_initrd_is_refused(libvirt, env, registry, missing):
    from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
    app = new_app(libvirt)
    members = {"disk/disk.qcow2": b"x" * 512, "boot/vmlinuz": b"k" * 64, "boot/initrd.img": b"i" * 64}
    del members[missing]
    image = push_vm_image(env, registry, "%s-vm" % app, members)
    with pytest.raises(ImmutableInfraError, match="lacks its (kernel|initrd)"):
        libvirt.create_instances([spec(app, image)])
    assert_nothing_left(libvirt, app)


def test_a_corrupt_qcow2_is_refused(libvirt, env, registry):
    from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
    app = new_app(libvirt)
    members = {"disk/disk.qcow2": b"QFI\xfb" + b"\0" * 1020, "boot/vmlinuz": b"k" * 64, "boot/initrd.img": b"i" * 64}
    image = push_vm_image(env, registry, "%s-vm" % app, members)
    with pytest.raises(ImmutableInfraError, match="corrupt|not a qcow2"):
        libvirt.create_instances([spec(app, image)])
    assert_nothing_left(libvirt, app)
    assert not [n for n in os.listdir(vm_cache_dir(env)) if n.startswith(".fetch-")]


def test_libvirt_not_available_is_named(libvirt, env, workdir, base_vm_image):
    from ansible_collections.immutable.infra.plugins.module_utils._platforms import get_platform
    from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
    app = new_app(libvirt)
    nothing = os.path.join(workdir, "nothing-%s.sock" % app)
    down = get_platform("libvirt", uri="qemu:///system?socket=" + nothing, cache_dir=libvirt.cache_dir,
                        state_dir=libvirt.state_dir)
    with pytest.raises(ImmutableInfraError, match="libvirt is not available at .*nothing answers on %s" % nothing):
        down.create_instances([spec(app, base_vm_image["image"])])
    assert_nothing_left(libvirt, app)


def test_virsh_missing_is_named(libvirt, base_vm_image, workdir, monkeypatch):
    from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
    app = new_app(libvirt)
    bin_dir = tempfile.mkdtemp(prefix="no-virsh-", dir=workdir)
    for tool in ("qemu-img", "skopeo"):
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout.strip(),
                   os.path.join(bin_dir, tool))
    monkeypatch.setenv("PATH", bin_dir)
    with pytest.raises(ImmutableInfraError, match="virsh is not installed"):
        libvirt.create_instances([spec(app, base_vm_image["image"])])
    monkeypatch.undo()
    assert_nothing_left(libvirt, app)


def test_a_port_already_taken_is_named_and_leaves_nothing(libvirt, base_vm_image, monkeypatch):
    from ansible_collections.immutable.infra.plugins.module_utils._platforms import _libvirt
    from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
    app = new_app(libvirt)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Someone binds the port between the platform choosing it and qemu binding it.
        monkeypatch.setattr(_libvirt, "free_ports", lambda count: [port] * count)
        with pytest.raises(ImmutableInfraError, match="forwarded port is already taken on 127.0.0.1 .*%d->22" % port):
            libvirt.create_instances([spec(app, base_vm_image["image"])])
    assert_nothing_left(libvirt, app)


def test_a_vm_that_never_becomes_healthy_shows_its_console(libvirt, ansible, env, registry, base_vm_image):
    app = new_app(libvirt)
    args = {"app": app, "stack": "prod", "count": 1, "zones": ["zone-a"], "registry": registry["address"],
            "image": "immutable/base-vm:%s" % base_vm_image["image"]["version"], "port": 8080,
            "health_check": {"interval": 1}, "wait_timeout": 60, "platform": "libvirt"}
    rc, res = ansible.task("immutable.infra.server_group", args)
    assert rc != 0 and "not healthy within 60s" in res["msg"], res
    # The message ends with the tail of the instance's serial console.
    [name] = res["unhealthy"]
    tail = res["msg"].split("logs: ", 1)[1].rsplit(")", 1)[0].split(" | ")
    console = libvirt.logs(name, 1000)
    assert "immutable-identity: hostname=%s" % name in console and tail and all(line in console for line in tail), res
    rc, res = ansible.task("immutable.infra.server_group", dict(args, state="absent"))
    assert rc == 0 and res["changed"], res
    state = os.path.join(env["HOME"], ".local", "state", "immutable-infra", "libvirt")
    assert domains(app + "-") == [] and [f for f in os.listdir(state) if f.startswith(app)] == []


def test_web_vm_instances_answer_http_on_loopback(libvirt, web_vm_image):
    """The golden web VM: its service answers HTTP 200 through the forwarded port of each instance."""
    image = web_vm_image["image"]
    port = int(image["labels"]["infra.immutable.port"])
    app = new_app(libvirt)
    started = time.monotonic()
    made = libvirt.create_instances([spec(app, image, port=port, zone=z, env={"ZONE_NOTE": z}) for z in ("a", "b")])
    answered = {}
    while len(answered) < 2 and time.monotonic() - started < 300:
        for inst in made:
            if inst["name"] not in answered:
                try:
                    with urllib.request.urlopen(inst["endpoint"] + "/healthz", timeout=3) as resp:
                        if resp.status == 200:
                            answered[inst["name"]] = time.monotonic() - started
                except (OSError, ValueError):
                    pass
        time.sleep(0.5)
    assert len(answered) == 2, "not every web VM answered HTTP 200: %s; console: %s" % (
        answered, libvirt.logs(made[0]["name"]))
    libvirt.destroy_instances([i["name"] for i in made], timeout=30)
    assert domains(app + "-") == [] and os.listdir(libvirt.state_dir) == []
    print("libvirt web VM: create to HTTP 200 %s" % ", ".join("%.1fs" % s for s in sorted(answered.values())))
