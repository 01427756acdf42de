"""The elbv2 backend under the traffic policy against moto in-process (mock_aws): what must
leave nothing behind when it fails. The full graph through the modules is in
tests/integration/test_aws_router.py."""
from __future__ import annotations

import pytest

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._traffic import router_from
from ansible_collections.immutable.infra.plugins.module_utils._traffic._routing import apply

moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")
REGION = "us-east-1"


class AsgPlatform:
    """Instances of the Auto Scaling groups of an app/stack, named as the aws platform names them;
    `extra` adds instances of a group that has no ASG."""
    name = "aws"

    def __init__(self):
        self.asg = boto3.client("autoscaling", region_name=REGION)
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.extra = []

    def list_instances(self, app=None, stack=None, group=None):
        out = list(self.extra)
        for g in self.asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
            for i in g["Instances"]:
                ip = self.ec2.describe_instances(InstanceIds=[i["InstanceId"]])["Reservations"][0]["Instances"][0][
                    "PrivateIpAddress"]
                out.append({"name": "%s-%s" % (g["AutoScalingGroupName"], i["InstanceId"][2:]),
                            "group": g["AutoScalingGroupName"], "state": "running", "port": 8080, "host": ip,
                            "image": "reg/web@sha256:" + "0" * 64})
        return out

    def address(self, inst, port):
        return inst["host"], port


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.%d.0/24" % n, AvailabilityZone=REGION + z)["Subnet"][
            "SubnetId"] for n, z in ((1, "a"), (2, "b"))]
        boto3.client("elbv2", region_name=REGION).create_load_balancer(Name="alb", Subnets=subnets)
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

        def group(name):
            ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": ami})
            boto3.client("autoscaling", region_name=REGION).create_auto_scaling_group(
                AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": name}, MinSize=1, MaxSize=1,
                DesiredCapacity=1, VPCZoneIdentifier=",".join(subnets))
            return name
        yield group


def params(groups, **kw):
    return dict({"app": "web", "stack": "prod", "router_backend": "elbv2", "groups": groups, "port": 80,
                 "router_options": {"load_balancer": "alb", "poll_interval": 0}, "state": "present"}, **kw)


def target_groups():
    return sorted(t["TargetGroupName"] for t in boto3.client("elbv2", region_name=REGION).describe_target_groups()[
        "TargetGroups"])


def weights():
    elb = boto3.client("elbv2", region_name=REGION)
    names = {t["TargetGroupArn"]: t["TargetGroupName"] for t in elb.describe_target_groups()["TargetGroups"]}
    lb = elb.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    return {names[t["TargetGroupArn"]]: t["Weight"] for x in elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]
            for t in x["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]}


def test_a_group_without_an_asg_is_refused_and_leaves_nothing(aws):
    platform = AsgPlatform()
    platform.extra = [{"name": "web-prod-v001-0abc", "group": "web-prod-v001", "state": "running", "port": 8080,
                       "host": "10.0.1.9", "image": "reg/web@sha256:" + "1" * 64}]
    with pytest.raises(ImmutableInfraError, match="server group web-prod-v001 has no Auto Scaling group"):
        apply(router_from(params({"web-prod-v001": 100})), platform, params({"web-prod-v001": 100}))
    assert target_groups() == [] and weights() == {}


def test_a_sixth_group_is_refused_before_its_target_group_is_made(aws):
    platform = AsgPlatform()
    for seq in range(1, 7):
        g = aws("web-prod-v%03d" % seq)
        p = params({g: 100}, retire=[])
        if seq < 6:
            apply(router_from(p), platform, p)
    assert sorted(weights().values()) == [0, 0, 0, 0, 100] and weights()["web-prod-v005"] == 100
    with pytest.raises(ImmutableInfraError, match="would forward to 6 target groups; ELBv2 forwards to at most 5"):
        apply(router_from(p), platform, p)
    assert "web-prod-v006" not in target_groups() and weights()["web-prod-v005"] == 100


def test_a_port_with_another_listener_is_refused_for_a_new_endpoint(aws):
    platform = AsgPlatform()
    g = aws("web-prod-v001")
    apply(router_from(params({g: 100})), platform, params({g: 100}))
    other = dict(params({g: 100}), stack="acme")
    with pytest.raises(ImmutableInfraError, match="port 80 is already taken"):
        apply(router_from(other), platform, other)
