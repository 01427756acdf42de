"""The aws platform's pure parts (records from ASG entries, tags, names), the option seam
(AWS's validate_certs is not the registry's), and a create that fails half-way removing what
it made (moto in process as the backing store; the platform is under test)."""
from __future__ import annotations

import datetime

import pytest

from ansible_collections.immutable.infra.plugins.module_utils._names import instance_group
from ansible_collections.immutable.infra.plugins.module_utils._platforms import _aws as aws
from ansible_collections.immutable.infra.plugins.module_utils._platforms._options import platform_from
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

SPEC = {"app": "shop", "stack": "prod", "group": "shop-prod-v003", "sequence": 3, "image": "reg/shop@sha256:01",
        "image_digest": "sha256:01", "image_version": "7", "zone": "us-east-1a", "zones": ["us-east-1a"],
        "port": 8080, "labels": {"infra.immutable.channel": "production"}, "amis": {"us-east-1": "ami-1"}}


def test_names_round_trip_through_the_group():
    name = aws.instance_name("shop-prod-v003", "i-0abc123")
    assert name == "shop-prod-v003-0abc123" and instance_group(name) == "shop-prod-v003"
    assert aws.ec2_id_of(name) == "i-0abc123" and aws.asg_name("shop-prod-v003") == "shop-prod-v003"


def test_group_tags_carry_the_identity_but_not_what_is_each_instances_own():
    tags = aws.group_tags(SPEC)
    assert tags["infra.immutable.group"] == "shop-prod-v003" and tags["infra.immutable.sequence"] == "3"
    assert tags["infra.immutable.channel"] == "production" and tags["Name"] == "shop-prod-v003"
    assert "infra.immutable.zone" not in tags and "infra.immutable.instance-id" not in tags
    assert all(isinstance(v, str) for v in tags.values())


def test_records_come_from_the_asg_and_ec2():
    asg = {"AutoScalingGroupName": "shop-prod-v003",
           "Tags": [{"Key": k, "Value": v} for k, v in aws.group_tags(SPEC).items()],
           "Instances": [{"InstanceId": "i-01", "AvailabilityZone": "us-east-1a", "LifecycleState": "InService",
                          "HealthStatus": "Healthy"},
                         {"InstanceId": "i-02", "AvailabilityZone": "us-east-1b", "LifecycleState": "Pending",
                          "HealthStatus": "Healthy"},
                         {"InstanceId": "i-03", "AvailabilityZone": "us-east-1b", "LifecycleState": "InService",
                          "HealthStatus": "Unhealthy"}]}
    ec2 = {"i-01": {"PrivateIpAddress": "10.0.1.5", "LaunchTime": datetime.datetime(2026, 1, 2)}}
    one, two, three = aws.parse_group(asg, ec2)
    assert (one["name"], one["id"], one["instance_id"], one["zone"]) == ("shop-prod-v003-01", "i-01", "i-01", "us-east-1a")
    assert (one["state"], one["host"], one["host_port"], one["ports"]) == ("running", "10.0.1.5", 8080, {8080: 8080})
    assert one["endpoint"] == "http://10.0.1.5:8080" and one["created"] == "2026-01-02T00:00:00"
    assert (one["app"], one["sequence"], one["image_version"], one["port"]) == ("shop", 3, "7", 8080)
    assert (two["state"], two["host"], two["endpoint"]) == ("pending", None, None)
    assert three["state"] == "inservice"           # InService but Unhealthy is not running


def test_aws_validate_certs_is_never_the_registrys():
    pytest.importorskip("boto3")
    p = platform_from({"platform": "aws", "platform_options": {"region": "us-east-1"}}, validate_certs=False)
    assert p.aws.options.get("validate_certs") is None and p.region == "us-east-1"
    with pytest.raises(ImmutableInfraError, match="platform aws has no option.s. flavour"):
        platform_from({"platform": "aws", "platform_options": {"region": "us-east-1", "flavour": "x"}})
    with pytest.raises(ImmutableInfraError, match="subnets must map zone"):
        platform_from({"platform": "aws", "platform_options": {"region": "us-east-1", "subnets": ["subnet-1"]}})


@pytest.fixture
def in_moto(monkeypatch):
    """(boto3, ec2 client, an AMI id, an aws platform over one subnet of us-east-1a) inside moto's in-process mock."""
    pytest.importorskip("moto")
    import boto3
    from moto import mock_aws
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
        ami = ec2.register_image(Name="shop", RootDeviceName="/dev/xvda")["ImageId"]
        p = platform_from({"platform": "aws", "platform_options": {
            "region": "us-east-1", "subnets": {"us-east-1a": subnet["SubnetId"]}}})
        yield boto3, ec2, ami, p


def test_a_create_that_fails_half_way_removes_what_it_made(monkeypatch, in_moto):
    boto3, ec2, ami, p = in_moto
    real = p.aws.call

    def failing(service, operation, what=None, **kw):
        if operation == "create_auto_scaling_group":
            raise ImmutableInfraError("%s failed in us-east-1: LimitExceeded: too many groups" % what)
        return real(service, operation, what=what, **kw)

    monkeypatch.setattr(p.aws, "call", failing)
    with pytest.raises(ImmutableInfraError) as exc:
        p.create_instances([dict(SPEC, amis={"us-east-1": ami})])
    assert exc.value.msg.startswith("cannot create server group shop-prod-v003: creating Auto Scaling group")
    assert "LimitExceeded" in exc.value.msg and "removed what was made: launch template" in exc.value.msg
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert boto3.client("autoscaling", region_name="us-east-1").describe_auto_scaling_groups()[
        "AutoScalingGroups"] == []


def test_an_empty_group_and_a_left_launch_template_are_removed(in_moto):
    from ansible_collections.immutable.infra.plugins.module_utils._server_group import converge
    boto3, ec2, ami, p = in_moto
    p.poll = 0.05
    made = p.create_instances([dict(SPEC, amis={"us-east-1": ami})])
    auto = boto3.client("autoscaling", region_name="us-east-1")
    auto.terminate_instance_in_auto_scaling_group(InstanceId=made[0]["id"], ShouldDecrementDesiredCapacity=True)
    params = {"app": "shop", "stack": "prod", "group": "shop-prod-v003", "image": None, "count": 1,
              "zones": ["us-east-1a"], "state": "absent"}
    assert p.list_instances() == []
    assert converge(p, None, params, check_mode=True)["changed"]
    assert auto.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert converge(p, None, params)["changed"]
    assert auto.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert not converge(p, None, params)["changed"]
    ec2.create_launch_template(LaunchTemplateName="shop-prod-v003", LaunchTemplateData={"ImageId": ami})
    assert converge(p, None, params)["changed"] and ec2.describe_launch_templates()["LaunchTemplates"] == []
