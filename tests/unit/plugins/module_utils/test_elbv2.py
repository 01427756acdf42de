"""Pure parts of the elbv2 router backend (names, tags, the routes document rebuilt from
canned describe output), the backend selection, and the policy with a router that has no
counters (the verify window judges health only and says so)."""
from __future__ import annotations

import pytest

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._traffic import router_from
from ansible_collections.immutable.infra.plugins.module_utils._traffic import _elbv2_names as n
from ansible_collections.immutable.infra.plugins.module_utils._traffic._backend import COUNTERS, RouterBackend
from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import endpoint_report
from ansible_collections.immutable.infra.plugins.module_utils._traffic._verify import describe, verify

TG1 = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-prod-v001/1111"
TG2 = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-prod-v002/2222"
HEALTH = {"path": "/healthz", "status": 200, "interval_ms": 500, "timeout_ms": 2000, "rise": 1, "fall": 2}


def test_a_target_group_is_named_after_its_group_within_32_characters():
    assert n.target_group_name("web-prod-v001") == "web-prod-v001"
    long1 = "a" * 20 + "-" + "b" * 20 + "-v001"
    long2 = "a" * 20 + "-" + "b" * 20 + "-v002"
    names = {n.target_group_name(long1), n.target_group_name(long2)}
    assert len(names) == 2 and all(len(x) <= 32 and x.startswith("a" * 20) and not x.endswith("-") for x in names)
    assert n.target_group_name(long1) == n.target_group_name(long1)        # stable: found again by the next run


def test_servers_and_targets_map_both_ways():
    assert n.server_name("web-prod-v001", "i-0abc123") == "web-prod-v001-0abc123"
    assert n.target_id("web-prod-v001-0abc123", "web-prod-v001") == "i-0abc123"


def test_the_health_spec_is_clamped_to_elbv2_limits():
    h = n.tg_health(HEALTH)
    assert h["HealthCheckPath"] == "/healthz" and h["Matcher"] == {"HttpCode": "200"}
    assert (h["HealthCheckIntervalSeconds"], h["HealthCheckTimeoutSeconds"]) == (5, 2)
    assert (h["HealthyThresholdCount"], h["UnhealthyThresholdCount"]) == (2, 2)
    slow = n.tg_health(dict(HEALTH, interval_ms=30000, timeout_ms=60000, rise=20))
    assert (slow["HealthCheckIntervalSeconds"], slow["HealthCheckTimeoutSeconds"], slow["HealthyThresholdCount"]) == (30, 29, 10)
    assert not n.health_differs(dict(h), HEALTH) and n.health_differs(dict(h, HealthCheckPath="/"), HEALTH)


def test_the_forward_action_and_its_weights_read_back():
    action = n.forward_action({TG2: 100, TG1: 0})
    assert action[0]["ForwardConfig"]["TargetGroupStickinessConfig"] == {"Enabled": False}
    assert n.forward_weights({"DefaultActions": action}) == {TG1: 0, TG2: 100}
    assert n.forward_weights({"DefaultActions": [{"Type": "forward", "TargetGroupArn": TG1}]}) == {TG1: 1}
    assert n.forward_weights({"DefaultActions": [{"Type": "fixed-response"}]}) == {}


def _history(count):
    return [{"time": 1000.0 + i, "groups": {"web-prod-v%03d" % i: 100, "web-prod-v%03d" % (i + 1): 0},
             "images": {"web-prod-v%03d" % i: "reg/web@sha256:%064x" % i}} for i in range(count)]


ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.:/=+-@")


def test_history_and_images_round_trip_through_listener_tags():
    ep = {"health": HEALTH, "platform": "aws", "history": _history(3)}
    tags = n.listener_tags("web/prod", ep, created=True)
    assert tags[n.TAG_ENDPOINT] == "web/prod" and tags[n.TAG_CREATED] and tags[n.TAG_PLATFORM] == "aws"
    # ELBv2's rules for tags: at most 10 here (moto's quota), 256-character values of these characters only.
    assert len(tags) <= 10 and all(len(v) <= 256 and set(v) <= ALLOWED for v in tags.values())
    back = n.history_from(tags)
    # Each switch keeps the groups that carried traffic (all a rollback reads), at whole seconds.
    assert [(e["time"], e["groups"]) for e in back] == [(1000.0 + i, {"web-prod-v%03d" % i: 100}) for i in range(3)]
    assert back[0]["images"] == {"web-prod-v000": "reg/web@sha256:%064x" % 0}
    assert n.endpoint_from({"Port": 80}, tags, [], "alb")["health"] == HEALTH


def test_the_newest_switches_and_images_are_kept_within_the_tag_quota():
    tags = n.listener_tags("web/prod", {"health": HEALTH, "history": _history(40)}, created=True)
    back = n.history_from(tags)
    assert len(tags) <= 10 and all(len(v) <= 256 and set(v) <= ALLOWED for v in tags.values())
    assert back[-1]["time"] == 1039.0 and len(back) >= 8
    assert [e["time"] for e in back] == sorted(e["time"] for e in back)
    assert back[-1]["images"] == {"web-prod-v039": "reg/web@sha256:%064x" % 39}      # the newest images are kept


def test_the_routes_document_is_rebuilt_from_describe_output():
    listener = {"Port": 18080, "DefaultActions": n.forward_action({TG1: 0, TG2: 100})}
    tags = n.listener_tags("web/prod", {"health": HEALTH, "platform": "aws", "history": _history(1)})
    tgs = [{"group": "web-prod-v001", "TargetGroupArn": TG1, "Port": 8080,
            "targets": [{"id": "i-01", "port": 8080, "address": "10.0.1.4"}]},
           {"group": "web-prod-v002", "TargetGroupArn": TG2, "Port": 8080,
            "targets": [{"id": "i-02", "port": 8080, "address": "10.0.1.5"}, {"id": "i-03", "port": 8080, "address": "10.0.2.6"}]},
           {"group": "web-prod-v003", "TargetGroupArn": TG2 + "3", "Port": 8080, "targets": []}]
    ep = n.endpoint_from(listener, tags, tgs, "alb-1.elb.amazonaws.com")
    assert ep["port"] == 18080 and ep["address"] == "alb-1.elb.amazonaws.com" and ep["platform"] == "aws"
    assert ep["groups"] == {"web-prod-v001": 0, "web-prod-v002": 100, "web-prod-v003": 0}
    assert ep["servers"] == {
        "web-prod-v001-01": {"group": "web-prod-v001", "address": "10.0.1.4", "port": 8080, "weight": 0},
        "web-prod-v002-02": {"group": "web-prod-v002", "address": "10.0.1.5", "port": 8080, "weight": 100},
        "web-prod-v002-03": {"group": "web-prod-v002", "address": "10.0.2.6", "port": 8080, "weight": 100}}
    assert ep["health"] == HEALTH and len(ep["history"]) == 1


@pytest.mark.parametrize("params,words", [
    ({"router_backend": "haproxy", "router_options": {"load_balancer": "x"}}, "router_options load_balancer are for the elbv2"),
    ({"router_backend": "nginx"}, "unknown router_backend 'nginx'"),
    ({"router_backend": "elbv2", "router_options": {"load_balancer": "x", "listner_arn": "y"}},
     "unknown router option(s) listner_arn for the elbv2 router"),
    ({"router_backend": "elbv2", "router_options": {}}, "needs router_options.load_balancer"),
    ({"router_backend": "elbv2", "router_options": "alb"}, "router_options must be a mapping"),
])
def test_router_from_names_a_bad_backend_or_option(params, words):
    with pytest.raises(ImmutableInfraError) as exc:
        router_from(dict(params, app="web", stack="prod"))
    assert words in exc.value.msg


class NoCounters(RouterBackend):
    """A router that knows health and nothing else (like elbv2)."""
    name = "blind"
    counters_unavailable = "no counters offline"

    def __init__(self, up=True):
        self.up = up

    def running(self):
        return True

    def load_routes(self):
        return {"endpoints": {"web/prod": {"port": 80, "groups": {"web-prod-v001": 100}, "servers": {}, "history": []}}}

    def stats(self, key):
        srv = dict({c: None for c in COUNTERS}, name="web-prod-v001-01", weight=100, up=self.up, check_passed=self.up,
                   status="healthy" if self.up else "unhealthy", check=None)
        return {"servers": {srv["name"]: srv}, "total": dict({c: None for c in COUNTERS}, status="UP")}


def test_a_verify_window_without_counters_judges_health_only_and_says_so():
    router = NoCounters()
    v = verify(lambda: router.stats("web/prod")["servers"], ["web-prod-v001"], {}, 0.01, 0, sleep=lambda s: None,
               counters_unavailable=router.counters_unavailable)
    assert v["passed"] and v["errors"] is None and v["requests"] is None and v["healthy"] == 1
    assert v["judged"] == "health only" and "health only (no counters offline)" in describe(v)
    down = NoCounters(up=False)
    v = verify(lambda: down.stats("web/prod")["servers"], ["web-prod-v001"], {}, 5, 0, sleep=lambda s: None)
    assert not v["passed"] and v["reason"] == "a group has no healthy server"


def test_a_report_without_counters_says_they_are_unavailable():
    rep = endpoint_report(NoCounters(), "web", "prod")
    g = rep["groups"]["web-prod-v001"]
    assert g["healthy"] == 1 and g["requests"] is None and g["errors"] is None
    assert rep["counters"] == {"available": False, "source": None, "reason": "no counters offline"}
