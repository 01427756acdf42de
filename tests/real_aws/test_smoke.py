"""Real AWS smoke test (opt-in, see conftest.py): bake the web recipe's AMI with the SSH
communicator - the roles and the seal role run on a real build instance - record it in the
catalog, then deregister the AMI and delete its snapshots in every region.

  IMMUTABLE_INFRA_REAL_AWS=1 AWS_PROFILE=... AWS_REGION=eu-west-1 \\
  IMMUTABLE_INFRA_AWS_SUBNET=subnet-... python -m pytest -q -p no:cacheprovider tests/real_aws

IMMUTABLE_INFRA_AWS_SUBNET: a subnet Packer can reach over SSH (public IP or a route from here);
default: the region's default VPC. IMMUTABLE_INFRA_AWS_COPY_REGION: a second region to copy to."""
from __future__ import annotations

import os
import uuid

import boto3


def cleanup(regions, repository):
    """Deregister every AMI this test's repository tag names and delete their snapshots."""
    for region in regions:
        ec2 = boto3.client("ec2", region_name=region)
        images = ec2.describe_images(Owners=["self"], Filters=[
            {"Name": "tag:infra.immutable.repository", "Values": [repository]}])["Images"]
        for image in images:
            ec2.deregister_image(ImageId=image["ImageId"])
            for mapping in image.get("BlockDeviceMappings") or []:
                if (mapping.get("Ebs") or {}).get("SnapshotId"):
                    ec2.delete_snapshot(SnapshotId=mapping["Ebs"]["SnapshotId"])


def test_bake_the_web_ami_over_ssh(ansible, registry):
    region = os.environ.get("AWS_REGION") or os.environ["AWS_DEFAULT_REGION"]
    regions = [region] + [r for r in [os.environ.get("IMMUTABLE_INFRA_AWS_COPY_REGION")] if r]
    name = "smoke-%s" % uuid.uuid4().hex[:6]
    repository = "%s/%s-ami" % (registry["address"], name)
    variables = {"web_message": name}
    if os.environ.get("IMMUTABLE_INFRA_AWS_SUBNET"):
        variables["aws_subnet_id"] = os.environ["IMMUTABLE_INFRA_AWS_SUBNET"]
    try:
        rc, res = ansible.task("immutable.infra.image_bake", {
            "recipe": "web", "name": name, "only": ["ami"], "registry": registry["address"],
            "ami_communicator": "ssh", "ami_regions": regions, "variables": variables, "timeout": 2400})
        assert rc == 0, res
        assert sorted(res["image"]["amis"]) == sorted(regions) and res["image"]["format"] == "ami"
        for r, ami in res["image"]["amis"].items():
            image = boto3.client("ec2", region_name=r).describe_images(ImageIds=[ami])["Images"][0]
            tags = {t["Key"]: t["Value"] for t in image.get("Tags") or []}
            assert tags["infra.immutable.fingerprint"] == res["fingerprint"], tags
            assert tags["org.opencontainers.image.version"] == res["image"]["version"], tags
            assert tags["infra.immutable.state"] == "published", tags
    finally:
        cleanup(regions, repository)
