# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AMI bakes: a recipe's amazon-ebs source as an image version of the catalog.

An AMI version is a small OCI image in the catalog (repository <name>-ami) whose
labels are those of every version (version, created, revision, recipe,
fingerprint, bake id) plus infra.immutable.format=ami and one
infra.immutable.ami.<region>=ami-... per region; its only file, /ami.json,
says the same. The AMIs themselves live in AWS, tagged with the version's
identity (AMI_TAG_* below) and, in every region, so are their snapshots.

The regions (the first builds, the others get Packer's ami_regions copies) and
the communicator (ssh: the roles run; none: nothing is provisioned, for a
moto server) are inputs of the fingerprint; the connection options are not.

A bake that dies after Packer made the AMIs but before the catalog version is
pushed leaves AMIs tagged infra.immutable.state=unpublished with the bake's
fingerprint and repository: the next bake of the same inputs adopts them
(re-tags them with its version) instead of baking again. Once the version is
pushed the tag says published.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile

from ansible_collections.immutable.infra.plugins.module_utils import _aws
from ansible_collections.immutable.infra.plugins.module_utils import _catalog as catalog_mod
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run
from ansible_collections.immutable.infra.plugins.module_utils._vm_image import import_image

FORMAT_AMI = "ami"
COMMUNICATORS = ("ssh", "none")
AMI_TAG_REPOSITORY = catalog_mod.label("repository")
AMI_TAG_STATE = catalog_mod.label("state")
# The version's labels an AMI carries as tags.
TAGGED_LABELS = (catalog_mod.LABEL_VERSION, catalog_mod.LABEL_FINGERPRINT, catalog_mod.LABEL_RECIPE,
                 catalog_mod.LABEL_BAKE_ID)


def settings(params):
    """{"regions": [build region, copies...], "communicator", "options"} of an AMI bake (image_bake's
    aws, ami_regions, ami_communicator)."""
    options = {k: v for k, v in (params.get("aws") or {}).items() if v is not None}
    regions = [str(r).strip() for r in (params.get("ami_regions") or [])]
    if not regions:
        regions = [_aws.region_of(options)]
    bad = [r for r in regions if not r]
    if bad or len(set(regions)) != len(regions):
        raise ImmutableInfraError("ami_regions %s must name each region once, the build region first" % regions)
    communicator = params.get("ami_communicator") or "ssh"
    if communicator not in COMMUNICATORS:
        raise ImmutableInfraError("ami_communicator %r: give ssh (the roles run on the build instance) or none "
                                  "(nothing provisioned: an endpoint whose instances cannot be reached)" % communicator)
    return {"regions": regions, "communicator": communicator, "options": options}


def fingerprint_input(ami):
    return {"regions": ami["regions"], "communicator": ami["communicator"]}


def preflight(ami):
    """Credentials and regions, before anything is made: an error names what is missing or unknown."""
    session = _aws.Session(ami["options"], region=ami["regions"][0])
    session.check_credentials()
    found = session.call("ec2", "describe_regions", what="ec2 DescribeRegions", AllRegions=True)
    known = sorted(r["RegionName"] for r in found.get("Regions") or [])
    unknown = [r for r in ami["regions"] if r not in known]
    if unknown:
        raise ImmutableInfraError("unknown AWS region(s) %s in ami_regions (this account knows: %s)"
                                  % (", ".join(unknown), ", ".join(known)))
    return session


def packer_env(ami):
    """The environment Packer's amazon builder reads its credentials from (never a var file)."""
    opts, env = ami["options"], {"AWS_REGION": ami["regions"][0], "AWS_DEFAULT_REGION": ami["regions"][0]}
    for key, var in (("access_key", "AWS_ACCESS_KEY_ID"), ("secret_key", "AWS_SECRET_ACCESS_KEY"),
                     ("session_token", "AWS_SESSION_TOKEN"), ("profile", "AWS_PROFILE")):
        if opts.get(key):
            env[var] = str(opts[key])
    if opts.get("validate_certs") is False:
        env["AWS_CA_BUNDLE"] = ""
    return env


def identity_tags(labels, repository, state="unpublished"):
    tags = {k: labels[k] for k in TAGGED_LABELS if labels.get(k)}
    tags.update({AMI_TAG_REPOSITORY: repository, AMI_TAG_STATE: state})
    return tags


def contract_vars(ami, name, version, bake_id, labels, repository):
    """The recipe contract's variables of an AMI source."""
    return {"aws_region": ami["regions"][0], "aws_ami_regions": ami["regions"][1:],
            "aws_endpoint_ec2": ami["options"].get("endpoint_url") or "",
            "aws_ami_name": "%s-v%s-%s" % (name.replace("/", "-"), version, bake_id),
            "aws_ami_tags": dict(identity_tags(labels, repository), Name="%s:%s" % (name, version))}


def _session(ami, region):
    return _aws.Session(ami["options"], region=region)


def _images(ami, region, filters):
    return _session(ami, region).pages("ec2", "describe_images", "Images", what="ec2 DescribeImages",
                                       Owners=["self"], Filters=filters)


def unpublished(ami, fingerprint, repository):
    """{region: ami id} of AMIs a dead bake of these inputs left (tagged unpublished) in every region, else None."""
    filters = [{"Name": "tag:%s" % catalog_mod.LABEL_FINGERPRINT, "Values": [fingerprint]},
               {"Name": "tag:%s" % AMI_TAG_REPOSITORY, "Values": [repository]},
               {"Name": "tag:%s" % AMI_TAG_STATE, "Values": ["unpublished"]},
               {"Name": "state", "Values": ["available"]}]
    found = {}
    for region in ami["regions"]:
        images = sorted(_images(ami, region, filters), key=lambda i: i.get("CreationDate") or "")
        if not images:
            return None
        found[region] = images[-1]["ImageId"]
    return found


def amis_of_build(built, ami, recipe_dir):
    """{region: ami id} from Packer's artifact; a region the copy did not reach is an error."""
    if not built:
        raise ImmutableInfraError("recipe %s built no AMI (no amazon-ebs artifact)" % recipe_dir)
    amis = list(built.values())[-1]
    missing = [r for r in ami["regions"] if r not in amis]
    if missing:
        raise ImmutableInfraError("the AMI was not copied to region(s) %s: Packer made it only in %s; see the bake log"
                                  % (", ".join(missing), ", ".join("%s (%s)" % kv for kv in sorted(amis.items()))),
                                  amis=amis)
    return {r: amis[r] for r in ami["regions"]}


def tag(ami, amis, tags):
    """Tag every region's AMI and its snapshots (create_tags overwrites: re-runs converge)."""
    pairs = [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]
    for region, image_id in amis.items():
        session = _session(ami, region)
        images = session.call("ec2", "describe_images", what="ec2 DescribeImages", ImageIds=[image_id])["Images"]
        snapshots = [m["Ebs"]["SnapshotId"] for i in images for m in i.get("BlockDeviceMappings") or []
                     if (m.get("Ebs") or {}).get("SnapshotId")]
        session.call("ec2", "create_tags", what="ec2 CreateTags %s" % image_id, Resources=[image_id] + snapshots,
                     Tags=pairs)


def package(labels, amis, podman="podman"):
    """A local OCI image of the AMI version: /ami.json and the labels (format ami, one per region)."""
    workdir = tempfile.mkdtemp(prefix="immutable-infra-ami-")
    try:
        doc = os.path.join(workdir, "ami.json")
        with open(doc, "w") as f:
            json.dump({"amis": amis, "labels": labels}, f, sort_keys=True, indent=2)
        tar_path = os.path.join(workdir, "image.tar")
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tar.gettarinfo(doc, arcname="ami.json")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode, info.mtime = 0o444, 0
            with open(doc, "rb") as f:
                tar.addfile(info, f)
        all_labels = dict(labels, **{catalog_mod.LABEL_FORMAT: FORMAT_AMI})
        all_labels.update({catalog_mod.LABEL_AMI_PREFIX + r: a for r, a in amis.items()})
        return import_image(tar_path, all_labels, "/ami.json", "podman import of the AMI version", podman, timeout=300)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def publish(catalog, out, ami, amis, labels):
    """Tag the AMIs with this version, push the catalog version, then mark the AMIs published."""
    repository = catalog.repository(out["name"])
    tag(ami, amis, identity_tags(labels, repository))
    local = package(labels, amis)
    try:
        facts = catalog.publish(local, out["name"], out["version"], labels[catalog_mod.LABEL_BAKE_ID])
    finally:
        run(["podman", "rmi", "-f", local], check=False, timeout=120)
    tag(ami, amis, identity_tags(labels, repository, state="published"))
    return facts
