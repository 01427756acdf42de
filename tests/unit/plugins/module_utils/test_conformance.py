"""The conformance suite of the two seams: the server-group policy (converge)
and the traffic policy (apply) run against a fake platform and a fake router,
with nothing real but loopback HTTP.

FakePlatform keeps instances in memory and serves each live instance's health
on its own 127.0.0.1 port (a real http.server), so the policy's real health
wait is what runs. FakeRouter keeps routes and live servers in memory and
checks servers by HTTP at the address the platform gave, like haproxy does;
its counters are scripted.

PlatformConformance holds the cases every platform passes: subclass it with a
`platform` fixture (see the two at the end) to run them against another
platform's fake. RouterConformance does the same for router backends.
"""
from __future__ import annotations

import copy
import http.server
import threading
import uuid

import pytest

from ansible_collections.immutable.infra.plugins.module_utils._names import IDENTITY, LABEL_PREFIX, instance_group
from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import Platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._server_group import converge
from ansible_collections.immutable.infra.plugins.module_utils._service import http_status
from ansible_collections.immutable.infra.plugins.module_utils._traffic._backend import COUNTERS, RouterBackend
from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import apply

APP, STACK = "shop", "prod"
KEY = "%s/%s" % (APP, STACK)


class _Health:
    """One instance's health endpoint: answers every GET with `status` (changeable) on its own loopback port."""

    def __init__(self, status):
        self.status = status
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(owner.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakePlatform(Platform):
    """The whole Platform interface in memory. An image's fate (by digest) says what its
    instances do: "healthy" (answer 200), "unhealthy" (answer 500), "dies" (exit at once)."""

    OPTIONS = ()

    def __init__(self, name="fake", image_format="container", boot_seconds=60):
        self.name, self.image_format, self.boot_seconds = name, image_format, boot_seconds
        self.instances, self.health, self.fate = {}, {}, {}
        self.pulled, self.calls = [], []

    def list_instances(self, app=None, stack=None, group=None):
        found = [dict(i) for i in self.instances.values()
                 if all(v is None or i[k] == v for k, v in (("app", app), ("stack", stack), ("group", group)))]
        return sorted(found, key=lambda i: (i["app"] or "", i["stack"] or "", i["sequence"], i["name"]))

    def instance(self, name):
        if name not in self.instances:
            raise ImmutableInfraError("no instance %s" % name)
        return dict(self.instances[name])

    def pull(self, reference):
        self.pulled.append(reference)

    def create_instances(self, specs):
        self.calls.append(("create", len(specs)))
        made = []
        for spec in specs:
            name = "%s-%s" % (spec["group"], uuid.uuid4().hex[:6])
            fate = self.fate.get(spec["image_digest"], "healthy")
            ports = [int(spec["port"])] + [int(p) for p in spec.get("extra_ports") or []]
            health = None if fate == "dies" else _Health(200 if fate == "healthy" else 500)
            if health:
                self.health[name] = health
            labels = {LABEL_PREFIX + k: str(spec.get(k.replace("-", "_"), "")) for k in IDENTITY}
            labels[LABEL_PREFIX + "instance-id"] = name
            host_port = health.port if health else None
            self.instances[name] = {
                "name": name, "id": uuid.uuid4().hex, "app": spec["app"], "stack": spec["stack"],
                "group": spec["group"], "sequence": int(spec["sequence"]), "zone": spec["zone"], "instance_id": name,
                "image": spec["image"], "image_digest": spec["image_digest"], "image_version": spec["image_version"],
                "port": int(spec["port"]), "host": "127.0.0.1", "host_port": host_port,
                "ports": {p: host_port for p in ports} if host_port else {},
                "endpoint": ("http://127.0.0.1:%s" % host_port) if host_port else None,
                "state": "exited" if fate == "dies" else "running", "created": 0, "labels": labels,
                "env": dict(spec.get("env") or {}),
            }
            made.append(dict(self.instances[name]))
        return made

    def destroy_instances(self, names, timeout=5):
        names = list(names)
        self.calls.append(("destroy", sorted(names)))
        for name in names:
            self.instances.pop(name, None)
            if name in self.health:
                self.health.pop(name).close()
        return names

    def logs(self, name, lines=20):
        return "fake %s started" % name if name in self.instances else ""

    # Scripting, for the cases
    def kill(self, name):
        self.instances[name]["state"] = "exited"
        self.health.pop(name).close()

    def set_status(self, group, status):
        for name, inst in self.instances.items():
            if inst["group"] == group and name in self.health:
                self.health[name].status = status

    def close(self):
        self.destroy_instances(list(self.instances))


class FakeRouter(RouterBackend):
    """The whole RouterBackend interface in memory. Servers are checked by HTTP at their address;
    counters are scripted: `traffic[group] = (requests, http_5xx)` is added to each server of the
    group that carries weight, on every read."""

    name = "fake"

    def __init__(self):
        self.routes = {"endpoints": {}}
        self.live = {}           # key -> {name: {"address", "port", "weight", "health", counters...}}
        self.up = False
        self.traffic = {}
        self.taken_ports = set()
        self.log = []

    def running(self):
        return self.up

    def start(self):
        if not self.up:
            self.up = True
            self.reload()

    def reload(self):
        if not self.up:
            raise ImmutableInfraError("the router is not running")
        self.log.append("reload")
        for key in list(self.live):
            if key not in self.routes["endpoints"]:
                del self.live[key]
        for key, ep in self.routes["endpoints"].items():
            servers = self.live.setdefault(key, {})
            for name, srv in ep["servers"].items():
                if name not in servers:
                    self.add_server(key, name, srv["address"], srv["port"], srv["weight"], ep["health"])

    def load_routes(self):
        return copy.deepcopy(self.routes)

    def write(self, routes, validate=True):
        self.routes = copy.deepcopy(routes)

    def port_available(self, port):
        return port not in self.taken_ports

    def server_weight(self, group_weight, servers_in_group):
        return 0 if group_weight <= 0 or servers_in_group <= 0 else max(1, group_weight * 10 // servers_in_group)

    def stats(self, key):
        servers = {}
        for name, srv in self.live.get(key, {}).items():
            if srv["weight"] > 0 and instance_group(name) in self.traffic:
                requests, errors = self.traffic[instance_group(name)]
                srv["requests"] += requests
                srv["http_5xx"] += errors
            answer = http_status("http://%s:%d%s" % (srv["address"], srv["port"], srv["health"].get("path", "/healthz")),
                                 0.5)
            up = answer == int(srv["health"].get("status", 200))
            servers[name] = dict({c: srv[c] for c in COUNTERS}, name=name, weight=srv["weight"], up=up,
                                 check_passed=up, status="UP" if up else "DOWN", check=str(answer))
        total = {c: sum(s[c] for s in servers.values()) for c in COUNTERS}
        return {"servers": servers, "total": dict(total, status="UP") if servers else {}}

    def add_server(self, key, name, address, port, weight, health):
        self.log.append(("add", name))
        self.live.setdefault(key, {})[name] = dict({c: 0 for c in COUNTERS}, address=address, port=int(port),
                                                   weight=int(weight), health=dict(health))

    def set_weight(self, key, name, weight):
        self.live[key][name]["weight"] = int(weight)

    def remove_server(self, key, name):
        self.log.append(("remove", name))
        self.live.get(key, {}).pop(name, None)
        return True

    # Reading, for the cases
    def weights(self, key=KEY):
        return {n: s["weight"] for n, s in self.live.get(key, {}).items()}


IMAGES = {
    "shop:1": {"reference": "reg/shop@sha256:01", "digest": "sha256:01", "version": "1"},
    "shop:2": {"reference": "reg/shop@sha256:02", "digest": "sha256:02", "version": "2"},
    "shop:bad": {"reference": "reg/shop@sha256:0b", "digest": "sha256:0b", "version": "bad"},
    "shop:dies": {"reference": "reg/shop@sha256:0d", "digest": "sha256:0d", "version": "dies"},
}


def params(image="shop:1", **kw):
    p = {"app": APP, "stack": STACK, "image": image, "group": None, "count": 2, "zones": ["zone-a", "zone-b"],
         "port": 8080, "env": {}, "health_check": {"interval": 0.05, "healthy_threshold": 2}, "wait": True,
         "wait_timeout": None, "stop_timeout": 1, "state": "present"}
    p.update(kw)
    return p


def traffic_params(groups, **kw):
    p = {"app": APP, "stack": STACK, "groups": groups, "port": None, "new_endpoint_port": 18080,
         "health_check": {"path": "/healthz", "status": 200, "interval": 0.05}, "wait_timeout": 5,
         "verify_seconds": 0, "max_errors": 0, "keep_failed": False, "rollback": False, "rollback_group": None,
         "retire": [], "state": "present"}
    p.update(kw)
    return p


class PlatformConformance:
    """The cases every platform passes. Subclasses provide the `platform` fixture, a platform
    whose images follow `fate` (by digest) and whose image_format is the one it runs."""

    def images(self, platform):
        """The catalog as the platform sees it: images of its own format, plus one of another."""
        other = "vm" if platform.image_format == "container" else "container"
        out = {k: dict(v, format=platform.image_format) for k, v in IMAGES.items()}
        out["shop:other"] = {"reference": "reg/shop-x@sha256:0f", "digest": "sha256:0f", "version": "x", "format": other}
        return out

    def converge(self, platform, check_mode=False, **kw):
        platform.fate.update({"sha256:0b": "unhealthy", "sha256:0d": "dies"})
        return converge(platform, self.images(platform).__getitem__, params(**kw), check_mode)

    def test_the_interface_is_complete(self, platform):
        for method in ("list_instances", "instance", "pull", "create_instances", "destroy_instances", "logs",
                       "address", "users", "connection"):
            assert getattr(type(platform), method) is not getattr(Platform, method) or method in (
                "address", "users", "connection"), method
        assert platform.name and platform.image_format in ("container", "vm") and platform.boot_seconds > 0

    def test_check_mode_reports_the_plan_and_changes_nothing(self, platform):
        res = self.converge(platform, check_mode=True)
        assert res["changed"] and res["would_create"] == 2 and res["group"]["name"] == "shop-prod-v001"
        assert res["diff"] == {"before": {}, "after": {"name": "shop-prod-v001", "instances": 2,
                                                       "image": "reg/shop@sha256:01"}}
        assert platform.list_instances() == [] and platform.pulled == []

    def test_a_group_is_created_healthy_spread_and_reachable(self, platform):
        res = self.converge(platform)
        assert res["changed"] and len(res["created"]) == 2 and set(res["health"].values()) == {200}
        insts = platform.list_instances(app=APP, stack=STACK)
        assert sorted(i["zone"] for i in insts) == ["zone-a", "zone-b"]
        for inst in insts:
            assert instance_group(inst["name"]) == "shop-prod-v001" == inst["group"]
            host, port = platform.address(inst, 8080)
            assert http_status("http://%s:%d/healthz" % (host, port)) == 200
            assert inst["image_digest"] == "sha256:01" and inst["state"] == "running"
        assert platform.pulled == ["reg/shop@sha256:01"]

    def test_the_same_image_returns_the_existing_group(self, platform):
        first = self.converge(platform)
        again = self.converge(platform)
        assert not again["changed"] and again["created"] == [] and again["group"]["name"] == first["group"]["name"]
        assert sorted(i["name"] for i in platform.list_instances()) == sorted(first["created"])

    def test_a_new_image_makes_a_new_group(self, platform):
        self.converge(platform)
        res = self.converge(platform, image="shop:2")
        assert res["group"]["name"] == "shop-prod-v002" and res["groups"] == ["shop-prod-v001", "shop-prod-v002"]
        assert len(platform.list_instances(group="shop-prod-v001")) == 2

    def test_dead_instances_are_replaced_not_repaired(self, platform):
        first = self.converge(platform)
        victim, survivor = first["created"]
        platform.kill(victim)
        res = self.converge(platform)
        assert res["changed"] and res["replaced"] == [victim] and len(res["created"]) == 1
        names = {i["name"] for i in platform.list_instances()}
        assert victim not in names and survivor in names and len(names) == 2

    def test_surplus_instances_are_removed(self, platform):
        first = self.converge(platform, count=3)
        res = self.converge(platform, count=1)
        assert res["changed"] and len(res["removed"]) == 2 and res["created"] == []
        assert [i["name"] for i in platform.list_instances()] == [n for n in first["created"] if n not in res["removed"]]

    def test_absent_removes_the_group_and_is_idempotent(self, platform):
        self.converge(platform)
        res = self.converge(platform, image=None, group="shop-prod-v001", state="absent")
        assert res["changed"] and len(res["removed"]) == 2 and platform.list_instances() == []
        assert not self.converge(platform, image=None, group="shop-prod-v001", state="absent")["changed"]

    def test_an_image_of_the_wrong_format_is_refused_before_anything(self, platform):
        with pytest.raises(ImmutableInfraError) as exc:
            self.converge(platform, image="shop:other")
        other = "vm" if platform.image_format == "container" else "container"
        assert exc.value.msg.startswith("image shop:other is a %s image; the %s platform runs %s images ("
                                        % (other, platform.name, platform.image_format))
        assert platform.list_instances() == [] and platform.pulled == [] and platform.calls == []

    def test_a_group_that_never_becomes_healthy_fails_within_the_platform_boot_time(self, platform):
        platform.boot_seconds = 0.5          # wait_timeout not given: the platform's boot time bounds the wait
        with pytest.raises(ImmutableInfraError) as exc:
            self.converge(platform, image="shop:bad")
        assert "not healthy within 0.5s" in exc.value.msg and "last answer: 500" in exc.value.msg
        assert exc.value.details["group"]["name"] == "shop-prod-v001"     # the caller removes it

    def test_an_instance_that_dies_fails_fast_naming_its_logs(self, platform):
        with pytest.raises(ImmutableInfraError) as exc:
            self.converge(platform, image="shop:dies", wait_timeout=30)
        assert "(it stopped running)" in exc.value.msg and "logs: fake shop-prod-v001-" in exc.value.msg


class RouterConformance(PlatformConformance):
    """The traffic policy over a router backend and a platform. Subclasses provide `router` too."""

    def release(self, platform, router, image, **kw):
        group = self.converge(platform, image=image)["group"]["name"]
        return group, apply(router, platform, traffic_params({group: 100}, **kw))

    def test_a_first_release_routes_the_new_group(self, platform, router):
        group, res = self.release(platform, router, "shop:1")
        assert res["changed"] and res["url"] == "http://127.0.0.1:18080"
        assert res["endpoint"]["enabled"] == [group] and res["endpoint"]["groups"][group]["healthy"] == 2
        assert all(w > 0 for w in router.weights().values()) and len(router.weights()) == 2
        for name, srv in router.live[KEY].items():
            assert (srv["address"], srv["port"]) == platform.address(platform.instance(name), 8080)

    def test_a_switch_drains_the_old_group_and_keeps_it_routed(self, platform, router):
        old, _res = self.release(platform, router, "shop:1")
        new, res = self.release(platform, router, "shop:2")
        assert res["previous"] == {old: 100} and res["endpoint"]["enabled"] == [new]
        assert {instance_group(n) for n, w in router.weights().items() if w > 0} == {new}
        assert {instance_group(n) for n, w in router.weights().items() if w == 0} == {old}
        assert not apply(router, platform, traffic_params({new: 100}))["changed"]      # a re-run is a no-op

    def test_check_mode_shows_the_switch_and_changes_nothing(self, platform, router):
        old, _res = self.release(platform, router, "shop:1")
        new = self.converge(platform, image="shop:2")["group"]["name"]
        routes, weights = router.load_routes(), router.weights()
        res = apply(router, platform, traffic_params({new: 100}), check_mode=True)
        assert res["changed"] and res["diff"]["after"]["groups"] == {old: 0, new: 100} and res["endpoint"] is None
        assert router.load_routes() == routes and router.weights() == weights

    def test_no_group_carrying_weight_is_refused(self, platform, router):
        old, _res = self.release(platform, router, "shop:1")
        routes, weights = router.load_routes(), router.weights()
        with pytest.raises(ImmutableInfraError, match="refusing to route shop/prod with no group carrying weight"):
            apply(router, platform, traffic_params({old: 0}))
        assert router.load_routes() == routes and router.weights() == weights

    def test_a_router_health_timeout_keeps_the_old_weights_and_removes_the_added_servers(self, platform, router):
        old, _res = self.release(platform, router, "shop:1")
        weights = router.weights()
        new = self.converge(platform, image="shop:2")["group"]["name"]
        platform.set_status(new, 503)            # healthy for the platform, then not for the router
        with pytest.raises(ImmutableInfraError, match="router health checks failed for %s-" % new) as exc:
            apply(router, platform, traffic_params({new: 100}, wait_timeout=1))
        assert sorted(exc.value.details["unhealthy"]) == sorted(i["name"] for i in platform.list_instances(group=new))
        assert router.weights() == weights and router.load_routes()["endpoints"][KEY]["groups"] == {old: 100}

    def test_a_failed_verify_window_puts_the_old_weights_back(self, platform, router):
        old, _res = self.release(platform, router, "shop:1")
        weights = router.weights()
        new = self.converge(platform, image="shop:2")["group"]["name"]
        router.traffic[new] = (10, 1)            # every read: 10 requests, one of them a 5xx
        with pytest.raises(ImmutableInfraError) as exc:
            apply(router, platform, traffic_params({new: 100}, verify_seconds=30))
        v = exc.value.details["verification"]
        assert exc.value.details["reverted"] and not v["passed"] and v["http_5xx"] > 0 and v["seconds"] < 30
        assert "failed verification" in exc.value.msg and "traffic went back to %s" % old in exc.value.msg
        assert "5xx %d" % v["http_5xx"] in exc.value.msg
        assert router.weights() == weights and router.load_routes()["endpoints"][KEY]["groups"] == {old: 100}

    def test_a_taken_port_is_refused_for_a_new_endpoint(self, platform, router):
        group = self.converge(platform)["group"]["name"]
        router.taken_ports.add(18080)
        with pytest.raises(ImmutableInfraError, match="port 18080 is already taken"):
            apply(router, platform, traffic_params({group: 100}))
        assert router.load_routes() == {"endpoints": {}} and not router.running()


@pytest.fixture
def router():
    return FakeRouter()


class TestRouterOnEachPlatformShape(RouterConformance):
    """The traffic policy over a podman-shaped platform (container images, the podman
    default boot time) and a libvirt-shaped one (VM images, a longer boot time)."""

    @pytest.fixture(params=[("podman", "container", 60), ("libvirt", "vm", 300)], ids=["container", "vm"])
    def platform(self, request):
        name, image_format, boot_seconds = request.param
        p = FakePlatform(name=name, image_format=image_format, boot_seconds=boot_seconds)
        yield p
        p.close()


# ------------------------------------------------------------------ the aws platform over moto, in process
class _MotoAws:
    """The real AwsPlatform over moto's in-process AWS (the backing store, not the thing under test),
    with the scripting the cases use: fate by digest (unhealthy: the ASG marks the instances Unhealthy),
    and kill (the ASG marks one Unhealthy: replacing it is the ASG's business, not the policy's)."""

    ZONES = ("us-east-1a", "us-east-1b")

    def __init__(self):
        import boto3
        from ansible_collections.immutable.infra.plugins.module_utils._platforms._aws import AwsPlatform

        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = {z: ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.%d.0/24" % n, AvailabilityZone=z)["Subnet"]["SubnetId"]
                   for n, z in enumerate(self.ZONES)}
        self.ami = ec2.register_image(Name="shop", RootDeviceName="/dev/xvda")["ImageId"]
        outer = self

        class Scripted(AwsPlatform):
            def pull(self, reference):
                self.pulled.append(reference)

            def create_instances(self, specs):
                self.calls.append(("create", len(specs)))
                made = AwsPlatform.create_instances(self, specs)
                for inst in made:
                    if self.fate.get(inst["image_digest"]) in ("unhealthy", "dies"):
                        outer.unhealthy(inst["id"])
                return made

            def destroy_instances(self, names, timeout=5):
                self.calls.append(("destroy", sorted(names)))
                return AwsPlatform.destroy_instances(self, names, timeout)

            def kill(self, name):
                outer.unhealthy(self.instance(name)["id"])

        self.platform = Scripted(region="us-east-1", subnets=subnets)
        self.platform.poll = 0.05
        self.platform.pulled, self.platform.calls, self.platform.fate = [], [], {}
        self.autoscaling = boto3.client("autoscaling", region_name="us-east-1")

    def unhealthy(self, ec2_id):
        self.autoscaling.set_instance_health(InstanceId=ec2_id, HealthStatus="Unhealthy")


class TestAwsPlatformConformance(PlatformConformance):
    """The aws platform passes the shared cases where their meaning holds on an Auto Scaling group;
    the cases below it overrides say what differs: readiness is InService/Healthy in the ASG (the
    controller does not reach private addresses), dead instances are the ASG's to replace, and the
    zones are availability zones mapped to subnets."""

    @pytest.fixture
    def platform(self, monkeypatch):
        pytest.importorskip("moto")
        from moto import mock_aws
        for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                           ("AWS_EC2_METADATA_DISABLED", "true")):
            monkeypatch.setenv(key, value)
        with mock_aws():
            yield _MotoAws().platform

    def images(self, platform):
        out = PlatformConformance.images(self, platform)
        ami = platform.aws.client("ec2").describe_images(Filters=[{"Name": "name", "Values": ["shop"]}])["Images"]
        return {k: dict(v, amis={"us-east-1": ami[0]["ImageId"]}) if v["format"] == "ami" else v
                for k, v in out.items()}

    def converge(self, platform, check_mode=False, **kw):
        kw.setdefault("zones", list(_MotoAws.ZONES))
        return PlatformConformance.converge(self, platform, check_mode, **kw)

    def test_the_interface_is_complete(self, platform):
        for method in ("list_instances", "instance", "pull", "create_instances", "destroy_instances", "logs",
                       "wait_ready", "connection"):
            assert getattr(type(platform), method) is not getattr(Platform, method), method
        assert (platform.name, platform.image_format, platform.replaces_dead) == ("aws", "ami", True)

    def test_a_group_is_created_healthy_spread_and_reachable(self, platform):
        res = self.converge(platform)
        assert res["changed"] and len(res["created"]) == 2 and set(res["health"].values()) == {"InService"}
        group = platform.aws.call("autoscaling", "describe_auto_scaling_groups",
                                  AutoScalingGroupNames=["shop-prod-v001"])["AutoScalingGroups"][0]
        assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(platform.subnets.values())
        for inst in platform.list_instances(app=APP, stack=STACK):
            assert instance_group(inst["name"]) == "shop-prod-v001" == inst["group"] and inst["state"] == "running"
            assert inst["name"] == "shop-prod-v001-" + inst["id"][2:] and inst["zone"] in _MotoAws.ZONES
            assert platform.address(inst, 8080) == (inst["host"], 8080) and inst["host"].startswith("10.0.")
            assert platform.connection(inst) == {"ansible_host": inst["host"]}
            assert inst["image_digest"] == "sha256:01"

    def test_dead_instances_are_replaced_not_repaired(self, platform):
        first = self.converge(platform)
        victim = first["created"][0]
        platform.kill(victim)
        platform.calls.clear()
        with pytest.raises(ImmutableInfraError) as exc:       # the ASG replaces it; the policy waits for that
            self.converge(platform, wait_timeout=0.3)
        assert "not InService within 0.3s" in exc.value.msg and "1 of 2 InService and Healthy" in exc.value.msg
        assert "%s InService/Unhealthy" % platform.instance(victim)["id"] in exc.value.msg
        assert [c for c in platform.calls if c[1]] == []      # nothing terminated or started by the policy

    def test_a_group_that_never_becomes_healthy_fails_within_the_platform_boot_time(self, platform):
        platform.boot_seconds = 0.5
        with pytest.raises(ImmutableInfraError) as exc:
            self.converge(platform, image="shop:bad")
        assert "not InService within 0.5s" in exc.value.msg and "0 of 2 InService" in exc.value.msg
        assert exc.value.details["group"]["name"] == "shop-prod-v001"

    def test_an_instance_that_dies_fails_fast_naming_its_logs(self, platform):
        pytest.skip("an instance that dies is the Auto Scaling group's to replace (see the dead-instance case)")
