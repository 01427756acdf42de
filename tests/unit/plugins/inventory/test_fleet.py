"""The fleet inventory's grouping, over instances the podman platform code
parsed from `podman ps` / `podman container inspect` output captured from
real instance containers (fixtures/), with the connection variables the
platform gives (Platform.connection). The grouping itself knows no platform."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _fleet as fleet
from ansible_collections.immutable.infra.plugins.module_utils._platforms import _podman as podman
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
D2 = "sha256:8d1efcf66649ab53bc70383573d543221fbdbc7645b9194486655ac514a8b3db"
D3 = "sha256:119e2c04eebbb1d60107e0a43687d9952fdd2d160d9c7f5df5138e50e600061a"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


PODMAN = podman.PodmanPlatform()


@pytest.fixture
def containers():
    """Six instances of app shop: prod v002 and v003 (two zones each, running), acme v001 (one exited, one created)."""
    return podman.parse_ps(fixture("podman-ps-fleet.json"))


@pytest.fixture
def edge():
    """A container publishing a port range, a udp port on all interfaces and 8080; one publishing nothing."""
    return {i["name"]: i for i in podman.parse_ps(fixture("podman-ps-edge.json"))}


class FakeRun:
    """Stands in for podman itself (not for the code under test): records argv, answers with captured output."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, argv, what=None, check=True, **kw):
        self.calls.append(argv)
        return self.answers[argv[1]]


def test_the_fleet_is_read_by_the_platform_code_in_two_podman_calls(monkeypatch):
    fake = FakeRun({"ps": (0, fixture("podman-ps-fleet.json"), ""),
                    "container": (0, fixture("podman-inspect.json"), "")})
    monkeypatch.setattr(podman, "run", fake)
    platform = podman.PodmanPlatform(podman="/usr/bin/podman")
    instances = platform.list_instances()
    users = platform.users([i["name"] for i in instances])
    instances = [dict(i, user=users.get(i["name"], "")) for i in instances]
    assert fake.calls[0] == ["/usr/bin/podman", "ps", "-a", "--format", "json", "--filter", "label=infra.immutable.group"]
    assert fake.calls[1][:5] == ["/usr/bin/podman", "container", "inspect", "--format", "json"]
    assert len(fake.calls) == 2
    inv = fleet.fleet(instances, connection=platform.connection)
    assert inv["hosts"]["shop-prod-v003-1a2b3c"]["ansible_user"] == "web"
    assert "ansible_user" not in inv["hosts"]["shop-prod-v002-4f1c2a"]
    # A podman other than the default is the one the connection uses too.
    assert inv["hosts"]["shop-prod-v002-4f1c2a"]["ansible_podman_executable"] == "/usr/bin/podman"
    assert "ansible_podman_executable" not in PODMAN.connection(instances[0])


def test_without_a_connection_the_hosts_get_identity_only(containers):
    hv = fleet.fleet(containers)["hosts"]["shop-prod-v003-1a2b3c"]
    assert not any(k.startswith("ansible_") for k in hv) and hv["immutable_app"] == "shop"


@pytest.mark.parametrize("out", ["", "  \n", "null", "[]"])
def test_no_containers(out):
    assert podman.parse_ps(out) == []
    assert fleet.fleet(podman.parse_ps(out)) == {"hosts": {}, "groups": {}}


@pytest.mark.parametrize("out,words", [("{not json", "invalid JSON"), ('{"Id": "x"}', "expected a list")])
def test_bad_ps_output_is_an_error(out, words):
    with pytest.raises(ImmutableInfraError, match=words):
        podman.parse_ps(out)


def test_groups_of_the_captured_fleet(containers):
    inv = fleet.fleet(containers)
    v2 = ["shop-prod-v002-4f1c2a", "shop-prod-v002-9b7e01"]
    v3 = ["shop-prod-v003-1a2b3c", "shop-prod-v003-c0ffee"]
    acme = ["shop-acme-v001-5e6f70", "shop-acme-v001-77aa00"]
    # Hosts come ordered by app, stack, sequence, name.
    assert list(inv["hosts"]) == acme + v2 + v3
    assert inv["groups"] == {
        "app_shop": acme + v2 + v3,
        "stack_shop_acme": acme,
        "stack_shop_prod": v2 + v3,
        "group_shop_acme_v001": acme,
        "group_shop_prod_v002": v2,
        "group_shop_prod_v003": v3,
        "version_shop_2": acme + v2,
        "version_shop_3": v3,
        "zone_zone_a": ["shop-acme-v001-5e6f70", "shop-prod-v002-4f1c2a", "shop-prod-v003-1a2b3c"],
        "zone_zone_b": ["shop-acme-v001-77aa00", "shop-prod-v002-9b7e01", "shop-prod-v003-c0ffee"],
        "state_exited": ["shop-acme-v001-5e6f70"],
        "state_created": ["shop-acme-v001-77aa00"],
        "state_running": v2 + v3,
    }


def test_hostvars_of_a_running_instance(containers):
    hv = fleet.fleet(containers, connection=PODMAN.connection)["hosts"]["shop-prod-v003-1a2b3c"]
    labels = hv.pop("immutable_labels")
    assert hv == {
        "ansible_connection": "containers.podman.podman",
        "ansible_host": "shop-prod-v003-1a2b3c",
        "ansible_remote_tmp": "/tmp",
        "immutable_app": "shop",
        "immutable_stack": "prod",
        "immutable_group": "shop-prod-v003",
        "immutable_sequence": 3,
        "immutable_image": "127.0.0.1:5000/web@" + D3,
        "immutable_image_digest": D3,
        "immutable_image_version": "3",
        "immutable_zone": "zone-a",
        "immutable_instance_id": "shop-prod-v003-1a2b3c",
        "immutable_port": 8080,
        "immutable_endpoint": "http://127.0.0.1:38551",
        "immutable_state": "running",
    }
    # All labels ride along, the image's own included, for keyed_groups.
    assert labels["infra.immutable.recipe"] == "web" and labels["org.opencontainers.image.version"] == "3"


def test_stopped_instances_keep_their_state_and_published_port(containers):
    hosts = fleet.fleet(containers)["hosts"]
    assert hosts["shop-acme-v001-5e6f70"]["immutable_state"] == "exited"
    assert hosts["shop-acme-v001-5e6f70"]["immutable_endpoint"] == "http://127.0.0.1:33997"
    assert hosts["shop-acme-v001-77aa00"]["immutable_state"] == "created"
    assert hosts["shop-acme-v001-77aa00"]["immutable_image"] == "127.0.0.1:5000/web@" + D2


@pytest.mark.parametrize("filters,expected", [
    ({"app": "shop", "stack": "acme"}, ["shop-acme-v001-5e6f70", "shop-acme-v001-77aa00"]),
    ({"infra.immutable.zone": "zone-b", "image-version": 3}, ["shop-prod-v003-c0ffee"]),
    ({"group": ["shop-prod-v002", "shop-acme-v001"], "zone": "zone-a"}, ["shop-acme-v001-5e6f70", "shop-prod-v002-4f1c2a"]),
    ({"app": "web"}, []),
    ({"no-such-label": "x"}, []),
    ({}, None),
])
def test_filters(containers, filters, expected):
    got = list(fleet.fleet(containers, filters=filters)["hosts"])
    assert got == (expected if expected is not None else list(fleet.fleet(containers)["hosts"]))
    assert sorted(i["name"] for i in fleet.select(containers, filters)) == sorted(got)


@pytest.mark.parametrize("raw,safe", [
    ("web-prod-v003", "web_prod_v003"),
    ("app_web", "app_web"),
    ("version_web_2024.06.1", "version_web_2024_06_1"),
    ("zone eu/west:1", "zone_eu_west_1"),
    ("zöne", "z_ne"),
])
def test_sanitize(raw, safe):
    assert fleet.sanitize(raw) == safe


def test_group_names_skip_what_is_not_known():
    assert fleet.group_names({"immutable_group": "edge", "immutable_state": "running"}) == ["group_edge", "state_running"]
    assert fleet.group_names({
        "immutable_app": "my-app", "immutable_stack": "eu.1", "immutable_group": "my-app-eu.1-v010",
        "immutable_image_version": "2024.06.1", "immutable_zone": "zone-a", "immutable_state": "paused",
        "immutable_traffic": "disabled",
    }) == ["app_my_app", "stack_my_app_eu_1", "group_my_app_eu_1_v010", "version_my_app_2024_06_1",
           "zone_zone_a", "state_paused", "traffic_disabled"]


def test_ports_published_as_a_range_on_any_address_and_not_at_all(edge):
    raw = {c["Names"][0]: c for c in json.loads(fixture("podman-ps-edge.json"))}
    ports = raw["fleetedge-range"]["Ports"]
    host_9000 = next(p["host_port"] for p in ports if p["container_port"] == 9000)
    host_8080 = next(p["host_port"] for p in ports if p["container_port"] == 8080)
    published = podman.published_ports(ports)
    # A range maps port+i to host_port+i; UDP is never a service endpoint.
    assert published == {8080: ("127.0.0.1", host_8080), 9000: ("127.0.0.1", host_9000),
                         9001: ("127.0.0.1", host_9000 + 1), 9002: ("127.0.0.1", host_9000 + 2)}
    assert edge["fleetedge-range"]["ports"] == {p: hp for p, (_a, hp) in published.items()}
    assert edge["fleetedge-range"]["endpoint"] == "http://127.0.0.1:%d" % (host_9000 + 1)
    assert raw["fleetedge-noport"]["Ports"] is None and podman.published_ports(None) == {}
    assert edge["fleetedge-noport"]["endpoint"] is None and edge["fleetedge-noport"]["port"] == 0


@pytest.mark.parametrize("host_ip,url", [
    ("", "http://127.0.0.1:40000"), ("0.0.0.0", "http://127.0.0.1:40000"), ("::", "http://127.0.0.1:40000"),
    ("127.0.0.2", "http://127.0.0.2:40000"), ("::1", "http://[::1]:40000"),
])
def test_endpoint_address(host_ip, url):
    entry = {"Names": ["x"], "Labels": {"infra.immutable.group": "g", "infra.immutable.port": "8080"},
             "Ports": [{"host_ip": host_ip, "container_port": 8080, "host_port": 40000, "range": 1, "protocol": "tcp"}]}
    assert podman.parse_instance(entry)["endpoint"] == url


def test_a_container_without_instance_labels_is_still_a_host_when_it_has_a_group(edge):
    name, hv = fleet.instance(edge["fleetedge-range"])
    assert name == "fleetedge-range"
    assert hv["immutable_group"] == "edge" and hv["immutable_port"] == 9001
    assert hv["immutable_instance_id"] == "fleetedge-range"
    assert hv["immutable_endpoint"].startswith("http://127.0.0.1:")
    assert "immutable_app" not in hv and "immutable_zone" not in hv
    name, hv = fleet.instance(edge["fleetedge-noport"])
    assert "immutable_port" not in hv and "immutable_endpoint" not in hv
    assert fleet.group_names(hv) == ["group_edge2", "state_running"]


def test_a_container_without_group_label_or_name_is_not_an_instance():
    raw = json.loads(fixture("podman-ps-fleet.json"))
    c = dict(raw[0], Labels={k: v for k, v in raw[0]["Labels"].items() if k != "infra.immutable.group"})
    nameless = dict(raw[1], Names=[], Id="")
    instances = [podman.parse_instance(e) for e in (c, nameless, raw[2])]
    assert fleet.instance(instances[0]) is None and fleet.instance(instances[1]) is None
    assert fleet.select(instances) == [instances[2]]


def test_labels_that_are_not_numbers_do_not_break_the_listing():
    raw = json.loads(fixture("podman-ps-fleet.json"))
    raw[0]["Labels"]["infra.immutable.sequence"] = "x1"
    raw[0]["Labels"]["infra.immutable.zone"] = ""
    inst = podman.parse_ps(json.dumps(raw))[0]
    _name, hv = fleet.instance(inst)
    assert "immutable_sequence" not in hv and "immutable_zone" not in hv
    assert hv["immutable_labels"]["infra.immutable.sequence"] == "x1"


ROUTER = {"endpoints": {
    "shop/prod": {"groups": {"shop-prod-v003": 100, "shop-prod-v002": 0}},
    "shop/acme": {"groups": {"shop-acme-v001": "25", "junk": "heavy", "flag": True}},
    "broken": "not a mapping",
    "empty": {},
}}


def test_parse_router_state_keeps_what_fits():
    assert fleet.parse_router_state(ROUTER) == {"shop-prod-v003": 100, "shop-prod-v002": 0, "shop-acme-v001": 25}


@pytest.mark.parametrize("doc", [[], {}, {"endpoints": []}, "x"])
def test_parse_router_state_needs_endpoints(doc):
    with pytest.raises(ValueError):
        fleet.parse_router_state(doc)


@pytest.mark.parametrize("group,weights,state", [
    ("g", {"g": 100}, "enabled"), ("g", {"g": 1}, "enabled"), ("g", {"g": 0}, "disabled"),
    ("g", {"h": 10}, "unrouted"), ("g", {}, "unrouted"),
])
def test_traffic(group, weights, state):
    assert fleet.traffic(group, weights) == state


def test_traffic_state_merged_into_hosts_and_groups(containers):
    weights = {"shop-prod-v003": 100, "shop-prod-v002": 0}
    inv = fleet.fleet(containers, weights=weights)
    hosts = inv["hosts"]
    assert {n: (h["immutable_traffic"], h.get("immutable_traffic_weight")) for n, h in hosts.items()} == {
        "shop-acme-v001-5e6f70": ("unrouted", None),
        "shop-acme-v001-77aa00": ("unrouted", None),
        "shop-prod-v002-4f1c2a": ("disabled", 0),
        "shop-prod-v002-9b7e01": ("disabled", 0),
        "shop-prod-v003-1a2b3c": ("enabled", 100),
        "shop-prod-v003-c0ffee": ("enabled", 100),
    }
    assert inv["groups"]["traffic_enabled"] == ["shop-prod-v003-1a2b3c", "shop-prod-v003-c0ffee"]
    assert inv["groups"]["traffic_disabled"] == ["shop-prod-v002-4f1c2a", "shop-prod-v002-9b7e01"]
    assert inv["groups"]["traffic_unrouted"] == ["shop-acme-v001-5e6f70", "shop-acme-v001-77aa00"]


def test_no_router_state_means_no_traffic_state(containers):
    inv = fleet.fleet(containers, weights=None)
    assert not any(g.startswith("traffic_") for g in inv["groups"])
    assert not any("immutable_traffic" in h for h in inv["hosts"].values())


def test_load_router_state(tmp_path):
    good = tmp_path / "router.json"
    good.write_text(json.dumps(ROUTER))
    assert fleet.load_router_state(str(good)) == (
        {"shop-prod-v003": 100, "shop-prod-v002": 0, "shop-acme-v001": 25}, None)
    missing = str(tmp_path / "nope.json")
    weights, why = fleet.load_router_state(missing)
    assert weights is None and missing in why and "no traffic state" in why
    half = tmp_path / "half.json"
    half.write_text('{"endpoints": {"shop/prod": ')
    weights, why = fleet.load_router_state(str(half))
    assert weights is None and str(half) in why
    wrong = tmp_path / "wrong.json"
    wrong.write_text("[1, 2]")
    weights, why = fleet.load_router_state(str(wrong))
    assert weights is None and "endpoints" in why


def test_users_from_inspect():
    assert podman.parse_users(fixture("podman-inspect.json")) == {
        "shop-prod-v003-1a2b3c": "web", "shop-acme-v001-77aa00": "web"}
    assert podman.parse_users("") == {}
    assert podman.parse_users("Error: no such container") == {}


@pytest.mark.parametrize("user,extra", [
    ("", {}), (None, {}), ("root", {}), ("0", {}), ("0:0", {}), ("root:root", {}),
    ("web", {"ansible_user": "web"}), ("999:999", {"ansible_user": "999:999"}),
])
def test_connection_as_the_containers_user(user, extra):
    assert PODMAN.connection({"name": "web-prod-v003-1a2b3c", "user": user}) == dict({
        "ansible_connection": "containers.podman.podman", "ansible_host": "web-prod-v003-1a2b3c",
        "ansible_remote_tmp": "/tmp"}, **extra)


def test_instance_connects_as_its_user(containers):
    _name, hv = fleet.instance(dict(containers[2], user="web"), PODMAN.connection)
    assert hv["ansible_user"] == "web" and hv["ansible_remote_tmp"] == "/tmp"
    _name, hv = fleet.instance(containers[2], PODMAN.connection)
    assert "ansible_user" not in hv and hv["ansible_connection"] == "containers.podman.podman"
