"""The release playbooks on the aws platform with the elbv2 router, against a moto server:
release v1, release v2 over it, roll back, decommission. The resource graph (ASGs, target groups,
their attachments, the listener and its weights) is read back through boto3 after each step.
Image versions are AMI versions in the session registry (their labels carry the AMI per region)."""
from __future__ import annotations

import uuid

from conftest import DECOMMISSION, RELEASE, ROLLBACK, Ansible, boto3_client, release_vars
from test_aws_platform import ami, ami_image  # noqa: F401  pylint: disable=unused-import
from test_aws_router import Elb, net  # noqa: F401  pylint: disable=unused-import

ZONES = ("us-east-1a", "us-east-1b")


def asgs(moto, app):
    found = boto3_client(moto, "autoscaling").describe_auto_scaling_groups(
        Filters=[{"Name": "tag:infra.immutable.app", "Values": [app]}])["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: g for g in found}


def test_release_v2_over_v1_roll_back_and_decommission(ansible, registry, moto, net, ami):  # noqa: F811
    app = "aws%s" % uuid.uuid4().hex[:6]
    port = 16000 + int(uuid.uuid4().hex[:3], 16) % 1000
    elb = Elb(moto, net)
    run_env = Ansible(dict(ansible.env, **moto["env"]), ansible.workdir)
    aws = {"release_platform": "aws", "release_platform_options": dict(moto["options"], **net["platform_options"]),
           "release_router_backend": "elbv2", "release_zones": list(ZONES), "release_wait_timeout": 120,
           "release_router_options": dict(moto["options"], poll_interval=0.2, **net["router_options"])}
    images = [ami_image(registry, app, str(v), {moto["region"]: ami}) for v in (1, 2)]
    try:
        run = run_env.playbook(RELEASE, release_vars(registry, app, images[0], port, **aws))
        assert run.rc == 0, run.stderr[-3000:]
        v1 = "%s-prod-v001" % app
        assert sorted(asgs(moto, app)) == [v1] and elb.weights(port) == {v1: 100}
        tgs = elb.target_groups(app)
        assert asgs(moto, app)[v1]["TargetGroupARNs"] == [tgs[v1]["TargetGroupArn"]]

        run = run_env.playbook(RELEASE, release_vars(registry, app, images[1], port, **aws))
        assert run.rc == 0, run.stderr[-3000:]
        v2 = "%s-prod-v002" % app
        groups = asgs(moto, app)
        assert sorted(groups) == [v1, v2] and elb.weights(port) == {v1: 0, v2: 100}
        assert len(groups[v1]["Instances"]) == 2          # the old group stays warm for a rollback
        tgs = elb.target_groups(app)
        assert groups[v2]["TargetGroupARNs"] == [tgs[v2]["TargetGroupArn"]]
        assert groups[v1]["TargetGroupARNs"] == [tgs[v1]["TargetGroupArn"]]

        rollback = {k.replace("release_", "rollback_"): v for k, v in aws.items()}
        run = run_env.playbook(ROLLBACK, dict({"app": app, "stack": "prod", "catalog_registry": registry["address"]},
                                              **rollback))
        assert run.rc == 0, run.stderr[-3000:]
        assert elb.weights(port) == {v1: 100, v2: 0} and sorted(asgs(moto, app)) == [v1, v2]

        decommission = {k.replace("release_", "decommission_"): v for k, v in aws.items()
                        if k not in ("release_zones", "release_wait_timeout")}
        run = run_env.playbook(DECOMMISSION, dict({"app": app, "stack": "prod", "decommission_force": True},
                                                  **decommission))
        assert run.rc == 0, run.stderr[-3000:]
        assert asgs(moto, app) == {} and elb.target_groups(app) == {} and elb.listener(port) is None
        ec2 = boto3_client(moto, "ec2")
        assert not [t for t in ec2.describe_launch_templates()["LaunchTemplates"]
                    if t["LaunchTemplateName"].startswith(app + "-")]
    finally:                # whatever a failed step left (moto is shared by the session)
        auto, ec2 = boto3_client(moto, "autoscaling"), boto3_client(moto, "ec2")
        for name in asgs(moto, app):
            auto.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        for t in ec2.describe_launch_templates()["LaunchTemplates"]:
            if t["LaunchTemplateName"].startswith(app + "-"):
                ec2.delete_launch_template(LaunchTemplateName=t["LaunchTemplateName"])
