"""The seam between the aws platform and the elbv2 router, through the real modules on moto:
server_group (platform aws) makes the ASGs from AMI versions, traffic (router_backend elbv2)
attaches their target groups and moves the weights, and removing a group whose target group
is still attached (drained, kept warm) detaches it first, then deletes the ASG and its launch
template, leaving the router's target group to the router. Read back through boto3."""
from __future__ import annotations

import uuid

import pytest

from conftest import Ansible, boto3_client, push_test_image


@pytest.fixture(scope="module")
def net(ansible, moto):
    name = "rel%s" % uuid.uuid4().hex[:6]
    extra = {"aws_network_name": name, "aws_region": moto["region"], "aws_endpoint_url": moto["endpoint_url"],
             "aws_network_cidr": "10.30.0.0/16",
             "aws_network_zones": {moto["region"] + "a": "10.30.1.0/24", moto["region"] + "b": "10.30.2.0/24"}}
    run = Ansible(dict(ansible.env, **moto["env"]), ansible.workdir).playbook("playbooks/aws_network.yml", extra)
    assert run.rc == 0 and not run.failed, run.stderr[-3000:]
    facts = run.result("Set the options the release playbooks take")["ansible_facts"]
    return {"platform_options": dict(moto["options"], **facts["aws_network_platform_options"]),
            "router_options": dict(moto["options"], poll_interval=0.2, **facts["aws_network_router_options"])}


def test_server_groups_on_aws_behind_elbv2(ansible, registry, moto, net, apps):
    app = apps("awsrel")
    ec2, auto, elb = (boto3_client(moto, s) for s in ("ec2", "autoscaling", "elbv2"))
    ami = ec2.register_image(Name=app, RootDeviceName="/dev/xvda")["ImageId"]
    for tag in ("1", "2"):
        push_test_image(registry, app, tag, labels={"infra.immutable.format": "ami", "infra.immutable.port": "8080",
                                                    "infra.immutable.ami.%s" % moto["region"]: ami})
    port = 19000 + int(uuid.uuid4().hex[:3], 16) % 900
    platform = {"platform": "aws", "platform_options": net["platform_options"]}
    router = {"router_backend": "elbv2", "router_options": net["router_options"]}
    zones = sorted(net["platform_options"]["subnets"])

    def group(**kw):
        args = dict({"app": app, "stack": "prod", "registry": registry["address"], "zones": zones, "count": 2},
                    **platform)
        args.update(kw)
        rc, res = ansible.task("immutable.infra.server_group", args)
        assert rc == 0, res
        return res

    def traffic(**kw):
        args = dict({"app": app, "stack": "prod", "port": port}, **dict(platform, **router))
        rc, res = ansible.task("immutable.infra.traffic", dict(args, **kw))
        assert rc == 0, res
        return res

    def attached(name):
        return [t["LoadBalancerTargetGroupARN"] for t in auto.describe_load_balancer_target_groups(
            AutoScalingGroupName=name)["LoadBalancerTargetGroups"]]

    v1 = group(image="%s/%s:1" % (registry["address"], app))["group"]["name"]
    traffic(groups={v1: 100})
    v2 = group(image="%s/%s:2" % (registry["address"], app))["group"]["name"]
    res = traffic(groups={v2: 100})
    assert res["previous"] == {v1: 100} and res["endpoint"]["enabled"] == [v2]
    tg_v1 = attached(v1)
    assert len(tg_v1) == 1 and len(attached(v2)) == 1
    members = auto.describe_auto_scaling_groups(AutoScalingGroupNames=[v1])["AutoScalingGroups"][0]["Instances"]
    assert len(members) == 2                           # drained, kept warm for rollback

    try:
        res = group(group=v1, state="absent")           # its target group is still attached: detached first
        assert res["changed"] and len(res["removed"]) == 2
        assert auto.describe_auto_scaling_groups(AutoScalingGroupNames=[v1])["AutoScalingGroups"] == []
        assert [t for t in ec2.describe_launch_templates()["LaunchTemplates"] if t["LaunchTemplateName"] == v1] == []
        assert elb.describe_target_groups(TargetGroupArns=tg_v1)["TargetGroups"]      # the router's to delete
    finally:
        ansible.task("immutable.infra.traffic", dict({"app": app, "stack": "prod", "state": "absent"},
                                                     **dict(platform, **router)))
        group(group=v2, state="absent")
        group(group=v1, state="absent")
    assert auto.describe_auto_scaling_groups(Filters=[{"Name": "tag:infra.immutable.app", "Values": [app]}])[
        "AutoScalingGroups"] == []
    assert [t for t in ec2.describe_launch_templates()["LaunchTemplates"] if t["LaunchTemplateName"].startswith(app)] == []
