from __future__ import annotations

import os

import pytest

from ansible_collections.immutable.infra.plugins.module_utils._names import check_name, group_name, instance_group
from ansible_collections.immutable.infra.plugins.module_utils._platforms._options import platform_from
from ansible_collections.immutable.infra.plugins.module_utils._platforms._podman import parse_instance
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._server_group import health_spec, spread
from ansible_collections.immutable.infra.plugins.module_utils._traffic._haproxy import (
    check_args, check_passed, endpoint_stats, parse_stat, render_config, server_weight)
from ansible_collections.immutable.infra.plugins.module_utils._traffic._verify import (
    describe, group_counters, rollback_target, verify)


def test_group_names_are_zero_padded():
    assert group_name("web", "prod", 3) == "web-prod-v003"
    assert instance_group("web-prod-v003-1a2b3c") == "web-prod-v003"


@pytest.mark.parametrize("bad", ["Web", "web-1", "", "1web", "a" * 32, None])
def test_app_and_stack_names_are_checked(bad):
    with pytest.raises(ImmutableInfraError, match="invalid app"):
        check_name("app", bad)


def test_spread_round_robin_and_fills_the_emptiest_zone():
    assert spread(["a", "b"], 5) == ["a", "b", "a", "b", "a"]
    assert spread(["a", "b", "c"], 2, existing=["a", "a", "b"]) == ["c", "b"]
    assert spread(["a"], 0) == []


def test_health_spec_defaults_to_the_service_port():
    hc = health_spec({"interval": 0.2}, 8080)
    assert hc == {"path": "/healthz", "port": 8080, "status": 200, "interval": 0.2, "healthy_threshold": 2, "timeout": 2.0}


def test_health_spec_names_every_bad_field():
    with pytest.raises(ImmutableInfraError) as exc:
        health_spec({"path": "x", "status": 999, "interval": 0, "healthy_threshold": "lots"}, 8080)
    msg = exc.value.msg
    for word in ("path must start with '/'", "status must be between", "interval must be between",
                 "healthy_threshold must be a number"):
        assert word in msg
    with pytest.raises(ImmutableInfraError, match="unknown field"):
        health_spec({"pth": "/x"}, 8080)


@pytest.mark.parametrize("weight,servers,expected", [(100, 1, 256), (100, 2, 128), (100, 20, 13), (10, 1, 26),
                                                     (0, 5, 0), (50, 0, 0), (1, 20, 1)])
def test_server_weights_share_traffic_by_group_weight(weight, servers, expected):
    assert server_weight(weight, servers) == expected


def test_canary_share_is_close_to_the_group_weights():
    big, small = server_weight(90, 4) * 4, server_weight(10, 1)
    assert abs(small / (big + small) - 0.10) < 0.02


def test_render_config_has_one_frontend_and_backend_per_endpoint(tmp_path):
    routes = {"endpoints": {"web/prod": {"port": 18080, "groups": {"web-prod-v001": 100},
                                         "servers": {"web-prod-v001-aa": {"address": "127.0.0.1", "port": 40001,
                                                                          "weight": 256, "group": "web-prod-v001"}},
                                         "health": {"path": "/healthz", "status": 200, "interval_ms": 200}},
                            "web/acme": {"port": 18081, "groups": {}, "servers": {}, "health": {}}}}
    text = render_config(str(tmp_path), routes)
    assert text.count("\nfrontend ") == 2 and text.count("\nbackend ") == 2
    assert "bind 127.0.0.1:18080" in text and "bind 127.0.0.1:18081" in text
    assert "server web-prod-v001-aa 127.0.0.1:40001 weight 256" in text
    assert "option httpchk GET /healthz" in text and "check inter 200ms" in text
    assert "stats socket %s" % os.path.join(str(tmp_path), "admin.sock") in text


def test_parse_stat():
    csv_text = ("# pxname,svname,status,weight,stot,hrsp_5xx,econ,eresp,check_status,\n"
                "be_web_prod,FRONTEND,OPEN,,12,1,,,,\n"
                "be_web_prod,web-prod-v001-aa,UP,256,10,1,2,3,L7OK,\n"
                "be_web_prod,web-prod-v001-bb,UP,256,0,0,0,0,INI,\n"
                "be_web_prod,BACKEND,UP,256,10,1,2,3,,\n")
    rows = parse_stat(csv_text)
    assert rows[1]["svname"] == "web-prod-v001-aa" and rows[1]["hrsp_5xx"] == "1"
    assert rows[3]["svname"] == "BACKEND"
    # haproxy's column names stay in the haproxy backend: the policy reads neutral records.
    stats = endpoint_stats(rows)
    assert stats["servers"]["web-prod-v001-aa"] == {
        "name": "web-prod-v001-aa", "weight": 256, "status": "UP", "check": "L7OK", "up": True, "check_passed": True,
        "requests": 10, "http_5xx": 1, "connect_errors": 2, "response_errors": 3}
    assert stats["servers"]["web-prod-v001-bb"]["up"] and not stats["servers"]["web-prod-v001-bb"]["check_passed"]
    assert stats["total"] == {"status": "UP", "requests": 10, "http_5xx": 1, "connect_errors": 2, "response_errors": 3}


def test_parse_instance_reads_identity_and_ports():
    entry = {"Names": ["web-prod-v002-aa"], "Id": "abc", "State": "running", "Created": 1,
             "Ports": [{"host_ip": "127.0.0.1", "container_port": 8080, "host_port": 40123, "range": 1}],
             "Labels": {"infra.immutable.app": "web", "infra.immutable.stack": "prod",
                        "infra.immutable.group": "web-prod-v002", "infra.immutable.sequence": "2",
                        "infra.immutable.port": "8080", "infra.immutable.zone": "zone-b",
                        "infra.immutable.image-digest": "sha256:x"}}
    inst = parse_instance(entry)
    assert inst["sequence"] == 2 and inst["host_port"] == 40123 and inst["endpoint"] == "http://127.0.0.1:40123"
    assert inst["zone"] == "zone-b" and inst["ports"] == {8080: 40123} and inst["state"] == "running"


# ------------------------------------------------ verify window and rollback choice
def _row(name, stot=0, h5=0, econ=0, eresp=0, status="UP"):
    """One live server record (RouterBackend.stats()["servers"][name])."""
    return {"name": name, "requests": stot, "http_5xx": h5, "connect_errors": econ, "response_errors": eresp,
            "up": status.startswith("UP"), "check_passed": status.startswith("UP"), "status": status, "weight": 1}


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _window(samples, seconds=3, max_errors=0):
    """Run verify() over successive samples of the live servers (the last one repeats)."""
    samples = [{r["name"]: r for r in rows} for rows in samples]
    clock, reads = _Clock(), iter(samples)
    last = {}

    def read():
        last.update(next(reads, last))
        return dict(last)
    base = group_counters(samples[0], ["web-prod-v002"])
    return verify(read, ["web-prod-v002"], base, seconds, max_errors, clock=clock, sleep=clock.sleep)


def test_verify_window_passes_after_its_time_without_errors():
    rows = [_row("web-prod-v001-a", stot=50, h5=9), _row("web-prod-v002-b", stot=5)]
    v = _window([rows, rows[:1] + [_row("web-prod-v002-b", stot=40)]])
    assert v["passed"] and v["requests"] == 35 and v["errors"] == 0 and v["seconds"] >= 3
    assert v["healthy"] == 1


def test_verify_window_ends_at_the_first_error_beyond_the_allowance():
    start = [_row("web-prod-v002-b", stot=0)]
    samples = [start, [_row("web-prod-v002-b", stot=10)], [_row("web-prod-v002-b", stot=20, h5=1, econ=1)]]
    v = _window(samples, seconds=30, max_errors=1)
    assert not v["passed"] and v["errors"] == 2 and v["http_5xx"] == 1 and v["connect_errors"] == 1
    assert v["seconds"] < 1 and "2 errors, allowed 1" in v["reason"]
    assert "2 errors (5xx 1, connection 1, response 0) in 20 requests" in describe(v)


def test_verify_window_fails_when_a_group_has_no_server_up():
    v = _window([[_row("web-prod-v002-b")], [_row("web-prod-v002-b", status="DOWN")]], seconds=30)
    assert not v["passed"] and v["healthy"] == 0 and "no healthy server" in v["reason"]


def _ep(groups, history):
    return {"groups": groups, "history": [{"groups": g, "images": {n: "img-" + n for n in g}} for g in history]}


def test_rollback_goes_to_the_newest_group_that_carried_traffic_and_runs():
    ep = _ep({"v1": 0, "v2": 0, "v3": 100}, [{"v1": 100}, {"v1": 0, "v2": 100}, {"v2": 0, "v3": 100}])
    assert rollback_target("a/s", ep, {"v1", "v2", "v3"}) == {
        "to": "v2", "from": ["v3"], "image": "img-v2", "recreate": False}
    assert rollback_target("a/s", ep, {"v1", "v3"})["to"] == "v1"          # v2 gone: the next that runs
    gone = rollback_target("a/s", ep, {"v3"})                                 # none runs: recreate the newest
    assert gone["to"] == "v2" and gone["recreate"] and gone["image"] == "img-v2"
    assert rollback_target("a/s", ep, {"v1", "v2", "v3"}, named="v1")["to"] == "v1"


def test_rollback_refusals_name_what_carries_traffic():
    ep = _ep({"v1": 100}, [{"v1": 100}])
    with pytest.raises(ImmutableInfraError, match="a/s has no other group to roll back to; traffic stays on v1"):
        rollback_target("a/s", ep, {"v1"})
    with pytest.raises(ImmutableInfraError, match="v1 already carries the traffic"):
        rollback_target("a/s", ep, {"v1"}, named="v1")
    with pytest.raises(ImmutableInfraError, match="v9 of a/s is not running and the router recorded no image"):
        rollback_target("a/s", ep, {"v1"}, named="v9")


def test_new_servers_count_as_up_only_after_a_completed_check():
    # haproxy shows a server added at runtime as UP before any check ran.
    assert not check_passed({"status": "UP 1/2", "check_status": "INI"})
    assert not check_passed({"status": "UP 1/2", "check_status": "* INI"})
    assert not check_passed({"status": "DOWN", "check_status": "L4CON"})
    assert check_passed({"status": "UP", "check_status": "* L7OK"})
    # Runtime-added servers do not inherit default-server: the same settings are passed explicitly.
    assert check_args({"interval_ms": 500, "fall": 2, "rise": 1}) == "check inter 500ms downinter 100ms fall 2 rise 1"
    assert check_args({"interval_ms": 50}) == "check inter 50ms downinter 50ms fall 2 rise 1"


# ------------------------------------------------ the platform option
def test_platform_from_builds_the_named_platform_with_its_options():
    p = platform_from({"platform": "podman", "platform_options": {"podman": "/opt/podman"}}, validate_certs=True)
    assert (p.name, p.podman, p.validate_certs, p.image_format) == ("podman", "/opt/podman", True, "container")
    # The caller's default fills only what the user left out.
    p = platform_from({"platform": "podman", "platform_options": {"validate_certs": False}}, validate_certs=True)
    assert p.validate_certs is False
    assert platform_from({"platform": None, "platform_options": None}).name == "podman"


@pytest.mark.parametrize("given,words", [
    ({"platform": "vmware", "platform_options": {}}, "unknown platform 'vmware': use one of aws, libvirt, podman"),
    ({"platform": "vmware", "platform_options": {}}, "unknown platform 'vmware': use one of"),
    ({"platform": "podman", "platform_options": {"uri": "qemu:///session"}}, "platform podman has no option(s) uri"),
    ({"platform": "podman", "platform_options": "podman=/x"}, "platform_options must be a mapping"),
])
def test_platform_from_names_a_bad_platform_or_option(given, words):
    with pytest.raises(ImmutableInfraError) as exc:
        platform_from(given, validate_certs=True)
    assert words in exc.value.msg


def test_an_endpoint_is_driven_only_through_the_platform_it_runs_on():
    from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import check_platform
    check_platform("web/prod", None, "libvirt")                            # no endpoint yet: any platform
    check_platform("web/prod", {"platform": "libvirt"}, "libvirt")
    with pytest.raises(ImmutableInfraError, match="runs on the podman platform, not libvirt: give platform=podman"):
        check_platform("web/prod", {"groups": {}}, "libvirt")              # recorded before platforms: podman
    with pytest.raises(ImmutableInfraError, match="web/acme runs on the libvirt platform, not podman"):
        check_platform("web/acme", {"platform": "libvirt"}, "podman")
