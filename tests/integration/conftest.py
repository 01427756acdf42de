"""Integration fixtures: a hermetic environment (temporary HOME and state),
the project's registry on a free loopback port, and helpers that run real
ansible-playbook and return each task's result."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ansible:
    """Runs one-play playbooks for real and returns the results of its tasks."""

    def __init__(self, env, workdir):
        self.env = env
        self.workdir = workdir

    def playbook(self, path, extra_vars=None, check=False, diff=False):
        argv = ["ansible-playbook", path]
        if extra_vars:
            vars_file = os.path.join(self.workdir, "vars-%s.json" % uuid.uuid4().hex[:8])
            with open(vars_file, "w") as f:
                json.dump(extra_vars, f)
            argv += ["-e", "@" + vars_file]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        env = dict(self.env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_JSON_INDENT="0")
        proc = subprocess.run(argv, env=env, cwd=TOP, capture_output=True, text=True, timeout=1800, check=False)
        try:
            doc = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            raise AssertionError("ansible-playbook printed no JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
        return Run(proc.returncode, doc, proc.stderr)

    def task(self, module, args, check=False, diff=False, **play_vars):
        """Run a single task on localhost; return (rc, result)."""
        play = [{
            "name": "Integration test", "hosts": "localhost", "gather_facts": False, "vars": play_vars,
            "tasks": [{"name": "Under test", module: args, "register": "under_test"}],
        }]
        path = os.path.join(self.workdir, "play-%s.yml" % uuid.uuid4().hex[:8])
        with open(path, "w") as f:
            json.dump(play, f)
        run = self.playbook(path, check=check, diff=diff)
        return run.rc, run.result("Under test")


class Run:
    def __init__(self, rc, doc, stderr):
        self.rc, self.doc, self.stderr = rc, doc, stderr

    def results(self, name):
        out = []
        for play in self.doc["plays"]:
            for task in play["tasks"]:
                # Role tasks are reported as "<role> : <task>".
                if task["task"]["name"] == name or task["task"]["name"].endswith(" : " + name):
                    out.append(task["hosts"]["localhost"])
        return out

    def result(self, name):
        found = self.results(name)
        assert found, "no task named %r ran; stats=%s stderr=%s" % (name, self.doc.get("stats"), self.stderr[-2000:])
        return found[-1]

    @property
    def changed(self):
        return sum(s.get("changed", 0) for s in self.doc["stats"].values())

    @property
    def failed(self):
        return sum(s.get("failures", 0) for s in self.doc["stats"].values())


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="immutable-infra-it-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def env(workdir):
    home = os.path.join(workdir, "home")
    os.makedirs(home)
    e = dict(os.environ)
    e.update(
        HOME=home,
        IMMUTABLE_INFRA_STATE_DIR=os.path.join(workdir, "state"),
        ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "ansible-tmp"),
        ANSIBLE_HOME=os.path.join(home, ".ansible"),
        CHECKPOINT_DISABLE="1",
        AWS_EC2_METADATA_DISABLED="true",     # boto3 never asks 169.254.169.254 for credentials
    )
    return e


@pytest.fixture(scope="session")
def ansible(env, workdir):
    return Ansible(env, workdir)


@pytest.fixture(scope="session")
def registry(ansible, workdir):
    """The project's registry, started by its role on a free port; stopped by pid at the end."""
    port = free_port()
    state = os.path.join(workdir, "registry-%d" % port)
    rvars = {"registry_port": port, "registry_state_dir": state}
    run = ansible.playbook(os.path.join(TOP, "playbooks", "registry.yml"), rvars)
    assert run.rc == 0, run.stderr
    try:
        yield {"address": "127.0.0.1:%d" % port, "port": port, "state_dir": state, "vars": rvars}
    finally:
        ansible.playbook(os.path.join(TOP, "playbooks", "registry.yml"), dict(rvars, registry_state="stopped"))


@pytest.fixture(scope="session")
def base(ansible, registry):
    """The base image in the test registry, built by the base playbook."""
    run = ansible.playbook(os.path.join(TOP, "playbooks", "base.yml"), {"catalog_registry": registry["address"]})
    assert run.rc == 0, run.stderr
    return run.result("Build the base image")


def tags(registry, name):
    """The repository's tags. [] only when the registry answers that the repository
    does not exist: any other failure (registry down, ...) fails the test."""
    proc = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "docker://%s/%s" % (registry["address"], name)],
                          capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return sorted(json.loads(proc.stdout)["Tags"] or [])
    if any(s in proc.stderr for s in ("404 (Not Found)", "NAME_UNKNOWN", "name unknown", "repository name not known")):
        return []
    raise AssertionError("cannot list the tags of %s in %s (rc=%d): %s"
                         % (name, registry["address"], proc.returncode, proc.stderr.strip()))


def versions(registry, name):
    """The repository's image versions: its tags without the lifecycle and security records
    (sha256-<hex>.sbom/.scan/.test/.revoked, channel.<name>) stored beside them."""
    return [t for t in tags(registry, name) if not t.startswith(("sha256-", "channel."))]


def bake_containers():
    proc = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    return sorted(n for n in proc.stdout.split() if n.startswith("immutable-bake-"))


# ------------------------------------------------------------------ releases
RELEASE = os.path.join(TOP, "playbooks", "release.yml")
ROLLBACK = os.path.join(TOP, "playbooks", "rollback.yml")
DECOMMISSION = os.path.join(TOP, "playbooks", "decommission.yml")
LOADGEN = os.path.join(TOP, "playbooks", "files", "loadgen.py")


@pytest.fixture(scope="session")
def release_images(ansible, registry, base):
    """Four versions of the web recipe under the repository `relweb`:
    ok1, ok2, ok3 answer /version with their message; `broken` fails /healthz."""
    out = {}
    for key, variables in (("ok1", {"web_message": "r1"}), ("ok2", {"web_message": "r2"}),
                           ("ok3", {"web_message": "r3"}), ("broken", {"web_message": "rb", "web_healthy": False})):
        run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
            "catalog_registry": registry["address"], "recipe": "web", "recipe_name": "relweb",
            "recipe_variables": variables})
        assert run.rc == 0, run.stderr
        out[key] = run.result("Bake the recipe")["image"]
    return out


@pytest.fixture(scope="session")
def apps(ansible, registry, env):
    """Unique app names for this session; everything they ran is removed at the end,
    and the session's router is stopped by its pid."""
    made = []

    def new(prefix="it"):
        name = "%s%s" % (prefix, uuid.uuid4().hex[:6])
        made.append(name)
        return name

    yield new
    for app in made:
        proc = subprocess.run(["podman", "ps", "-aq", "--filter", "label=infra.immutable.app=%s" % app],
                              capture_output=True, text=True, check=False)
        if proc.stdout.split():
            subprocess.run(["podman", "rm", "-f", "-t", "0"] + proc.stdout.split(), capture_output=True, check=False)
        remove_domains(app, env["HOME"])
    ansible.task("immutable.infra.router", {"state": "stopped"})


LIBVIRT_URI = "qemu:///system"


def remove_domains(app, home):
    """Remove the libvirt domains of an app (a failed VM test leaves them running)
    and their overlays under the session's HOME. Only when libvirt already runs."""
    if not os.path.exists("/run/libvirt/libvirt-sock") or not shutil.which("virsh"):
        return
    out = subprocess.run(["virsh", "-c", LIBVIRT_URI, "list", "--all", "--name"],
                         capture_output=True, text=True, check=False).stdout
    for dom in [d for d in out.split() if d.startswith(app + "-")]:
        subprocess.run(["virsh", "-c", LIBVIRT_URI, "destroy", dom], capture_output=True, check=False)
        subprocess.run(["virsh", "-c", LIBVIRT_URI, "undefine", dom], capture_output=True, check=False)
        for leftover in glob.glob(os.path.join(home, ".local", "state", "immutable-infra", "libvirt", dom + ".*")):
            os.unlink(leftover)


def release_vars(registry, app, image, port=None, **kw):
    v = {"app": app, "stack": kw.pop("stack", "prod"), "image": image, "catalog_registry": registry["address"],
         "release_count": 2, "release_verify_seconds": 1,
         "release_health_check": {"path": "/healthz", "interval": 0.2, "healthy_threshold": 2, "timeout": 2}}
    if port:
        v["release_port"] = port
    v.update(kw)
    return v


class Load:
    """The load generator (playbooks/files/loadgen.py) against an endpoint, as a context manager."""

    def __init__(self, workdir, url):
        self.stop = os.path.join(workdir, "load-%s.stop" % uuid.uuid4().hex[:8])
        self.out = self.stop + ".json"
        self.proc = subprocess.Popen(["python3", LOADGEN, "--url", url, "--stop-file", self.stop, "--out", self.out,
                                      "--duration", "600", "--concurrency", "3", "--pause", "0.01"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.report = None

    def __enter__(self):
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        open(self.stop, "w").close()
        self.proc.wait(timeout=60)
        with open(self.out) as f:
            self.report = json.load(f)
        return False


def endpoint_version(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/version" % port, timeout=5) as resp:
        return json.loads(resp.read())


def group_names(ansible, app, stack="prod"):
    rc, res = ansible.task("immutable.infra.server_group_info", {"app": app, "stack": stack})
    assert rc == 0, res
    return [g["name"] for g in res["groups"]]


def instance_names(app, stack="prod"):
    proc = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter",
                           "label=infra.immutable.app=%s" % app, "--filter", "label=infra.immutable.stack=%s" % stack],
                          capture_output=True, text=True, check=True)
    return sorted(proc.stdout.split())


def traffic(ansible, app, stack="prod"):
    rc, res = ansible.task("immutable.infra.traffic_info", {"app": app, "stack": stack})
    assert rc == 0, res
    return res["endpoint"]


def router_command(env, line):
    """The router's answer to one runtime API command on its admin socket, or None when it does not run."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "router", "admin.sock"))
        except OSError:
            return None
        s.sendall(line.encode() + b"\n")
        with s.makefile("rb") as answer:       # haproxy closes after one answer
            return answer.read().decode()


def live_weights(env, app, stack="prod"):
    """{server: (status, weight)} of an app/stack's backend, read live from the router's runtime API
    (not from routes.json, which a reload never changes); {} when the router does not run."""
    import csv
    import io
    rows = csv.DictReader(io.StringIO((router_command(env, "show stat") or "").lstrip("# ")))
    return {r["svname"]: (r["status"], int(r["weight"] or 0)) for r in rows
            if r.get("pxname") == "be_%s_%s" % (app, stack) and r["svname"] not in ("FRONTEND", "BACKEND")}


# ------------------------------------------------------------------ leases and killed runs
def lease_path(env, app, stack="prod"):
    return os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "router", "leases", "%s-%s.json" % (app, stack))


def read_lease(env, app, stack="prod"):
    try:
        with open(lease_path(env, app, stack)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def lease_log(env):
    try:
        with open(os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "router", "leases", "log.jsonl")) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def start_release(env, extra_vars, workdir, playbook=RELEASE):
    """A playbook (the release by default) in the background, in its own process group."""
    path = os.path.join(workdir, "bg-%s.json" % time.monotonic_ns())
    with open(path, "w") as f:
        json.dump(extra_vars, f)
    return subprocess.Popen(["ansible-playbook", playbook, "-e", "@" + path], env=env, cwd=TOP,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def proc_stat(pid):
    """(ppid, start time in clock ticks) of a live process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else (int(fields[1]), int(fields[19]))


def alive(pid):
    return proc_stat(pid) is not None


def children(pid):
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and (proc_stat(int(d)) or (0,))[0] == pid]


def kill_release_when(env, workdir, extra_vars, cond, what, group=True):
    """Start a release, wait for cond(), then SIGKILL its process group, or the ansible-playbook
    process alone (group=False: its workers call setsid and live on). Returns (pid, its workers then)."""
    proc = start_release(env, extra_vars, workdir)
    workers = []
    try:
        wait_for(cond, 120, what)
        workers = children(proc.pid)
    finally:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.pid, workers


def assert_converged(ansible, app, port, message="r2"):
    """After a killed release and its re-run: one enabled group serving the wanted version, groups
    within retention (keep 2), no orphan instance, nothing extra, all servers UP."""
    assert endpoint_version(port)["message"] == message
    ep = traffic(ansible, app)
    assert ep["enabled"] == ["%s-prod-v002" % app]
    groups = group_names(ansible, app)
    assert groups == ["%s-prod-v001" % app, "%s-prod-v002" % app]
    assert all(n.rsplit("-", 1)[0] in groups for n in instance_names(app))
    assert len(instance_names(app)) == 4
    assert all(s["status"].startswith("UP") for g in ep["groups"].values() for s in g["servers"])


def live_weights_only(env, app, stack="prod"):
    """{server: weight} read live from the router (health states may flicker under load; weights must not)."""
    return {name: weight for name, (_status, weight) in live_weights(env, app, stack).items()}


# ---------------------------------------------------------------- the VM lane
# Tests that boot VMs (qemu/libvirt) run in their own lane of the test command
# (`scripts/test.sh vm`); the container lane (`integration`) leaves them out.
VM_LANE_FILES = ("test_vm_", "test_libvirt")


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots VMs (qemu/libvirt); run by `scripts/test.sh vm`")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if os.path.basename(str(item.fspath)).startswith(VM_LANE_FILES):
            item.add_marker(pytest.mark.vm)


# ---------------------------------------------------------------- VM images (base VM, golden VMs)
# Fixtures and helpers for tests that need VM images (the libvirt platform's tests use them too):
#   base_vm_image       session: immutable/base-vm built by playbooks/base.yml (base_format=vm) in the
#                       session registry; the bake task's result (["image"]: version, digest, reference, labels)
#   vm_cache_dir(env)   the VM image cache modules use under the session's HOME
#   fetch_vm_image(env, reference)
#                       _vm_image.fetch() into that cache: {"disk", "kernel", "initrd", "kernel_args", "digest", ...}
#   QemuVM              boots a fetched VM image with plain qemu-system-x86_64 (no libvirt): a qcow2 overlay,
#                       fw_cfg identity/env/authorized_keys, tcp ports forwarded to 127.0.0.1, serial log; by pid
def _collection_import_path():
    import sys
    path = os.path.join(TOP, ".cache", "collections")
    if path not in sys.path:
        sys.path.insert(0, path)


def vm_cache_dir(env):
    return os.path.join(env["HOME"], ".cache", "immutable-infra", "vm-images")


def fetch_vm_image(env, reference):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _vm_image
    return _vm_image.fetch(reference, cache_dir=vm_cache_dir(env))


def vm_accelerator(env):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _vm_image
    return _vm_image.accelerator(cache_dir=vm_cache_dir(env))


@pytest.fixture(scope="session")
def base_vm_image(ansible, registry):
    """immutable/base-vm in the session registry (format vm), built once by playbooks/base.yml."""
    run = ansible.playbook(os.path.join(TOP, "playbooks", "base.yml"),
                           {"catalog_registry": registry["address"], "base_format": "vm"})
    assert run.rc == 0, run.stderr
    return run.result("Build the base image")


class QemuVM:
    """A VM booted with plain qemu from a fetched VM image (see fetch_vm_image), as a context manager.

    Its disk is a qcow2 overlay in workdir on the golden disk (which is only read). Identity and
    environment go in through fw_cfg (the guest contract); `ports` are guest tcp ports forwarded to
    free ports on 127.0.0.1 (self.ports maps guest -> host). The serial console goes to self.serial_log.
    qemu is stopped by its pid on exit, and the overlay removed."""

    def __init__(self, image, workdir, accel, hostname, instance_id, env=None, ports=(22,), authorized_keys=None,
                 memory=512):
        self.dir = tempfile.mkdtemp(prefix="qemu-vm-", dir=workdir)
        self.overlay = os.path.join(self.dir, "disk.qcow2")
        self.serial_log = os.path.join(self.dir, "serial.log")
        self.ports = {p: free_port() for p in ports}
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image["disk"], self.overlay],
                       check=True)
        env_file = os.path.join(self.dir, "env")
        with open(env_file, "w") as f:
            f.write("".join("%s=%s\n" % kv for kv in dict(env or {}, INSTANCE_ID=instance_id).items()))
        fwd = ",".join("hostfwd=tcp:127.0.0.1:%d-:%d" % (h, g) for g, h in self.ports.items())
        self.argv = ["qemu-system-x86_64", "-accel", accel, "-m", str(memory), "-smp", "2", "-nodefaults",
                     "-display", "none", "-no-reboot", "-serial", "file:" + self.serial_log,
                     "-kernel", image["kernel"], "-initrd", image["initrd"], "-append", image["kernel_args"],
                     "-drive", "file=%s,if=virtio,format=qcow2" % self.overlay,
                     "-netdev", "user,id=n0,restrict=on" + ("," + fwd if fwd else ""),
                     "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci",
                     "-fw_cfg", "name=opt/immutable/hostname,string=%s" % hostname,
                     "-fw_cfg", "name=opt/immutable/instance-id,string=%s" % instance_id,
                     "-fw_cfg", "name=opt/immutable/env,file=%s" % env_file]
        if authorized_keys:
            self.argv += ["-fw_cfg", "name=opt/immutable/authorized_keys,file=%s" % authorized_keys]
        self.proc = None
        self.started = None

    def __enter__(self):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def serial(self):
        try:
            with open(self.serial_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait(self, cond, timeout, what):
        """Wait for cond() to return a true value (returned), failing early when qemu exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("qemu exited (rc=%s) before %s: %s\nserial tail:\n%s"
                                     % (self.proc.returncode, what, self.proc.stderr.read().decode()[-2000:],
                                        self.serial()[-3000:]))
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %ss waiting for %s; serial tail:\n%s"
                                     % (timeout, what, self.serial()[-3000:]))
            time.sleep(0.5)

    def ssh(self, key, command, timeout=10):
        """(rc, stdout) of a command run as root over the forwarded SSH port."""
        proc = subprocess.run(["ssh", "-q", "-i", key, "-p", str(self.ports[22]), "-o", "BatchMode=yes",
                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "-o", "ConnectTimeout=5", "root@127.0.0.1", command],
                              capture_output=True, text=True, timeout=timeout + 10, check=False)
        return proc.returncode, proc.stdout


def bake_web_vm(ansible, registry, name="vmweb", **variables):
    """Bake the web recipe's VM image (playbooks/bake.yml -e bake_only=vm) into <name>-vm, on the session's
    immutable/base-vm (request base_vm_image first); returns the bake task's result. ~1.5 min under TCG."""
    run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
        "catalog_registry": registry["address"], "recipe": "web", "recipe_name": name, "bake_only": "vm",
        "recipe_variables": dict({"web_message": name}, **variables)})
    assert run.rc == 0, run.stderr + json.dumps(run.doc.get("stats"))
    return run.result("Bake the recipe")


@pytest.fixture(scope="session")
def web_vm_image(ansible, registry, base_vm_image):
    """The web recipe's golden VM image in `vmweb-vm` (web_message "vmweb", port 8080), baked once per session.
    ["image"] has version, digest, reference, format ("vm") and labels (infra.immutable.port, kernel-args)."""
    return bake_web_vm(ansible, registry)


# ------------------------------------------------- one release scenario, every real platform
def platform_groups(ansible, app, platform="podman", platform_options=None, stack="prod"):
    """{group: [instance names]} of an app/stack, read through server_group_info on the platform."""
    rc, res = ansible.task("immutable.infra.server_group_info", {
        "app": app, "stack": stack, "platform": platform, "platform_options": platform_options or {}})
    assert rc == 0, res
    return {g["name"]: sorted(i["name"] for i in g["instances"]) for g in res["groups"]}


def fleet_groups(ansible, workdir, app, platform="podman", platform_options=None):
    """{inventory group: [hosts]} of an app as the fleet inventory plugin lists it on the platform."""
    path = os.path.join(tempfile.mkdtemp(prefix="fleet-", dir=workdir), "fleet.yml")
    with open(path, "w") as f:
        json.dump({"plugin": "immutable.infra.fleet", "platform": platform, "platform_options": platform_options or {},
                   "filters": {"app": app}, "router_state_file": os.path.join(
                       ansible.env["IMMUTABLE_INFRA_STATE_DIR"], "router", "routes.json")}, f)
    proc = subprocess.run(["ansible-inventory", "-i", path, "--list"], env=dict(
        ansible.env, ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1"), cwd=TOP, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    return {g: sorted(v.get("hosts", [])) for g, v in doc.items() if g != "_meta"}


def platform_scenario(ansible, registry, workdir, app, versions, platform="podman", platform_options=None, **release):
    """The scenario every real platform passes, through the playbooks and the platform-neutral
    modules only. versions = [(image, its /version message), (image, message)]: release the first;
    release the second under load with no failed request, the first group kept warm out of traffic;
    roll back under load (no instance started); decommission everything. `release` adds release
    variables (release_count, release_wait_timeout, ...). Returns the seconds each step took."""
    port, took = free_port(), {}
    pv = {"platform": platform, "platform_options": platform_options or {}}
    (img1, msg1), (img2, msg2) = versions
    v1, v2 = "%s-prod-v001" % app, "%s-prod-v002" % app

    def step(name, playbook, extra):
        started = time.monotonic()
        run = ansible.playbook(playbook, dict(extra, **pv))
        took[name] = round(time.monotonic() - started, 2)
        assert run.rc == 0, (name, [r.get("msg") for r in run.results("Fail with the reason")], run.stderr[-3000:])

    step("first release", RELEASE, release_vars(registry, app, img1, port, **release))
    assert endpoint_version(port)["message"] == msg1
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        step("release under load", RELEASE, release_vars(registry, app, img2, **release))
        time.sleep(0.5)
    assert load.report["failed"] == 0, load.report
    assert endpoint_version(port)["message"] == msg2
    groups = platform_groups(ansible, app, platform, platform_options)
    assert sorted(groups) == [v1, v2] and all(groups.values()), groups
    inv = fleet_groups(ansible, workdir, app, platform, platform_options)
    assert inv.get("group_%s_prod_v001" % app) == groups[v1] and inv.get("group_%s_prod_v002" % app) == groups[v2], inv
    assert inv.get("traffic_enabled") == groups[v2] and inv.get("traffic_disabled") == groups[v1], inv
    ep = traffic(ansible, app)
    assert ep["enabled"] == [v2] and ep["groups"][v1]["weight"] == 0 and ep["groups"][v1]["healthy"] == len(groups[v1])
    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        step("rollback", ROLLBACK, {"app": app, "stack": "prod", "catalog_registry": registry["address"]})
        time.sleep(0.5)
    assert load.report["failed"] == 0, load.report
    assert endpoint_version(port)["message"] == msg1
    assert platform_groups(ansible, app, platform, platform_options) == groups      # warm: nothing started
    step("decommission", DECOMMISSION, {"app": app, "stack": "prod", "decommission_force": True})
    assert platform_groups(ansible, app, platform, platform_options) == {} and traffic(ansible, app) is None
    return took


# ---------------------------------------------------------------- lifecycle (issue 8)
def push_test_image(registry, name, tag, labels=None):
    """Push a tiny image version (one small layer, `labels` on its config) to the
    session registry through the registry API, without Packer; return its digest
    (the registry's manifest digest, as skopeo inspect reports it). The layer and
    config name the repository and tag, so every (name, tag) gets its own digest."""
    import gzip
    import hashlib
    import io
    import tarfile

    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._oci import MEDIA_OCI_MANIFEST, RegistryClient

    payload = ("%s:%s %s\n" % (name, tag, uuid.uuid4().hex)).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("version.txt")
        info.size, info.mtime = len(payload), 0
        tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    all_labels = {"org.opencontainers.image.version": str(tag), "org.opencontainers.image.created": created}
    all_labels.update(labels or {})
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Labels": all_labels, "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
    }, sort_keys=True).encode()
    client = RegistryClient(registry["address"])
    return client.put_manifest(name, str(tag), {
        "schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
        "config": client.put_blob(name, config, "application/vnd.oci.image.config.v1+json"),
        "layers": [client.put_blob(name, layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    })


# ------------------------------------------------------------------ revocation and ancestry
def derived_image(registry, base, name, tag):
    """A runnable version name:tag made from the session's base image plus labels (its own digest,
    so revoking it or moving a channel to it touches nothing else), built by podman and pushed to
    the session registry; returns its digest."""
    ref = "%s/%s:%s" % (registry["address"], name, tag)
    with tempfile.TemporaryDirectory() as ctx:
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write("FROM %s\nLABEL org.opencontainers.image.version=%s infra.immutable.test-image=%s\n"
                    % (base["image"]["reference"], tag, uuid.uuid4().hex))
        for argv in (["podman", "build", "-q", "--tls-verify=false", "-t", ref, ctx],
                     ["podman", "push", "-q", "--tls-verify=false", ref]):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, (argv, proc.stderr)
    subprocess.run(["podman", "rmi", "-f", ref], capture_output=True, check=False)
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--no-tags", "docker://" + ref],
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)["Digest"]


def move_channel(env, registry, name, channel, digest):
    """Point a channel at a version through the lifecycle storage (its lock files in the session's state)."""
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle
    saved = os.environ.get("IMMUTABLE_INFRA_STATE_DIR")
    os.environ["IMMUTABLE_INFRA_STATE_DIR"] = env["IMMUTABLE_INFRA_STATE_DIR"]
    try:
        return Lifecycle(registry["address"]).move_channel(name, channel, digest, "integration-test")
    finally:
        if saved is None:
            os.environ.pop("IMMUTABLE_INFRA_STATE_DIR")
        else:
            os.environ["IMMUTABLE_INFRA_STATE_DIR"] = saved


@pytest.fixture(scope="session")
def lineage(ansible, registry, base, env):
    """A parent repository `parent` with versions 1 and 2 (runnable, from the base image), its channel
    production at 1, and the web recipe baked on that channel as `child` version 1 (web_message "lin1").
    Keys: parent, child, p1, p2 (digests), c1 (the child's facts)."""
    uid = uuid.uuid4().hex[:6]
    out = {"parent": "linbase%s" % uid, "child": "linweb%s" % uid}
    out["p1"], out["p2"] = (derived_image(registry, base, out["parent"], t) for t in ("1", "2"))
    move_channel(env, registry, out["parent"], "production", out["p1"])
    run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
        "catalog_registry": registry["address"], "recipe": "web", "recipe_name": out["child"],
        "recipe_parent": out["parent"], "recipe_parent_channel": "production", "recipe_variables": {"web_message": "lin1"}})
    assert run.rc == 0, run.stderr + json.dumps(run.doc.get("stats"))
    out["c1"] = run.result("Bake the recipe")["image"]
    return out


@pytest.fixture(scope="session", autouse=True)
def project_libvirtd_left_as_found():
    """The project's libvirtd and virtlogd (started on demand, by pid file) are stopped at the end of
    the session when they did not run before it: the suite leaves no daemon behind it started."""
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _libvirtd
    before = _libvirtd.started()
    yield
    if not before and _libvirtd.started():
        _libvirtd.stop()


# ------------------------------------------------------------------ AWS without AWS (moto)
MOTO_REGIONS = ("us-east-1", "eu-west-1")


@pytest.fixture(scope="session")
def moto(env, workdir):
    """A moto server on a free loopback port, started for this session and stopped by pid.

    Returns {"endpoint_url", "port", "region", "regions", "options" (the AWS connection options
    every AWS-facing option set takes: dummy credentials + endpoint_url), "env" (the same as
    environment variables, for boto3 in the test and for amazon.aws modules)}. The instance
    metadata service is never asked (AWS_EC2_METADATA_DISABLED): traffic stays on loopback."""
    port = free_port()
    exe = os.path.join(os.path.dirname(os.path.realpath(shutil.which("python") or "python")), "moto_server")
    exe = exe if os.path.exists(exe) else shutil.which("moto_server")
    log = open(os.path.join(workdir, "moto-%d.log" % port), "w")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(env, AWS_EC2_METADATA_DISABLED="true"))
    url = "http://127.0.0.1:%d" % port
    try:
        wait_for(lambda: _http_ok(url + "/moto-api/"), 30, "moto server on %s" % url)
        options = {"endpoint_url": url, "region": MOTO_REGIONS[0], "access_key": "testing", "secret_key": "testing"}
        aws_env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": MOTO_REGIONS[0], "AWS_REGION": MOTO_REGIONS[0],
                   "AWS_EC2_METADATA_DISABLED": "true"}
        yield {"endpoint_url": url, "port": port, "region": MOTO_REGIONS[0], "regions": MOTO_REGIONS,
               "options": options, "env": aws_env}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except Exception:
        return False


def moto_reset(moto):
    """Forget every resource in the moto server (between tests that must start empty)."""
    req = urllib.request.Request(moto["endpoint_url"] + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def boto3_client(moto, service, region=None):
    """A boto3 client on the moto server, to read back what the modules made."""
    import boto3
    return boto3.client(service, endpoint_url=moto["endpoint_url"], region_name=region or moto["region"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")
