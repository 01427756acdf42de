"""The elbv2 router backend against a moto server on loopback, through the real modules.

The network comes from playbooks/aws_network.yml (real amazon.aws modules). Server groups are
Auto Scaling groups made here with boto3, named and tagged as the aws platform makes them
(so `platform: aws` lists them); the traffic modules then attach, shift, drain and roll back,
and every claim is read back through boto3: the listener's weighted forward action, the target
groups and their tags, the ASGs' attached target groups, target health.

What moto cannot show (targets are healthy at once, no health-check timing, no real traffic,
no CloudWatch) is not claimed here; docs/aws-elbv2.md lists it as needing real AWS."""
from __future__ import annotations

import uuid

import pytest

from conftest import Ansible, boto3_client, push_test_image

PORT = 8080


def _name(prefix="el"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:6])


@pytest.fixture(scope="module")
def net(ansible, moto):
    """A VPC, two subnets and an ALB made by playbooks/aws_network.yml; the options it outputs."""
    name = _name("net")
    extra = {"aws_network_name": name, "aws_region": moto["region"], "aws_endpoint_url": moto["endpoint_url"],
             "aws_network_zones": {moto["region"] + "a": "10.20.1.0/24", moto["region"] + "b": "10.20.2.0/24"}}
    aws = Ansible(dict(ansible.env, **moto["env"]), ansible.workdir)
    plan = aws.playbook("playbooks/aws_network.yml", extra, check=True, diff=True)     # nothing exists yet
    assert plan.rc == 0 and "would create VPC %s" % name in plan.result("Report what would be created")["msg"]
    vpcs = boto3_client(moto, "ec2").describe_vpcs(Filters=[{"Name": "tag:infra.immutable.network", "Values": [name]}])
    assert vpcs["Vpcs"] == []
    run = aws.playbook("playbooks/aws_network.yml", extra)
    assert run.rc == 0 and not run.failed, run.stderr[-3000:]
    facts = run.result("Set the options the release playbooks take")["ansible_facts"]
    again = aws.playbook("playbooks/aws_network.yml", extra)
    checked = aws.playbook("playbooks/aws_network.yml", extra, check=True, diff=True)
    assert checked.rc == 0 and checked.changed == 0, checked.stderr[-3000:]
    return {"name": name, "platform_options": facts["aws_network_platform_options"],
            "router_options": facts["aws_network_router_options"], "rerun_changed": again.changed}


class Fleet:
    """Auto Scaling groups made the way the aws platform makes them, removed at the end."""

    def __init__(self, moto, net):
        self.moto, self.net = moto, net
        self.asg = boto3_client(moto, "autoscaling")
        self.ec2 = boto3_client(moto, "ec2")
        self.made = []

    def group(self, app, seq, count=2, stack="prod", image=None):
        group = "%s-%s-v%03d" % (app, stack, seq)
        image = image or "127.0.0.1:5000/%s@sha256:%s" % (app, ("%x" % seq) * 64)
        ami = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.ec2.create_launch_template(LaunchTemplateName=group, LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.micro"})
        self.made.append(group)
        tags = {"app": app, "stack": stack, "group": group, "sequence": str(seq), "image": image,
                "image-digest": image.split("@")[1], "image-version": str(seq), "port": str(PORT)}
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=group, LaunchTemplate={"LaunchTemplateName": group}, MinSize=count, MaxSize=count,
            DesiredCapacity=count, VPCZoneIdentifier=",".join(self.net["platform_options"]["subnets"].values()),
            Tags=[{"Key": "infra.immutable." + k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()])
        return group

    def instances(self, group):
        found = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
        return sorted(i["InstanceId"] for i in found[0]["Instances"] if i["LifecycleState"] == "InService") if found else []

    def close(self):
        for group in self.made:
            try:
                self.asg.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
            except Exception:       # pylint: disable=broad-except
                pass
            try:
                self.ec2.delete_launch_template(LaunchTemplateName=group)
            except Exception:       # pylint: disable=broad-except
                pass


@pytest.fixture
def fleet(moto, net):
    f = Fleet(moto, net)
    yield f
    f.close()


class Elb:
    """Reads the ALB back through boto3."""

    def __init__(self, moto, net):
        self.elb = boto3_client(moto, "elbv2")
        self.asg = boto3_client(moto, "autoscaling")
        self.lb = self.elb.describe_load_balancers(Names=[net["router_options"]["load_balancer"]])["LoadBalancers"][0]

    def listeners(self):
        return self.elb.describe_listeners(LoadBalancerArn=self.lb["LoadBalancerArn"])["Listeners"]

    def listener(self, port):
        found = [x for x in self.listeners() if x["Port"] == port]
        return found[0] if found else None

    def target_groups(self, app):
        return {t["TargetGroupName"]: t for t in self.elb.describe_target_groups()["TargetGroups"]
                if t["TargetGroupName"].startswith(app + "-")}

    def weights(self, port):
        """{target group name: weight} of the listener's weighted forward action."""
        names = {t["TargetGroupArn"]: t["TargetGroupName"] for t in self.elb.describe_target_groups()["TargetGroups"]}
        action = self.listener(port)["DefaultActions"][0]
        return {names[t["TargetGroupArn"]]: t["Weight"] for t in action["ForwardConfig"]["TargetGroups"]}

    def tags(self, arn):
        return {t["Key"]: t["Value"] for t in self.elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]}

    def targets(self, tg):
        return sorted(d["Target"]["Id"] for d in self.elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])[
            "TargetHealthDescriptions"])

    def attached(self, group):
        return [t["LoadBalancerTargetGroupARN"] for t in self.asg.describe_load_balancer_target_groups(
            AutoScalingGroupName=group)["LoadBalancerTargetGroups"]]


@pytest.fixture
def elb(moto, net):
    return Elb(moto, net)


def traffic(ansible, moto, net, app, module="immutable.infra.traffic", check=False, router=None, **args):
    args = dict({"app": app, "stack": "prod", "router_backend": "elbv2",
                 "router_options": dict(moto["options"], poll_interval=0.2, **net["router_options"])}, **args)
    if router is not None:
        args["router_options"] = router
    if module == "immutable.infra.traffic":
        args.update(platform="aws", platform_options=dict(moto["options"]))
    if module == "immutable.infra.router":          # no app/stack: it reads every endpoint of the ALB
        del args["app"], args["stack"]
    return ansible.task(module, args, check=check)


def test_the_network_playbook_outputs_the_options_and_a_rerun_changes_nothing(net, moto, elb):
    assert sorted(net["platform_options"]["subnets"]) == [moto["region"] + "a", moto["region"] + "b"]
    assert net["router_options"] == {"load_balancer": net["name"]} and elb.lb["Type"] == "application"
    assert net["rerun_changed"] == 0


def test_attach_shift_drain_and_rollback_move_the_listener_weights(ansible, moto, net, fleet, elb, registry):
    app = _name()
    port = 18000 + int(uuid.uuid4().hex[:3], 16) % 1000
    images = {seq: "%s/%s@%s" % (registry["address"], app, push_test_image(registry, app, str(seq))) for seq in (1, 2)}
    v1 = fleet.group(app, 1, image=images[1])
    rc, res = traffic(ansible, moto, net, app, groups={v1: 100}, port=port, verify_seconds=1)
    assert rc == 0 and res["changed"], res
    # First release: a listener on the endpoint port forwarding to v1's target group, attached to v1's ASG.
    tgs = elb.target_groups(app)
    assert list(tgs) == [v1] and elb.weights(port) == {v1: 100}
    tags = elb.tags(tgs[v1]["TargetGroupArn"])
    assert (tags["infra.immutable.app"], tags["infra.immutable.stack"], tags["infra.immutable.group"]) == (app, "prod", v1)
    assert tags["infra.immutable.image"] == images[1]
    assert elb.attached(v1) == [tgs[v1]["TargetGroupArn"]] and elb.targets(tgs[v1]) == fleet.instances(v1)
    assert elb.tags(elb.listener(port)["ListenerArn"])["infra.immutable.endpoint"] == "%s/prod" % app
    v = res["verification"]
    assert v["passed"] and v["judged"] == "health only" and v["errors"] is None and v["healthy"] == 2
    assert "CloudWatch" in v["counters_unavailable"]
    assert res["url"] == "http://%s:%d" % (elb.lb["DNSName"], port)

    rc, res = traffic(ansible, moto, net, app, groups={v1: 100})
    assert rc == 0 and not res["changed"], res           # a re-run is a no-op
    rc, res = traffic(ansible, moto, net, app, module="immutable.infra.router", state="started")
    assert rc == 0 and not res["changed"] and "%s/prod" % app in res["endpoints"] and res["pid"] is None
    rc, res = traffic(ansible, moto, net, app, module="immutable.infra.router", state="stopped")
    assert rc != 0 and "the elbv2 router is an AWS load balancer: it is never stopped" in res["msg"]

    v2 = fleet.group(app, 2, image=images[2])
    rc, res = traffic(ansible, moto, net, app, groups={v2: 100}, check=True)
    assert rc == 0 and res["changed"] and res["diff"]["after"]["groups"] == {v1: 0, v2: 100}
    assert list(elb.target_groups(app)) == [v1] and elb.weights(port) == {v1: 100} and elb.attached(v2) == []

    rc, res = traffic(ansible, moto, net, app, groups={v2: 100})
    assert rc == 0 and res["changed"] and res["previous"] == {v1: 100}, res
    tgs = elb.target_groups(app)
    assert elb.weights(port) == {v1: 0, v2: 100}
    assert elb.attached(v2) == [tgs[v2]["TargetGroupArn"]] and elb.targets(tgs[v2]) == fleet.instances(v2)
    # The old group drained to 0, still attached and warm: its ASG keeps its instances.
    assert elb.attached(v1) == [tgs[v1]["TargetGroupArn"]] and len(fleet.instances(v1)) == 2
    assert res["endpoint"]["enabled"] == [v2]

    rc, info = traffic(ansible, moto, net, app, module="immutable.infra.traffic_info")
    ep = info["endpoint"]
    assert rc == 0 and ep["enabled"] == [v2] and ep["groups"][v1]["weight"] == 0 and ep["groups"][v2]["weight"] == 100
    assert ep["groups"][v2]["healthy"] == 2 and {s["status"] for s in ep["groups"][v2]["servers"]} == {"healthy"}
    assert {s["name"] for s in ep["groups"][v2]["servers"]} == {"%s-%s" % (v2, i[2:]) for i in fleet.instances(v2)}
    assert ep["counters"]["available"] is False and "CloudWatch" in ep["counters"]["reason"]
    assert ep["groups"][v2]["requests"] is None and ep["groups"][v2]["errors"] is None
    assert [h["groups"] for h in ep["history"]] == [{v1: 100}, {v2: 100}]     # who carried traffic, switch by switch

    rc, res = traffic(ansible, moto, net, app, rollback=True)
    assert rc == 0 and res["changed"] and res["rollback"]["to"] == v1 and not res["rollback"]["recreate"], res
    assert res["rollback"]["image"] == images[1]      # the rollback checked it is not revoked in the registry
    assert elb.weights(port) == {v1: 100, v2: 0}
    rc, res = traffic(ansible, moto, net, app, groups={v1: 100})
    assert rc == 0 and not res["changed"]

    # Retiring v2: out of the listener first, then off its ASG, then deleted.
    rc, res = traffic(ansible, moto, net, app, groups={v1: 100}, retire=[v2])
    assert rc == 0 and res["changed"] and list(elb.target_groups(app)) == [v1] and elb.weights(port) == {v1: 100}
    assert elb.attached(v2) == []

    rc, res = traffic(ansible, moto, net, app, state="absent")
    assert rc == 0 and res["changed"] and elb.listener(port) is None and elb.target_groups(app) == {}
    assert elb.attached(v1) == []


def test_a_given_listener_is_used_and_left_to_its_team_when_the_endpoint_goes(ansible, moto, net, fleet, elb):
    app = _name()
    port = 17000 + int(uuid.uuid4().hex[:3], 16) % 1000
    arn = elb.elb.create_listener(LoadBalancerArn=elb.lb["LoadBalancerArn"], Protocol="HTTP", Port=port, DefaultActions=[
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"}}])[
        "Listeners"][0]["ListenerArn"]
    group = fleet.group(app, 1, count=1)
    router = dict(moto["options"], listener_arn=arn, **net["router_options"])
    rc, res = traffic(ansible, moto, net, app, router=router, groups={group: 100}, port=port + 1)
    assert rc != 0 and "listens on port %d, not %d" % (port, port + 1) in res["msg"] and elb.target_groups(app) == {}
    rc, res = traffic(ansible, moto, net, app, router=router, groups={group: 100}, port=port)
    assert rc == 0 and res["changed"], res
    assert elb.weights(port) == {group: 100} and [x["ListenerArn"] for x in elb.listeners() if x["Port"] == port] == [arn]
    rc, res = traffic(ansible, moto, net, app, router=router, state="absent")
    assert rc == 0 and res["changed"] and elb.target_groups(app) == {} and elb.attached(group) == []
    kept = elb.listener(port)
    assert kept["ListenerArn"] == arn and kept["DefaultActions"][0]["Type"] == "fixed-response"
    assert "infra.immutable.endpoint" not in elb.tags(arn)
    elb.elb.delete_listener(ListenerArn=arn)


def _nothing_made(elb, app, port):
    assert elb.target_groups(app) == {} and elb.listener(port) is None


@pytest.mark.parametrize("case", ["load_balancer", "listener", "option", "credentials"])
def test_bad_router_inputs_fail_clearly_and_make_nothing(ansible, moto, net, fleet, elb, case):
    app = _name()
    port = 19000 + int(uuid.uuid4().hex[:3], 16) % 1000
    group = fleet.group(app, 1, count=1)
    router = dict(moto["options"], **net["router_options"])
    runner = ansible
    if case == "load_balancer":
        router["load_balancer"] = "nope-" + app
        words = "load balancer 'nope-%s' does not exist in %s" % (app, moto["region"])
    elif case == "listener":
        arn = elb.lb["LoadBalancerArn"].replace(":loadbalancer/", ":listener/") + "/0123456789abcdef"
        router["listener_arn"] = arn
        words = "listener %s does not exist" % arn
    elif case == "option":
        router["listner_arn"] = "x"
        words = "unknown router option(s) listner_arn for the elbv2 router"
    else:
        router = {"load_balancer": net["name"], "endpoint_url": moto["endpoint_url"], "region": moto["region"]}
        runner = Ansible({k: v for k, v in ansible.env.items() if not k.startswith("AWS_") or k == "AWS_EC2_METADATA_DISABLED"},
                         ansible.workdir)
        words = "AWS credentials missing"
    rc, res = traffic(runner, moto, net, app, router=router, groups={group: 100}, port=port)
    assert rc != 0 and res.get("failed") and words in res["msg"], res
    _nothing_made(elb, app, port)
    assert elb.attached(group) == []
