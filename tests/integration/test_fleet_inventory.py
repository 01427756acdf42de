"""The fleet inventory plugin against real instances: first a real release
(two versions of the web image through playbooks/release.yml), whose groups
the inventory must match; then hand-labelled containers for what a release
never makes (a stopped instance, a template in a label, odd users).
ansible-inventory sees exactly this run's instances, grouped; an ad-hoc
command reaches them through the podman connection."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from conftest import RELEASE, TOP, free_port, release_vars

# Minimal Debian images with python3 that may already be here (molecule / make demo built them).
LOCAL_IMAGES = ("localhost/immutable-infra-molecule-base:bookworm", "127.0.0.1:5000/immutable/base:1")


def podman(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=120)


def repository(ref):
    """registry/name of a reference, without tag or digest (a registry port is not a tag)."""
    parts = ref.split("@")[0].split("/")
    return "/".join(parts[:-1] + [parts[-1].split(":")[0]])


@pytest.fixture(scope="module")
def instance_image(request):
    """(reference to run, reference pinned by digest, digest) of a local base image; built only if none is here."""
    for ref in LOCAL_IMAGES:
        if podman("image", "exists", ref, check=False).returncode == 0:
            break
    else:
        ref = request.getfixturevalue("base")["image"]["reference"]
    digest = podman("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()
    return ref, "%s@%s" % (repository(ref), digest), digest


@pytest.fixture(scope="module")
def fleet(instance_image):
    """Four instances of an app named for this run: prod v001 (zone-a), prod v002 (zone-a, zone-b; one as a
    non-root user), acme v001 (zone-b, stopped). Removed by name at the end, and only those."""
    ref, pinned, digest = instance_image
    app = "fleettest%s" % uuid.uuid4().hex[:8]
    specs = [
        # stack, sequence, image version, zone, extra podman args
        ("prod", 1, "1", "zone-a", []),
        ("prod", 2, "2", "zone-a", []),
        ("prod", 2, "2", "zone-b", ["--user", "nobody"]),
        ("acme", 1, "1", "zone-b", []),
    ]
    created = []
    try:
        for stack, seq, version, zone, extra in specs:
            group = "%s-%s-v%03d" % (app, stack, seq)
            name = "%s-%s" % (group, uuid.uuid4().hex[:6])
            labels = {
                "app": app, "stack": stack, "group": group, "sequence": seq, "image": pinned,
                "image-digest": digest, "image-version": version, "zone": zone, "instance-id": name, "port": 8080,
            }
            argv = ["run", "-d", "--name", name, "-p", "127.0.0.1::8080"] + extra
            for key, value in labels.items():
                argv += ["--label", "infra.immutable.%s=%s" % (key, value)]
            # Whoever starts a container writes its labels: the inventory must never template them.
            argv += ["--label", "infra.immutable.note={{ 6 * 7 }}"]
            created.append(name)
            podman(*(argv + [ref, "sleep", "600"]))
        podman("stop", "-t", "0", created[3])
        yield {"app": app, "names": created, "prod1": created[0], "prod2": created[1:3], "acme": created[3],
               "nobody": created[2], "pinned": pinned, "digest": digest}
    finally:
        for name in created:
            podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture
def source(fleet, workdir):
    """Writes a fleet.yml (with the run's app filter) into a fresh directory; returns its path."""
    def write(**options):
        d = tempfile.mkdtemp(prefix="fleet-", dir=workdir)
        path = os.path.join(d, "fleet.yml")
        with open(path, "w") as f:
            json.dump(dict({"plugin": "immutable.infra.fleet", "filters": {"app": fleet["app"]}}, **options), f)
        return path
    return write


def plain(doc):
    """ansible-inventory marks untrusted strings {"__ansible_unsafe": value}; the value is what the plugin set."""
    if isinstance(doc, dict):
        if list(doc) == ["__ansible_unsafe"]:
            return doc["__ansible_unsafe"]
        return {k: plain(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [plain(v) for v in doc]
    return doc


def inventory(env, path, *args, **extra_env):
    proc = subprocess.run(["ansible-inventory", "-i", path, "--list", *args], env=dict(env, **extra_env), cwd=TOP,
                          capture_output=True, text=True, timeout=120, check=False)
    return proc


def listed(env, path, *args):
    proc = inventory(env, path, *args, ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1")
    assert proc.returncode == 0, proc.stderr
    doc = plain(json.loads(proc.stdout))
    hostvars = doc["_meta"]["hostvars"]
    groups = {g: sorted(v.get("hosts", [])) for g, v in doc.items() if g != "_meta"}
    return hostvars, groups, proc.stderr


def host_port(name):
    out = podman("port", name, "8080/tcp").stdout.strip()
    return int(out.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def released(ansible, registry, release_images, apps, env):
    """An app released twice by release.yml: v001 (disabled, warm) and v002 (enabled), two instances
    each in zone-a and zone-b; with the groups as server_group_info reports them."""
    app, port = apps("fleetrel"), free_port()
    for image in ("relweb:1", "relweb:2"):
        run = ansible.playbook(RELEASE, release_vars(registry, app, image, port))
        assert run.rc == 0, run.stderr
    rc, res = ansible.task("immutable.infra.server_group_info", {"app": app, "stack": "prod"})
    assert rc == 0, res
    return {"app": app, "port": port, "groups": {g["name"]: g for g in res["groups"]},
            "routes": os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "router", "routes.json")}


def release_source(workdir, released, **options):
    d = tempfile.mkdtemp(prefix="fleetrel-", dir=workdir)
    path = os.path.join(d, "fleet.yml")
    with open(path, "w") as f:
        json.dump(dict({"plugin": "immutable.infra.fleet", "filters": {"app": released["app"]},
                        "router_state_file": released["routes"]}, **options), f)
    return path


def test_groups_of_a_real_release(env, released, workdir):
    app, groups_made = released["app"], released["groups"]
    v1, v2 = "%s-prod-v001" % app, "%s-prod-v002" % app
    assert sorted(groups_made) == [v1, v2]
    members = {g: sorted(i["name"] for i in groups_made[g]["instances"]) for g in groups_made}
    everyone = sorted(members[v1] + members[v2])
    path = release_source(workdir, released, keyed_groups=[{"key": "immutable_labels['infra.immutable.recipe']",
                                                            "prefix": "recipe"}],
                          groups={"serving": "immutable_traffic == 'enabled'"})
    hostvars, groups, stderr = listed(env, path)
    assert sorted(hostvars) == everyone, stderr

    zones = {}
    for g in groups_made.values():
        for i in g["instances"]:
            zones.setdefault("zone_" + i["zone"].replace("-", "_"), []).append(i["name"])
    expected = {
        "app_%s" % app: everyone,
        "stack_%s_prod" % app: everyone,
        "group_%s_prod_v001" % app: members[v1],
        "group_%s_prod_v002" % app: members[v2],
        "version_%s_%s" % (app, groups_made[v1]["image_version"]): members[v1],
        "version_%s_%s" % (app, groups_made[v2]["image_version"]): members[v2],
        "state_running": everyone,
        "traffic_enabled": members[v2],
        "traffic_disabled": members[v1],
        "serving": members[v2],
        "recipe_relweb": everyone,       # the recipe label holds the name the image was baked as
    }
    expected.update({z: sorted(n) for z, n in zones.items()})
    assert sorted(zones) == ["zone_zone_a", "zone_zone_b"]
    for group, hosts in expected.items():
        assert groups.get(group) == hosts, group
    assert "traffic_unrouted" not in groups and not any(g.startswith("state_") and g != "state_running" for g in groups)

    for g in groups_made.values():
        for i in g["instances"]:
            hv = hostvars[i["name"]]
            assert hv["immutable_group"] == g["name"] and hv["immutable_sequence"] == g["sequence"]
            assert hv["immutable_image"] == g["image"] and hv["immutable_image_digest"] == g["image_digest"]
            assert hv["immutable_image_version"] == g["image_version"] and hv["immutable_zone"] == i["zone"]
            assert hv["immutable_endpoint"] == i["endpoint"] and hv["immutable_instance_id"] == i["instance_id"]
            assert hv["immutable_traffic_weight"] == (100 if g["name"] == v2 else 0)
            # The web image runs as its service user: the connection must know it.
            assert hv["ansible_user"] == "web" and hv["ansible_connection"] == "containers.podman.podman"


def test_adhoc_read_only_command_on_a_released_group(env, released, workdir):
    app = released["app"]
    v2 = released["groups"]["%s-prod-v002" % app]
    names = sorted(i["name"] for i in v2["instances"])
    before = {name: set(podman("diff", name).stdout.splitlines()) for name in names}
    proc = subprocess.run(
        ["ansible", "-i", release_source(workdir, released), "group_%s_prod_v002:&traffic_enabled" % app,
         "-m", "ansible.builtin.command", "-a", "cat /opt/web/image.json"],
        env=dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"),
        cwd=TOP, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(proc.stdout[proc.stdout.index("{"):])["plays"][0]["tasks"][0]["hosts"]
    assert sorted(results) == names
    for name, res in results.items():
        identity = json.loads(res["stdout"])
        assert res["rc"] == 0 and identity["message"] == "r2" and identity["version"] == v2["image_version"], res
        assert set(podman("diff", name).stdout.splitlines()) - before[name] <= {"C /tmp"}, name


def test_groups_and_hostvars(env, fleet, source, workdir):
    app, prod1, prod2, acme = fleet["app"], fleet["prod1"], fleet["prod2"], fleet["acme"]
    router = os.path.join(workdir, "router-%s.json" % app)
    with open(router, "w") as f:
        # The shape of the haproxy router's routes.json; only the weights matter here.
        json.dump({"endpoints": {"%s/prod" % app: {
            "port": 18080, "address": "127.0.0.1", "servers": {}, "history": [],
            "groups": {"%s-prod-v002" % app: 100, "%s-prod-v001" % app: 0}}}}, f)
    path = source(
        router_state_file=router,
        keyed_groups=[{"key": "immutable_zone", "prefix": "az"}],
        groups={"serving": "immutable_state == 'running' and immutable_traffic == 'enabled'"},
        compose={"health_url": "immutable_endpoint ~ '/health'"},
    )
    hostvars, groups, _stderr = listed(env, path)

    # Exactly this run's instances, whatever else runs on the machine.
    assert sorted(hostvars) == sorted(fleet["names"])
    everyone = sorted(fleet["names"])
    prod = sorted([prod1] + prod2)
    expected = {
        "app_%s" % app: everyone,
        "stack_%s_prod" % app: prod,
        "stack_%s_acme" % app: [acme],
        "group_%s_prod_v001" % app: [prod1],
        "group_%s_prod_v002" % app: sorted(prod2),
        "group_%s_acme_v001" % app: [acme],
        "version_%s_1" % app: sorted([prod1, acme]),
        "version_%s_2" % app: sorted(prod2),
        "zone_zone_a": sorted([prod1, prod2[0]]),
        "zone_zone_b": sorted([prod2[1], acme]),
        "state_running": prod,
        "state_exited": [acme],
        "traffic_enabled": sorted(prod2),
        "traffic_disabled": [prod1],
        "traffic_unrouted": [acme],
        "az_zone_a": sorted([prod1, prod2[0]]),
        "az_zone_b": sorted([prod2[1], acme]),
        "serving": sorted(prod2),
    }
    for group, hosts in expected.items():
        assert groups.get(group) == hosts, group

    hv = hostvars[prod2[0]]
    port = host_port(prod2[0])
    assert {k: v for k, v in hv.items() if k != "immutable_labels"} == {
        "ansible_connection": "containers.podman.podman",
        "ansible_host": prod2[0],
        "ansible_remote_tmp": "/tmp",
        "immutable_app": app,
        "immutable_stack": "prod",
        "immutable_group": "%s-prod-v002" % app,
        "immutable_sequence": 2,
        "immutable_image": fleet["pinned"],
        "immutable_image_digest": fleet["digest"],
        "immutable_image_version": "2",
        "immutable_zone": "zone-a",
        "immutable_instance_id": prod2[0],
        "immutable_port": 8080,
        "immutable_endpoint": "http://127.0.0.1:%d" % port,
        "immutable_state": "running",
        "immutable_traffic": "enabled",
        "immutable_traffic_weight": 100,
        "health_url": "http://127.0.0.1:%d/health" % port,
    }
    assert hv["immutable_labels"]["infra.immutable.group"] == "%s-prod-v002" % app
    # The container running as nobody is reached as nobody.
    assert hostvars[fleet["nobody"]]["ansible_user"] == "nobody"
    assert hostvars[acme]["immutable_state"] == "exited"
    assert hostvars[prod1]["immutable_traffic"] == "disabled"


def test_a_missing_router_state_file_warns_and_gives_no_traffic_state(env, fleet, source, workdir):
    missing = os.path.join(workdir, "no-such-router-state.json")
    hostvars, groups, stderr = listed(env, source(router_state_file=missing))
    assert sorted(hostvars) == sorted(fleet["names"])
    assert "router state file" in stderr and missing in stderr
    assert not any("immutable_traffic" in hv for hv in hostvars.values())
    assert not any(g.startswith("traffic_") for g in groups)


def test_filters_select_instances(env, fleet, source):
    hostvars, groups, stderr = listed(env, source(filters={"app": fleet["app"], "stack": "prod", "zone": "zone-b"}))
    assert list(hostvars) == [fleet["prod2"][1]], stderr
    assert groups["zone_zone_b"] == [fleet["prod2"][1]] and "zone_zone_a" not in groups


def test_adhoc_command_through_the_podman_connection(env, fleet, source):
    """Both instances of prod v002 answer: one runs as root, one as nobody (no home directory)."""
    path = source()
    group = "group_%s_prod_v002" % fleet["app"]
    before = {name: set(podman("diff", name).stdout.splitlines()) for name in fleet["prod2"]}
    proc = subprocess.run(
        ["ansible", "-i", path, group, "-m", "ansible.builtin.command", "-a", "cat /etc/debian_version"],
        env=dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"),
        cwd=TOP, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    results = doc["plays"][0]["tasks"][0]["hosts"]
    expected = podman("exec", fleet["prod2"][0], "cat", "/etc/debian_version").stdout.strip()
    assert sorted(results) == sorted(fleet["prod2"])
    for name, res in results.items():
        assert res["rc"] == 0 and res["stdout"] == expected, (name, res)
        # A read-only check leaves nothing behind in the instance (at most /tmp itself changes).
        assert set(podman("diff", name).stdout.splitlines()) - before[name] <= {"C /tmp"}, name


def test_cache_serves_the_container_list_until_flushed(env, fleet, source, workdir):
    cache_dir = tempfile.mkdtemp(prefix="fleet-cache-", dir=workdir)
    cache = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": cache_dir}
    path = source(**cache)
    hostvars = listed(env, path)[0]
    assert sorted(hostvars) == sorted(fleet["names"])
    assert os.listdir(cache_dir)

    # Same source, podman now unusable: the cached list still answers ...
    with open(path, "w") as f:
        json.dump(dict(cache, plugin="immutable.infra.fleet", filters={"app": fleet["app"]},
                       podman_path="/nonexistent/podman"), f)
    hostvars = listed(env, path)[0]
    assert sorted(hostvars) == sorted(fleet["names"])
    assert hostvars[fleet["prod1"]]["ansible_podman_executable"] == "/nonexistent/podman"
    # ... until the cache is flushed, and then the error names the missing tool.
    proc = inventory(env, path, "--flush-cache", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1")
    assert proc.returncode != 0
    assert "fleet inventory: podman ps is not installed" in proc.stderr and "/nonexistent/podman" in proc.stderr


def test_labels_are_data_not_templates(env, fleet, source):
    path = source(compose={"note": "immutable_labels['infra.immutable.note']"})
    proc = subprocess.run(
        ["ansible", "-i", path, fleet["prod1"], "-m", "ansible.builtin.debug", "-a", "var=note"],
        env=dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"),
        cwd=TOP, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert doc["plays"][0]["tasks"][0]["hosts"][fleet["prod1"]]["note"] == "{{ 6 * 7 }}"


def test_only_fleet_files_are_fleet_sources(env, fleet, workdir):
    d = tempfile.mkdtemp(prefix="fleet-", dir=workdir)
    path = os.path.join(d, "hosts.yml")
    with open(path, "w") as f:
        json.dump({"plugin": "immutable.infra.fleet", "filters": {"app": fleet["app"]}}, f)
    proc = inventory(env, path, ANSIBLE_INVENTORY_ENABLED="immutable.infra.fleet")
    assert fleet["prod1"] not in proc.stdout
    assert "did not meet immutable.infra.fleet requirements" in proc.stderr or "Unable to parse" in proc.stderr


def test_the_platform_and_its_options_choose_the_source(env, fleet, source):
    podman_path = shutil.which("podman")
    hostvars = listed(env, source(platform="podman", platform_options={"podman": podman_path}))[0]
    assert sorted(hostvars) == sorted(fleet["names"])
    assert hostvars[fleet["prod1"]]["ansible_podman_executable"] == podman_path
    proc = inventory(env, source(platform_options={"uri": "qemu:///session"}), ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1")
    assert proc.returncode != 0 and "fleet inventory: platform podman has no option(s) uri" in proc.stderr
