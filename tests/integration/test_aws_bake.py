"""AMI bakes against a moto server: the web recipe's amazon-ebs source (communicator none: moto's
instances cannot be reached) baked by Packer into AMIs, recorded as image versions of the project's
registry, read back through boto3. No parent image is needed (an AMI starts from a source AMI)."""
from __future__ import annotations

import os
import uuid

from conftest import TOP, boto3_client, versions

FP = "infra.immutable.fingerprint"


def source_ami(moto):
    """An AMI moto ships (the source of the bake; nothing of it is read offline)."""
    images = boto3_client(moto, "ec2").describe_images(Owners=["amazon"])["Images"]
    assert images, "moto lists no AMI to start from"
    return sorted(i["ImageId"] for i in images)[0]


def bake(ansible, registry, moto, name, message, regions=None, aws=None, check=False, **extra):
    args = {"recipe": "web", "name": name, "only": ["ami"], "registry": registry["address"],
            "ami_communicator": "none", "ami_regions": regions or [moto["region"]],
            "aws": moto["options"] if aws is None else aws,
            "variables": {"aws_source_ami": source_ami(moto), "web_message": message}}
    args.update(extra)
    return ansible.task("immutable.infra.image_bake", args, check=check)


def our_amis(moto, region, repository, fingerprint=None):
    filters = [{"Name": "tag:infra.immutable.repository", "Values": [repository]}]
    if fingerprint:
        filters.append({"Name": "tag:" + FP, "Values": [fingerprint]})
    return boto3_client(moto, "ec2", region).describe_images(Owners=["self"], Filters=filters)["Images"]


def tags_of(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def test_ami_bake_records_amis_per_region_and_is_baked_once(ansible, registry, moto):
    name = "amiweb-%s" % uuid.uuid4().hex[:6]
    repo = "%s/%s-ami" % (registry["address"], name)
    regions = list(moto["regions"])                       # us-east-1 builds, eu-west-1 gets the copy
    rc, res = bake(ansible, registry, moto, name, "one", regions)
    assert rc == 0, res
    image = res["image"]
    assert res["changed"] and res["format"] == "ami" and res["name"] == name + "-ami"
    assert image["format"] == "ami" and image["version"] == "1" and image["recipe"] == name + "-ami"
    assert sorted(image["amis"]) == sorted(regions) and res["outputs"][0]["amis"] == image["amis"]
    assert image["labels"]["infra.immutable.format"] == "ami" and image["fingerprint"] == res["fingerprint"]
    assert res["sbom"] is None                              # an AMI's volume is not read offline
    for region in regions:
        found = our_amis(moto, region, repo)
        assert [i["ImageId"] for i in found] == [image["amis"][region]], (region, found)
        t = tags_of(found[0])
        assert t["org.opencontainers.image.version"] == "1" and t[FP] == res["fingerprint"], t
        assert t["infra.immutable.recipe"] == name + "-ami" and t["infra.immutable.state"] == "published", t
    snaps = [m["Ebs"]["SnapshotId"] for m in our_amis(moto, regions[0], repo)[0]["BlockDeviceMappings"] if "Ebs" in m]
    ec2 = boto3_client(moto, "ec2")
    for snap in ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"]:
        assert tags_of(snap)[FP] == res["fingerprint"], snap

    # Same inputs: the existing version, no Packer, no new AMI.
    rc, again = bake(ansible, registry, moto, name, "one", regions)
    assert rc == 0 and not again["changed"] and again["image"]["digest"] == image["digest"], again
    assert [len(our_amis(moto, r, repo)) for r in regions] == [1, 1]

    # Another input: a new version with new AMIs; the first version keeps its own.
    rc, two = bake(ansible, registry, moto, name, "two", regions)
    assert rc == 0 and two["changed"] and two["image"]["version"] == "2", two
    assert two["fingerprint"] != res["fingerprint"] and two["image"]["amis"][regions[0]] != image["amis"][regions[0]]
    assert [len(our_amis(moto, r, repo)) for r in regions] == [2, 2]
    assert versions(registry, name + "-ami") == ["1", "2"]

    # Other regions are another input too.
    rc, one_region = bake(ansible, registry, moto, name, "two", regions[:1])
    assert rc == 0 and one_region["changed"] and sorted(one_region["image"]["amis"]) == regions[:1], one_region

    rc, info = ansible.task("immutable.infra.image_info",
                            {"name": name + "-ami", "version": "1", "registry": registry["address"]})
    assert rc == 0, info
    assert [v["amis"] for v in info["versions"]] == [image["amis"]] and info["versions"][0]["format"] == "ami", info


def test_ami_bake_check_mode_makes_nothing(ansible, registry, moto):
    name = "amicheck-%s" % uuid.uuid4().hex[:6]
    rc, res = bake(ansible, registry, moto, name, "check", check=True)
    assert rc == 0 and res["changed"] and res["image"] is None, res
    assert versions(registry, name + "-ami") == []
    assert our_amis(moto, moto["region"], "%s/%s-ami" % (registry["address"], name)) == []


def test_ami_bake_adopts_the_ami_a_dead_bake_left(ansible, registry, moto):
    """Packer made the AMI, then the bake died before the catalog version was pushed: the AMI is
    tagged unpublished with the inputs' fingerprint. The next bake publishes it, making no new AMI."""
    name = "amiadopt-%s" % uuid.uuid4().hex[:6]
    repo = "%s/%s-ami" % (registry["address"], name)
    rc, plan = bake(ansible, registry, moto, name, "adopt", check=True)
    assert rc == 0 and plan["changed"], plan
    ec2 = boto3_client(moto, "ec2")
    instance = ec2.run_instances(ImageId=source_ami(moto), MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    try:
        orphan = ec2.create_image(InstanceId=instance, Name="%s-v1-dead" % name)["ImageId"]
    finally:
        ec2.terminate_instances(InstanceIds=[instance])
    ec2.create_tags(Resources=[orphan], Tags=[{"Key": FP, "Value": plan["fingerprint"]},
                                              {"Key": "infra.immutable.repository", "Value": repo},
                                              {"Key": "infra.immutable.state", "Value": "unpublished"},
                                              {"Key": "org.opencontainers.image.version", "Value": "1"}])
    rc, res = bake(ansible, registry, moto, name, "adopt")
    assert rc == 0 and res["changed"] and res["outputs"][0].get("adopted"), res
    assert res["image"]["amis"] == {moto["region"]: orphan}
    found = our_amis(moto, moto["region"], repo)
    assert [i["ImageId"] for i in found] == [orphan]
    assert tags_of(found[0])["infra.immutable.state"] == "published"
    assert tags_of(found[0])["infra.immutable.bake-id"] == res["image"]["bake_id"]


def test_ami_bake_bad_inputs_change_nothing(ansible, registry, moto):
    name = "amibad-%s" % uuid.uuid4().hex[:6]
    repo = "%s/%s-ami" % (registry["address"], name)
    no_credentials = {"endpoint_url": moto["endpoint_url"], "region": moto["region"]}
    rc, res = bake(ansible, registry, moto, name, "bad", aws=no_credentials)
    assert rc != 0 and "AWS credentials missing" in res["msg"], res
    rc, res = bake(ansible, registry, moto, name, "bad", regions=[moto["region"], "mars-north-9"])
    assert rc != 0 and "unknown AWS region(s) mars-north-9" in res["msg"], res
    pyapi = os.path.join(TOP, "tests", "integration", "recipes", "pyapi")
    rc, res = bake(ansible, registry, moto, name, "bad", recipe=pyapi)
    assert rc != 0 and "no ami source" in res["msg"], res
    assert versions(registry, name + "-ami") == []
    for region in moto["regions"]:
        assert our_amis(moto, region, repo) == []


def test_bake_playbook_reaches_an_ami_bake_by_vars(ansible, registry, moto):
    name = "amiplay-%s" % uuid.uuid4().hex[:6]
    run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), {
        "recipe_name": name, "catalog_registry": registry["address"], "bake_only": "ami",
        "bake_ami_communicator": "none", "bake_aws": moto["options"], "bake_regions": [moto["region"]],
        "recipe_variables": {"aws_source_ami": source_ami(moto)}})
    assert run.rc == 0, run.stderr
    res = run.result("Bake the recipe")
    assert res["changed"] and res["image"]["format"] == "ami" and list(res["image"]["amis"]) == [moto["region"]]
    assert moto["options"]["secret_key"] not in str(res.get("invocation", {}))
    assert versions(registry, name + "-ami") == ["1"]
