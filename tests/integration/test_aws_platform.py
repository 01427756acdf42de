"""The aws platform against a moto server on loopback: server_group makes one Auto
Scaling group per server group from a launch template pinned to the version's AMI,
spread over the zones' subnets, tagged with the identity; re-runs change nothing;
check mode changes nothing; scaling moves the desired capacity; removal deletes the
ASG and then the launch template; bad inputs fail before anything is made. Everything
is read back with boto3. The fleet inventory and an amazon.aws.aws_ec2 inventory
config list the instances in the same groups.

What moto cannot show (instances are InService at once, all in the first subnet) is
not asserted here: see docs/aws.md, "Needs real AWS"."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from conftest import TOP, boto3_client, fleet_groups, platform_groups, push_test_image

ZONES = ("us-east-1a", "us-east-1b")


@pytest.fixture(scope="module")
def network(moto):
    """A VPC with one subnet per zone, and one in a third zone (for the wrong-zone case)."""
    ec2 = boto3_client(moto, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.%d.0.0/16" % (uuid.uuid4().int % 200))["Vpc"]["VpcId"]
    base = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlock"].rsplit(".", 2)[0]
    subnets = {}
    for n, zone in enumerate(ZONES + ("us-east-1c",)):
        subnets[zone] = ec2.create_subnet(VpcId=vpc, CidrBlock="%s.%d.0/24" % (base, n + 1),
                                          AvailabilityZone=zone)["Subnet"]["SubnetId"]
    return {"vpc": vpc, "subnets": subnets}


@pytest.fixture(scope="module")
def ami(moto):
    ec2 = boto3_client(moto, "ec2")
    return ec2.register_image(Name="it-web-%s" % uuid.uuid4().hex[:6], RootDeviceName="/dev/xvda",
                              BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
                              Architecture="x86_64", VirtualizationType="hvm")["ImageId"]


def ami_image(registry, name, tag, amis):
    labels = {"infra.immutable.format": "ami", "infra.immutable.port": "8080"}
    labels.update({"infra.immutable.ami.%s" % region: ami_id for region, ami_id in amis.items()})
    push_test_image(registry, name, tag, labels=labels)
    return "%s/%s:%s" % (registry["address"], name, tag)


def options(moto, network, **kw):
    out = dict(moto["options"], subnets={z: network["subnets"][z] for z in ZONES})
    out.update(kw)
    return out


def server_group(ansible, registry, app, platform_options, check=False, **kw):
    args = {"app": app, "stack": "prod", "registry": registry["address"], "platform": "aws",
            "platform_options": platform_options, "zones": list(ZONES), "count": 2, "wait_timeout": 60}
    args.update(kw)
    return ansible.task("immutable.infra.server_group", args, check=check)


def asgs(moto, app):
    found = boto3_client(moto, "autoscaling").describe_auto_scaling_groups(
        Filters=[{"Name": "tag:infra.immutable.app", "Values": [app]}])["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: g for g in found}


def templates(moto, app):
    ec2 = boto3_client(moto, "ec2")
    return sorted(t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
                  if t["LaunchTemplateName"].startswith(app + "-"))


def assert_nothing_made(moto, app):
    assert asgs(moto, app) == {} and templates(moto, app) == []


def test_a_server_group_is_an_asg_from_a_pinned_launch_template(ansible, registry, moto, network, ami, apps):
    app = apps("aws")
    opts = options(moto, network)
    image = ami_image(registry, app, "1", {moto["region"]: ami})
    group = "%s-prod-v001" % app

    rc, res = server_group(ansible, registry, app, opts, check=True, image=image)
    assert rc == 0 and res["changed"] and res["would_create"] == 2, res
    assert_nothing_made(moto, app)

    rc, res = server_group(ansible, registry, app, opts, image=image)
    assert rc == 0 and res["changed"] and res["group"]["name"] == group, res
    assert set(res["health"].values()) == {"InService"} and len(res["created"]) == 2
    asg = asgs(moto, app)[group]
    assert asg["DesiredCapacity"] == 2 and asg["MinSize"] == 0
    assert sorted(asg["VPCZoneIdentifier"].split(",")) == sorted(opts["subnets"].values())
    assert asg["LaunchTemplate"]["LaunchTemplateName"] == group
    tags = {t["Key"]: t for t in asg["Tags"]}
    for key, value in (("app", app), ("stack", "prod"), ("group", group), ("sequence", "1"), ("port", "8080"),
                       ("image-version", "1")):
        assert tags["infra.immutable." + key]["Value"] == value and tags["infra.immutable." + key]["PropagateAtLaunch"]
    ec2 = boto3_client(moto, "ec2")
    version = ec2.describe_launch_template_versions(LaunchTemplateName=group)["LaunchTemplateVersions"]
    assert [v["LaunchTemplateData"]["ImageId"] for v in version] == [ami]
    assert "KeyName" not in version[0]["LaunchTemplateData"]           # production instances get no key
    members = [i["InstanceId"] for i in asg["Instances"]]
    assert sorted(res["created"]) == sorted("%s-%s" % (group, i[2:]) for i in members)
    assert all(i["LifecycleState"] == "InService" for i in asg["Instances"])

    rc, again = server_group(ansible, registry, app, opts, image=image)
    assert rc == 0 and not again["changed"] and again["created"] == [], again
    assert platform_groups(ansible, app, "aws", opts) == {group: sorted(res["created"])}

    rc, res = server_group(ansible, registry, app, opts, image=image, count=3)
    assert rc == 0 and res["changed"] and len(res["created"]) == 1, res
    assert asgs(moto, app)[group]["DesiredCapacity"] == 3

    rc, res = server_group(ansible, registry, app, opts, image=image, count=1)
    assert rc == 0 and res["changed"] and len(res["removed"]) == 2, res
    asg = asgs(moto, app)[group]
    assert asg["DesiredCapacity"] == 1 and len(asg["Instances"]) == 1

    # A target group attached (as the elbv2 router does) is detached before the ASG goes.
    elb = boto3_client(moto, "elbv2")
    tg = elb.create_target_group(Name=("tg" + app)[:32], Protocol="HTTP", Port=8080, VpcId=network["vpc"],
                                 TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    boto3_client(moto, "autoscaling").attach_load_balancer_target_groups(AutoScalingGroupName=group,
                                                                         TargetGroupARNs=[tg])
    rc, res = server_group(ansible, registry, app, opts, check=True, group=group, state="absent")
    assert rc == 0 and res["changed"] and group in asgs(moto, app)
    rc, res = server_group(ansible, registry, app, opts, group=group, state="absent")
    assert rc == 0 and res["changed"] and len(res["removed"]) == 1, res
    assert_nothing_made(moto, app)
    assert elb.describe_target_groups(TargetGroupArns=[tg])["TargetGroups"]      # the router's to delete
    rc, res = server_group(ansible, registry, app, opts, group=group, state="absent")
    assert rc == 0 and not res["changed"]
    elb.delete_target_group(TargetGroupArn=tg)


def test_inventories_list_aws_instances_in_the_same_groups(ansible, registry, moto, network, ami, apps, workdir):
    app = apps("awsinv")
    opts = options(moto, network, ssh_user="admin")
    rc, res = server_group(ansible, registry, app, opts, image=ami_image(registry, app, "1", {moto["region"]: ami}))
    assert rc == 0, res
    group = "%s-prod-v001" % app
    try:
        hosts = sorted(res["created"])
        groups = fleet_groups(ansible, workdir, app, "aws", opts)
        for name in ("app_%s" % app, "stack_%s_prod" % app, "group_%s" % group.replace("-", "_"),
                     "version_%s_1" % app, "state_running"):
            assert groups.get(name) == hosts, (name, groups)
        zones = {g: h for g, h in groups.items() if g.startswith("zone_")}
        assert sorted(h for hs in zones.values() for h in hs) == hosts
        assert set(zones) <= {"zone_us_east_1a", "zone_us_east_1b"}
        hostvars = inventory(ansible, workdir, {"plugin": "immutable.infra.fleet", "platform": "aws",
                                                "platform_options": opts, "filters": {"app": app}},
                             "fleet.yml")["_meta"]["hostvars"]
        ips = private_ips(moto, app)
        assert {h: (plain(v["ansible_host"]), plain(v["ansible_user"])) for h, v in hostvars.items()} == {
            h: (ips[h], "admin") for h in hosts}

        # The shipped amazon.aws.aws_ec2 config makes the same group names.
        with open(os.path.join(TOP, "playbooks", "inventory", "aws_ec2.aws_ec2.yml")) as f:
            import yaml
            config = yaml.safe_load(f)
        config.update(endpoint_url=moto["endpoint_url"], regions=[moto["region"]],
                      filters=dict(config.get("filters") or {}, **{"tag:infra.immutable.app": app}))
        doc = inventory(ansible, workdir, config, "aws_ec2.yml", extra_env=moto["env"])
        ec2_hosts = sorted(doc["_meta"]["hostvars"])
        assert len(ec2_hosts) == len(hosts)
        for name in ("app_%s" % app, "stack_%s_prod" % app, "group_%s" % group.replace("-", "_"),
                     "version_%s_1" % app, "state_running"):
            assert sorted(doc.get(name, {}).get("hosts", [])) == ec2_hosts, (name, sorted(doc))
        assert sorted(plain(v["ansible_host"]) for v in doc["_meta"]["hostvars"].values()) == sorted(ips.values())
    finally:
        server_group(ansible, registry, app, opts, group=group, state="absent")
    assert_nothing_made(moto, app)


def plain(value):
    """A value as ansible-inventory --list prints it (unsafe text is {"__ansible_unsafe": text})."""
    return value.get("__ansible_unsafe") if isinstance(value, dict) else value


def private_ips(moto, app):
    res = boto3_client(moto, "ec2").describe_instances(Filters=[
        {"Name": "tag:infra.immutable.app", "Values": [app]}, {"Name": "instance-state-name", "Values": ["running"]}])
    return {"%s-%s" % (i["Tags"] and {t["Key"]: t["Value"] for t in i["Tags"]}["infra.immutable.group"],
                       i["InstanceId"][2:]): i["PrivateIpAddress"]
            for r in res["Reservations"] for i in r["Instances"]}


def inventory(ansible, workdir, config, suffix, extra_env=None):
    path = os.path.join(tempfile.mkdtemp(prefix="inv-", dir=workdir), suffix)
    with open(path, "w") as f:
        json.dump(config, f)
    proc = subprocess.run(["ansible-inventory", "-i", path, "--list"], cwd=TOP, capture_output=True, text=True,
                          env=dict(ansible.env, ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1", **(extra_env or {})),
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    return json.loads(proc.stdout)


def test_bad_inputs_fail_before_anything_is_made(ansible, registry, moto, network, ami, apps):
    app = apps("awsbad")
    good = options(moto, network)
    b_subnet = network["subnets"]["us-east-1b"]
    cases = [       # (the version's AMIs, platform_options, zones, the error)
        ({"eu-west-1": ami}, good, None, "has no AMI in region us-east-1 (it has: eu-west-1=%s)" % ami),
        ({moto["region"]: "ami-0123456789abcdef0"}, good, None, "AMI ami-0123456789abcdef0 of image"),
        ({moto["region"]: ami}, good, ["us-east-1a", "us-east-1c"],
         "zone(s) us-east-1c have no subnet in platform_options.subnets (known zones: us-east-1a, us-east-1b)"),
        ({moto["region"]: ami}, options(moto, network, subnets={"us-east-1a": b_subnet, "us-east-1b": b_subnet}),
         None, "subnet %s is in zone us-east-1b, not us-east-1a" % b_subnet),
        ({moto["region"]: ami}, options(moto, network, subnets={"us-east-1a": "subnet-0000000000000000a",
                                                                "us-east-1b": b_subnet}),
         None, "subnet subnet-0000000000000000a (zone us-east-1a) does not exist in region us-east-1"),
        ({moto["region"]: ami}, dict(good, flavour="large"), None, "platform aws has no option(s) flavour"),
    ]
    for n, (amis, opts, zones, message) in enumerate(cases):
        image = ami_image(registry, app, str(n + 1), amis)
        rc, res = server_group(ansible, registry, app, opts, image=image, zones=zones or list(ZONES))
        assert rc != 0 and message in res["msg"], (message, res)
        assert_nothing_made(moto, app)


def test_missing_credentials_fail_before_anything_is_made(ansible, registry, moto, network, ami, apps):
    app = apps("awscred")
    image = ami_image(registry, app, "1", {moto["region"]: ami})
    opts = {k: v for k, v in options(moto, network).items() if k not in ("access_key", "secret_key")}
    env = {k: v for k, v in ansible.env.items() if not k.startswith("AWS_") or k == "AWS_EC2_METADATA_DISABLED"}
    bare = type(ansible)(env, ansible.workdir)
    rc, res = server_group(bare, registry, app, opts, image=image)
    assert rc != 0 and "AWS credentials missing" in res["msg"], res
    assert_nothing_made(moto, app)
