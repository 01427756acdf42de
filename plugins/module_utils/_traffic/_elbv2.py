# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ELBv2 router backend: an app/stack endpoint is a listener of an
Application Load Balancer, a server group a target group attached to the Auto
Scaling group named like it, weights those of the listener's weighted forward
action. The routes document lives in AWS (see _elbv2_names for where each part
is kept), so a job in a fresh container (AWX) reads it back.

How the policy's steps map (order of a switch, see docs/aws-elbv2.md):
  add_server      "attach": the group's target group (created, tagged, its health check set)
                  attached to the group's ASG (the ASG registers its instances), then put
                  into the listener's forward action at weight 0 so ELBv2 checks its targets
  stats           target health, read live; counters are CloudWatch's and are not read
                  (None, with counters_unavailable saying why)
  set_weight      the weight of the server's group in the forward action
  remove_server   deregisters the target; the last one of a group takes the group out:
                  out of the forward action first, then detached from the ASG, then deleted
The old group's ASG is not touched: its instances stay warm for a rollback."""

from __future__ import annotations

import time

from ansible_collections.immutable.infra.plugins.module_utils._aws import AWS_OPTIONS, Session
from ansible_collections.immutable.infra.plugins.module_utils._names import instance_group, label
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._traffic import _elbv2_names as n
from ansible_collections.immutable.infra.plugins.module_utils._traffic._backend import COUNTERS, RouterBackend

OPTIONS = AWS_OPTIONS + ("load_balancer", "listener_arn", "vpc_id", "poll_interval")
# ELBv2 forwards one listener action to at most five target groups.
MAX_FORWARD = 5
COUNTERS_UNAVAILABLE = ("ELBv2 request and error counts are CloudWatch metrics (one-minute periods, minutes late), "
                        "which the elbv2 router does not read and which do not exist offline; target health only")


def _tags(items):
    return {t["Key"]: t["Value"] for t in items or []}


class Elbv2Router(RouterBackend):
    name = "elbv2"
    counters_unavailable = COUNTERS_UNAVAILABLE

    def __init__(self, options, scope=None):
        options = dict(options or {})
        unknown = sorted(k for k in options if k not in OPTIONS)
        if unknown:
            raise ImmutableInfraError("unknown router option(s) %s for the elbv2 router (known: %s)"
                                      % (", ".join(unknown), ", ".join(OPTIONS)))
        if not options.get("load_balancer"):
            raise ImmutableInfraError("the elbv2 router needs router_options.load_balancer: the name or ARN of an "
                                      "existing Application Load Balancer (playbooks/aws_network.yml makes one)")
        self.options = options
        self.scope = scope
        self.poll_interval = float(options.get("poll_interval") if options.get("poll_interval") is not None else 1.0)
        self.aws = Session({k: v for k, v in options.items() if k in AWS_OPTIONS})
        self.aws.check_credentials()
        self._lb = None
        self._state = {}            # key -> {"listener": {...}, "tags": {...}, "weights": {arn: w}, "tgs": {group: tg}}
        self._given = None          # the listener_arn's listener, while it serves no endpoint yet
        self._removed = {}          # group -> targets remove_server took out (the last one takes the group out)
        self._last_read = 0.0

    # The load balancer and its listeners
    def lb(self):
        if self._lb is None:
            ref = self.options["load_balancer"]
            kw = {"LoadBalancerArns": [ref]} if ref.startswith("arn:") else {"Names": [ref]}
            try:
                found = self.aws.call("elbv2", "describe_load_balancers", what="describe load balancer %s" % ref, **kw)
            except ImmutableInfraError as exc:
                if exc.details.get("aws_error_code") in ("LoadBalancerNotFound", "ValidationError"):
                    raise ImmutableInfraError(
                        "load balancer %r does not exist in %s: give router_options.load_balancer the name or ARN of "
                        "an existing Application Load Balancer (playbooks/aws_network.yml makes one)"
                        % (ref, self.aws.region), load_balancer=ref)
                raise
            self._lb = found["LoadBalancers"][0]
        return self._lb

    @property
    def listen_address(self):
        return self.lb()["DNSName"]

    def _listeners(self):
        listeners = self.aws.pages("elbv2", "describe_listeners", "Listeners", LoadBalancerArn=self.lb()["LoadBalancerArn"])
        tags = self._describe_tags([x["ListenerArn"] for x in listeners])
        return [dict(x, tags=tags.get(x["ListenerArn"], {})) for x in listeners]

    def _describe_tags(self, arns):
        out = {}
        for i in range(0, len(arns), 20):
            found = self.aws.call("elbv2", "describe_tags", ResourceArns=arns[i:i + 20])
            out.update({d["ResourceArn"]: _tags(d.get("Tags")) for d in found["TagDescriptions"]})
        return out

    def _given_listener(self):
        arn = self.options.get("listener_arn")
        if not arn:
            return None
        try:
            found = self.aws.call("elbv2", "describe_listeners", ListenerArns=[arn])["Listeners"][0]
        except ImmutableInfraError as exc:
            if exc.details.get("aws_error_code") in ("ListenerNotFound", "ValidationError"):
                raise ImmutableInfraError("listener %s does not exist: give router_options.listener_arn an existing "
                                          "listener of %s, or leave it out to have one created on the endpoint's port"
                                          % (arn, self.options["load_balancer"]), listener_arn=arn)
            raise
        if found["LoadBalancerArn"] != self.lb()["LoadBalancerArn"]:
            raise ImmutableInfraError("listener %s belongs to another load balancer than %s"
                                      % (arn, self.options["load_balancer"]), listener_arn=arn)
        return dict(found, tags=self._describe_tags([arn]).get(arn, {}))

    def _endpoint_listeners(self):
        given = self._given_listener()
        by_key = {}
        for x in self._listeners():
            key = x["tags"].get(n.TAG_ENDPOINT)
            if key and (self.scope is None or key == self.scope):
                by_key[key] = x
        if given is not None:
            key = given["tags"].get(n.TAG_ENDPOINT)
            if key and self.scope and key != self.scope:
                raise ImmutableInfraError("listener %s serves %s, not %s" % (given["ListenerArn"], key, self.scope))
            if not key:
                self._given = given
        return by_key

    # Target groups
    def _endpoint_tgs(self, key, listener):
        """The endpoint's target groups: the listener forwards to them, or they carry its app/stack tags."""
        app, stack = key.split("/")
        prefix = ("%s-%s-v" % (app, stack))[:22]         # target_group_name keeps a group's first 22+ characters
        forwarded = set(n.forward_weights(listener))
        tgs = [t for t in self.aws.pages("elbv2", "describe_target_groups", "TargetGroups")
               if t["TargetGroupName"].startswith(prefix) or t["TargetGroupArn"] in forwarded]
        tags = self._describe_tags([t["TargetGroupArn"] for t in tgs])
        out = {}
        for t in tgs:
            tt = tags.get(t["TargetGroupArn"], {})
            if tt.get(label("app")) == app and tt.get(label("stack")) == stack and tt.get(label("group")):
                out[tt[label("group")]] = dict(t, tags=tt)
        return out

    def _health(self, tg):
        return self.aws.call("elbv2", "describe_target_health", TargetGroupArn=tg["TargetGroupArn"])[
            "TargetHealthDescriptions"]

    def _running_targets(self, tgs):
        """{target group arn: [{"id", "port", "address"}]} of the targets whose instance runs."""
        health = {tg["TargetGroupArn"]: self._health(tg) for tg in tgs.values()}
        ids = sorted({d["Target"]["Id"] for ds in health.values() for d in ds})
        addresses = {}
        if ids:
            for r in self.aws.pages("ec2", "describe_instances", "Reservations",
                                    Filters=[{"Name": "instance-id", "Values": ids}]):
                addresses.update({i["InstanceId"]: i.get("PrivateIpAddress") for i in r["Instances"]
                                  if i["State"]["Name"] == "running"})
        return {arn: [{"id": d["Target"]["Id"], "port": d["Target"].get("Port"), "address": addresses[d["Target"]["Id"]]}
                      for d in ds if d["Target"]["Id"] in addresses] for arn, ds in health.items()}

    # RouterBackend
    def running(self):
        self.lb()
        return True

    def start(self):
        self.lb()

    def reload(self):
        """write() applies each change to AWS: nothing is left to reload."""
        return None

    def load_routes(self):
        routes = {"endpoints": {}}
        self._state = {}
        for key, listener in sorted(self._endpoint_listeners().items()):
            tgs = self._endpoint_tgs(key, listener)
            targets = self._running_targets(tgs)
            rows = [{"group": g, "TargetGroupArn": t["TargetGroupArn"], "Port": t["Port"],
                     "targets": targets[t["TargetGroupArn"]]} for g, t in tgs.items()]
            routes["endpoints"][key] = n.endpoint_from(listener, listener["tags"], rows, self.listen_address)
            self._state[key] = {"listener": listener, "tags": listener["tags"], "tgs": tgs,
                                "weights": n.forward_weights(listener)}
        return routes

    def port_available(self, port):
        if self._given is not None:
            if int(self._given["Port"]) != int(port):
                raise ImmutableInfraError("listener %s listens on port %s, not %s: give port %s (or no listener_arn)"
                                          % (self._given["ListenerArn"], self._given["Port"], port, self._given["Port"]))
            return True
        return not any(int(x["Port"]) == int(port) for x in self._listeners())

    def server_weight(self, group_weight, servers_in_group):
        """A server's weight is its group's: ELBv2 weighs target groups, not targets."""
        return int(group_weight) if servers_in_group > 0 else 0

    def stats(self, key):
        wait = self._last_read + self.poll_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_read = time.monotonic()
        st = self._state.get(key)
        if st is None:
            return {"servers": {}, "total": {}}
        listener = self.aws.call("elbv2", "describe_listeners", ListenerArns=[st["listener"]["ListenerArn"]])["Listeners"][0]
        st["weights"] = n.forward_weights(listener)
        servers = {}
        for g, tg in sorted(st["tgs"].items()):
            w = st["weights"].get(tg["TargetGroupArn"], 0)
            for d in self._health(tg):
                th = d.get("TargetHealth") or {}
                name = n.server_name(g, d["Target"]["Id"])
                servers[name] = dict({c: None for c in COUNTERS}, name=name, weight=w, status=th.get("State"),
                                     check=th.get("Reason") or th.get("Description"),
                                     up=th.get("State") == "healthy", check_passed=th.get("State") == "healthy")
        total = dict({c: None for c in COUNTERS}, status="UP" if any(s["up"] for s in servers.values()) else "DOWN")
        return {"servers": servers, "total": total if servers else {}}

    def add_server(self, key, name, address, port, weight, health):
        group = instance_group(name)
        st = self._state[key]
        new = group not in st["tgs"]
        if new:
            self._check_forward(key, len(st["weights"]) + 1)
        tg = self._ensure_tg(key, group, port, health)
        try:
            if st["weights"].get(tg["TargetGroupArn"]) is None:
                self._forward(key, dict(st["weights"], **{tg["TargetGroupArn"]: int(weight)}))
            self._register(tg, [n.target_id(name, group)])
        except ImmutableInfraError:
            if new:                 # no target group left behind
                self._drop_tg(key, group)
            raise

    def set_weight(self, key, name, weight):
        st = self._state[key]
        arn = st["tgs"][instance_group(name)]["TargetGroupArn"]
        if st["weights"].get(arn) != int(weight):
            self._forward(key, dict(st["weights"], **{arn: int(weight)}))

    def remove_server(self, key, name):
        group = instance_group(name)
        st = self._state[key]
        tg = st["tgs"].get(group)
        if tg is None:
            return False
        target = n.target_id(name, group)
        removed = self._removed.setdefault(group, set())
        removed.add(target)
        left = [d for d in self._health(tg) if d["Target"]["Id"] not in removed
                and (d.get("TargetHealth") or {}).get("State") != "draining"]
        if not left:                # the group's last server: the group leaves (its ASG deregisters it on detach)
            self._drop_tg(key, group)
            return True
        asg = self._asg(group)
        members = {i["InstanceId"] for i in (asg or {}).get("Instances") or [] if i.get("LifecycleState") == "InService"}
        if target not in members:   # the ASG deregisters its own members when it terminates them
            self.aws.call("elbv2", "deregister_targets", what="deregister %s from %s" % (target, tg["TargetGroupName"]),
                          TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": target}])
        return True

    def write(self, routes, validate=True):
        eps = routes.get("endpoints", {})
        keys = set(eps) | set(self._state)
        for key in sorted(k for k in keys if self.scope is None or k == self.scope):
            if key in eps:
                self._apply(key, eps[key])
            elif key in self._state:
                self._delete_endpoint(key)

    # Changes
    def _asg(self, group):
        found = self.aws.call("autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=[group])
        return (found.get("AutoScalingGroups") or [None])[0]

    def _ensure_tg(self, key, group, port, health):
        """The group's target group, made and attached to the group's ASG when new."""
        st = self._state[key]
        if group in st["tgs"]:
            return st["tgs"][group]
        asg = self._asg(group)
        if asg is None:
            raise ImmutableInfraError("server group %s has no Auto Scaling group named %s: the elbv2 router sends "
                                      "traffic to Auto Scaling groups (platform aws)" % (group, group), group=group)
        app, stack = key.split("/")
        identity = {k: v for k, v in _tags(asg.get("Tags")).items() if k in {label(i) for i in n.TG_IDENTITY}}
        tags = dict(identity, **{label("app"): app, label("stack"): stack, label("group"): group})
        name = n.target_group_name(group)
        vpc = self.options.get("vpc_id") or self.lb()["VpcId"]
        tg = self.aws.call("elbv2", "create_target_group", what="create target group %s" % name, Name=name,
                           Protocol="HTTP", Port=int(port), VpcId=vpc, TargetType="instance",
                           Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())], **n.tg_health(health))
        tg = dict(tg["TargetGroups"][0], tags=tags)
        st["tgs"][group] = tg
        try:
            self.aws.call("autoscaling", "attach_load_balancer_target_groups", what="attach %s to %s" % (name, group),
                          AutoScalingGroupName=group, TargetGroupARNs=[tg["TargetGroupArn"]])
        except ImmutableInfraError:
            del st["tgs"][group]
            self.aws.call("elbv2", "delete_target_group", TargetGroupArn=tg["TargetGroupArn"])
            raise
        return tg

    def _register(self, tg, ids):
        """The ASG registers its instances; registering them again is harmless and covers an
        instance launched while the group was being attached."""
        self.aws.call("elbv2", "register_targets", what="register %s in %s" % (", ".join(ids), tg["TargetGroupName"]),
                      TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": i} for i in ids])

    @staticmethod
    def _check_forward(key, count):
        if count > MAX_FORWARD:
            raise ImmutableInfraError("%s would forward to %d target groups; ELBv2 forwards to at most %d: retire "
                                      "older groups first" % (key, count, MAX_FORWARD))

    def _forward(self, key, weights):
        self._check_forward(key, len(weights))
        st = self._state[key]
        self.aws.call("elbv2", "modify_listener", what="set the weights of %s" % key,
                      ListenerArn=st["listener"]["ListenerArn"], DefaultActions=n.forward_action(weights))
        st["weights"] = dict(weights)

    def _drop_tg(self, key, group):
        """A group leaves: out of the listener first, then off its ASG, then deleted."""
        st = self._state[key]
        tg = st["tgs"].pop(group)
        arn = tg["TargetGroupArn"]
        if arn in st["weights"]:
            rest = {a: w for a, w in st["weights"].items() if a != arn}
            if rest:
                self._forward(key, rest)
            else:
                self._close_listener(key)
        if self._asg(group) is not None:
            self.aws.call("autoscaling", "detach_load_balancer_target_groups", what="detach %s from %s"
                          % (tg["TargetGroupName"], group), AutoScalingGroupName=group, TargetGroupARNs=[arn])
        self.aws.call("elbv2", "delete_target_group", what="delete target group %s" % tg["TargetGroupName"],
                      TargetGroupArn=arn)

    def _close_listener(self, key):
        """Nothing left to forward to: the listener answers 503 (it is deleted with its endpoint)."""
        st = self._state[key]
        self.aws.call("elbv2", "modify_listener", ListenerArn=st["listener"]["ListenerArn"], DefaultActions=[
            {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/plain",
                                                               "MessageBody": "no server group routed"}}])
        st["weights"] = {}

    def _apply(self, key, ep):
        """Make AWS serve the endpoint ep: its target groups, weights and tags."""
        new = key not in self._state
        if new:
            self.lb()
            self._state[key] = {"listener": None, "tags": {}, "tgs": {}, "weights": {}}
        st = self._state[key]
        members = {}
        for name, srv in ep["servers"].items():
            members.setdefault(srv["group"], []).append((name, srv))
        if new:
            self._check_forward(key, len(set(members) | set(ep["groups"])))
            if self._given is None and not self.port_available(ep["port"]):
                raise ImmutableInfraError("cannot route %s: port %s of %s has another listener"
                                          % (key, ep["port"], self.options["load_balancer"]))
        try:
            for g, srvs in sorted(members.items()):
                known = g in st["tgs"]
                tg = self._ensure_tg(key, g, srvs[0][1]["port"], ep["health"])
                if not known:
                    self._register(tg, [n.target_id(name, g) for name, _srv in srvs])
                elif n.health_differs(tg, ep["health"]):
                    self.aws.call("elbv2", "modify_target_group", TargetGroupArn=tg["TargetGroupArn"],
                                  **n.tg_health(ep["health"]))
            weights = {t["TargetGroupArn"]: int(ep["groups"].get(g, 0)) for g, t in st["tgs"].items()
                       if g in ep["groups"] or g in members}
            if st["listener"] is None:
                self._open_listener(key, ep, weights)
            elif weights != st["weights"]:
                self._forward(key, weights)
        except ImmutableInfraError:
            if new:                 # a first release leaves nothing behind
                self._delete_endpoint(key)
            raise
        self._tag_listener(key, ep)
        for g in sorted(set(st["tgs"]) - set(ep["groups"]) - set(members)):
            self._drop_tg(key, g)

    def _open_listener(self, key, ep, weights):
        st = self._state[key]
        if self._given is not None:
            self.aws.call("elbv2", "modify_listener", what="forward listener %s to %s" % (
                self._given["ListenerArn"], key), ListenerArn=self._given["ListenerArn"],
                DefaultActions=n.forward_action(weights))
            st["listener"] = self._given
            self._given = None
        else:
            made = self.aws.call("elbv2", "create_listener", what="create the listener of %s on port %s" % (key, ep["port"]),
                                 LoadBalancerArn=self.lb()["LoadBalancerArn"], Protocol="HTTP", Port=int(ep["port"]),
                                 DefaultActions=n.forward_action(weights),
                                 Tags=[{"Key": n.TAG_ENDPOINT, "Value": key}, {"Key": n.TAG_CREATED, "Value": "immutable.infra"}])
            st["listener"] = made["Listeners"][0]
            st["tags"] = {n.TAG_ENDPOINT: key, n.TAG_CREATED: "immutable.infra"}
        st["weights"] = dict(weights)

    def _tag_listener(self, key, ep):
        st = self._state[key]
        want = n.listener_tags(key, ep, created=st["tags"].get(n.TAG_CREATED) is not None)
        arn = st["listener"]["ListenerArn"]
        stale = sorted(k for k in st["tags"] if k.startswith(n.TAG_HISTORY) or k.startswith(n.TAG_IMAGE)
                       or k in (n.TAG_PLATFORM, n.TAG_HEALTH) if k not in want)
        if stale:
            self.aws.call("elbv2", "remove_tags", ResourceArns=[arn], TagKeys=stale)
        changed = {k: v for k, v in want.items() if st["tags"].get(k) != v}
        if changed:
            self.aws.call("elbv2", "add_tags", what="tag the listener of %s" % key, ResourceArns=[arn],
                          Tags=[{"Key": k, "Value": v} for k, v in sorted(changed.items())])
        st["tags"] = want

    def _delete_endpoint(self, key):
        """The listener first (nothing forwards to the groups any more), then each group's target group."""
        st = self._state[key]
        listener = st["listener"]
        if listener is not None:
            if st["tags"].get(n.TAG_CREATED):
                self.aws.call("elbv2", "delete_listener", what="delete the listener of %s" % key,
                              ListenerArn=listener["ListenerArn"])
            else:                   # a listener given by listener_arn is the team's: it stays, answering 503
                self._close_listener(key)
                ours = sorted(k for k in st["tags"] if k.startswith(n.TAG_HISTORY) or k.startswith(n.TAG_IMAGE)
                              or k in (n.TAG_PLATFORM, n.TAG_HEALTH, n.TAG_ENDPOINT))
                if ours:
                    self.aws.call("elbv2", "remove_tags", ResourceArns=[listener["ListenerArn"]], TagKeys=ours)
            st["weights"] = {}
        for g in sorted(st["tgs"]):
            self._drop_tg(key, g)
        del self._state[key]
