"""Opt-in smoke test of the aws platform on REAL AWS (see conftest.py: IMMUTABLE_INFRA_REAL_AWS=1 and
credentials), run when IMMUTABLE_INFRA_AWS_SMOKE is also set to a JSON object {"region", "subnets": {az: subnet-id}, "ami",
"instance_type" (optional), "security_groups" (optional)} and credentials come from the usual
AWS environment (AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). It makes one server
group of one instance, waits for it to be InService and Healthy, checks what moto cannot (the
instance gets a private address in one of the subnets), removes it and checks that no ASG and
no launch template is left. It costs a few minutes of one instance."""
from __future__ import annotations

import json
import os

import pytest

from conftest import integration

SMOKE = os.environ.get("IMMUTABLE_INFRA_AWS_SMOKE")
pytestmark = pytest.mark.skipif(not SMOKE, reason="the server group smoke test needs IMMUTABLE_INFRA_AWS_SMOKE (see the docstring)")


def test_a_server_group_on_real_aws(ansible, registry, apps):
    import boto3
    conf = json.loads(SMOKE)
    region = conf["region"]
    app = apps("smoke")
    labels = {"infra.immutable.format": "ami", "infra.immutable.port": "80", "infra.immutable.ami.%s" % region: conf["ami"]}
    integration.push_test_image(registry, app, "1", labels=labels)
    opts = {"region": region, "subnets": conf["subnets"], "instance_type": conf.get("instance_type") or "t3.micro",
            "security_groups": conf.get("security_groups") or []}
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    real = type(ansible)(dict(ansible.env, **env), ansible.workdir)
    args = {"app": app, "stack": "prod", "registry": registry["address"], "platform": "aws", "platform_options": opts,
            "zones": sorted(conf["subnets"]), "count": 1, "wait_timeout": 900}
    group = "%s-prod-v001" % app
    session = boto3.session.Session(region_name=region)
    try:
        rc, res = real.task("immutable.infra.server_group", dict(args, image="%s/%s:1" % (registry["address"], app)))
        assert rc == 0 and res["changed"] and set(res["health"].values()) == {"InService"}, res
        asg = session.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        ids = [i["InstanceId"] for i in asg["AutoScalingGroups"][0]["Instances"]]
        found = session.client("ec2").describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"][0]
        assert found["SubnetId"] in conf["subnets"].values() and found["PrivateIpAddress"]
    finally:
        rc, res = real.task("immutable.infra.server_group", dict(args, group=group, state="absent"))
    assert rc == 0, res
    assert session.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"] == []
    assert not [t for t in session.client("ec2").describe_launch_templates()["LaunchTemplates"]
                if t["LaunchTemplateName"] == group]
