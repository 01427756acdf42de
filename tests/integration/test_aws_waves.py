"""release_waves.yml on the aws platform with the elbv2 router, against a moto server: two regions
(us-east-1, eu-west-1), each its own network and ALB made by playbooks/aws_network.yml. v1 runs in
both; v2 goes in waves and its second region fails (the version has no AMI there, as when an AMI copy
missed a region): the first region is rolled back to v1 (weights back, v2's Auto Scaling group and
target group gone), the second is untouched. Everything is read back through boto3."""
from __future__ import annotations

import os
import uuid

import pytest

from conftest import TOP, Ansible, boto3_client, release_vars
from test_aws_platform import ami_image

WAVES = os.path.join(TOP, "playbooks", "release_waves.yml")
REGIONS = ("us-east-1", "eu-west-1")


def _network(ansible, moto, region, name):
    extra = {"aws_network_name": name, "aws_region": region, "aws_endpoint_url": moto["endpoint_url"],
             "aws_network_cidr": "10.30.0.0/16",
             "aws_network_zones": {region + "a": "10.30.1.0/24", region + "b": "10.30.2.0/24"}}
    run = Ansible(dict(ansible.env, **moto["env"]), ansible.workdir).playbook(
        os.path.join(TOP, "playbooks", "aws_network.yml"), extra)
    assert run.rc == 0 and not run.failed, run.stderr[-3000:]
    facts = run.result("Set the options the release playbooks take")["ansible_facts"]
    return {"region": region, "zones": [region + "a", region + "b"],
            "platform_options": facts["aws_network_platform_options"],
            "router_options": facts["aws_network_router_options"]}


@pytest.fixture(scope="module")
def regions(ansible, moto):
    """A network, an ALB and an AMI in each of the two regions."""
    out = {}
    for region in REGIONS:
        net = _network(ansible, moto, region, "wv%s" % uuid.uuid4().hex[:6])
        ec2 = boto3_client(moto, "ec2", region)
        net["ami"] = ec2.register_image(Name="it-wave-%s" % uuid.uuid4().hex[:6], RootDeviceName="/dev/xvda",
                                        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
                                        Architecture="x86_64", VirtualizationType="hvm")["ImageId"]
        out[region] = net
    return out


def failures(run):
    """The messages of the tasks that failed, for an assertion's message."""
    return [(t["task"]["name"], h.get("msg")) for play in run.doc["plays"] for t in play["tasks"]
            for h in t["hosts"].values() if h.get("failed")] or run.stderr[-3000:]


class Region:
    """One region's Auto Scaling groups and listener weights, read through boto3."""

    def __init__(self, moto, net):
        self.auto = boto3_client(moto, "autoscaling", net["region"])
        self.elb = boto3_client(moto, "elbv2", net["region"])
        self.ec2 = boto3_client(moto, "ec2", net["region"])
        self.lb = self.elb.describe_load_balancers(Names=[net["router_options"]["load_balancer"]])["LoadBalancers"][0]

    def groups(self, app):
        found = self.auto.describe_auto_scaling_groups(
            Filters=[{"Name": "tag:infra.immutable.app", "Values": [app]}])["AutoScalingGroups"]
        return {g["AutoScalingGroupName"]: g for g in found}

    def weights(self, port):
        names = {t["TargetGroupArn"]: t["TargetGroupName"] for t in self.elb.describe_target_groups()["TargetGroups"]}
        listeners = [x for x in self.elb.describe_listeners(LoadBalancerArn=self.lb["LoadBalancerArn"])["Listeners"]
                     if x["Port"] == port]
        if not listeners:
            return None
        action = listeners[0]["DefaultActions"][0]
        return {names[t["TargetGroupArn"]]: t["Weight"] for t in action["ForwardConfig"]["TargetGroups"]}

    def target_groups(self, app):
        return sorted(t["TargetGroupName"] for t in self.elb.describe_target_groups()["TargetGroups"]
                      if t["TargetGroupName"].startswith(app + "-"))

    def remove(self, app):
        for name in self.groups(app):
            self.auto.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        for t in self.ec2.describe_launch_templates()["LaunchTemplates"]:
            if t["LaunchTemplateName"].startswith(app + "-"):
                self.ec2.delete_launch_template(LaunchTemplateName=t["LaunchTemplateName"])


def test_a_failing_second_region_rolls_back_only_the_first(ansible, registry, moto, regions):
    app = "awv%s" % uuid.uuid4().hex[:6]
    port = 17000 + int(uuid.uuid4().hex[:3], 16) % 1000
    run_env = Ansible(dict(ansible.env, **moto["env"]), ansible.workdir)
    waves = [{"name": region, "zones": net["zones"], "port": port,
              "platform_options": dict(moto["options"], region=region, **net["platform_options"]),
              "router_options": dict(moto["options"], region=region, poll_interval=0.2, **net["router_options"]),
              "router_dir": os.path.join(ansible.workdir, "router-%s-%s" % (app, region))}
             for region, net in regions.items()]
    common = {"release_platform": "aws", "release_router_backend": "elbv2", "release_wait_timeout": 120,
              "waves": waves}
    v1 = ami_image(registry, app, "1", {r: net["ami"] for r, net in regions.items()})
    v2 = ami_image(registry, app, "2", {REGIONS[0]: regions[REGIONS[0]]["ami"]})      # no AMI in eu-west-1
    seen = {region: Region(moto, net) for region, net in regions.items()}
    g1, g2 = "%s-prod-v001" % app, "%s-prod-v002" % app
    try:
        run = run_env.playbook(WAVES, release_vars(registry, app, v1, port, **common))
        assert run.rc == 0, failures(run)
        for region in REGIONS:
            assert sorted(seen[region].groups(app)) == [g1] and seen[region].weights(port) == {g1: 100}, region

        # v1 again, in check mode: nothing to do and nothing changed in either region.
        plan = run_env.playbook(WAVES, release_vars(registry, app, v1, port, **common), check=True, diff=True)
        assert plan.rc == 0 and plan.changed == 0, failures(plan)
        for region in REGIONS:
            assert sorted(seen[region].groups(app)) == [g1] and seen[region].weights(port) == {g1: 100}, region

        run = run_env.playbook(WAVES, release_vars(registry, app, v2, port, **common))
        assert run.rc != 0
        msg = run.result("Fail with the reason")["msg"]
        assert "failed in wave eu-west-1; rolled back waves us-east-1" in msg, msg
        assert "no AMI in region eu-west-1" in msg, msg
        # The first region released v2, then went back to v1 when the second failed: v2's group is gone.
        east, west = seen[REGIONS[0]], seen[REGIONS[1]]
        assert sorted(east.groups(app)) == [g1] and east.weights(port) == {g1: 100}
        assert east.target_groups(app) == [g1]
        assert len(east.groups(app)[g1]["Instances"]) == 2
        # The second region failed before it made anything: it still runs v1 alone.
        assert sorted(west.groups(app)) == [g1] and west.weights(port) == {g1: 100}
        assert west.target_groups(app) == [g1]
    finally:
        for region in REGIONS:
            seen[region].remove(app)
