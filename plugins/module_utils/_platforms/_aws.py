# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aws platform: a server group is one EC2 Auto Scaling group named like the
group (<app>-<stack>-vNNN), started from a launch template of the same name
pinned to the version's AMI in the region, spread over the subnets of its zones,
its identity in tags propagated to the instances. The ASG replaces dead
instances; surplus goes by lowering the desired capacity. Its state lives in AWS
alone (tags, the ASG, the launch template): nothing on the controller."""

from __future__ import annotations

import base64
import time

from ansible_collections.immutable.infra.plugins.module_utils._aws import AWS_OPTIONS, Session, aws_error, error_code
from ansible_collections.immutable.infra.plugins.module_utils._names import IDENTITY, LABEL_PREFIX, instance_group
from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import Platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

# Identity keys that are the group's (ASG tags); zone and instance-id are each instance's own.
GROUP_KEYS = tuple(k for k in IDENTITY if k not in ("zone", "instance-id"))
AWS_PLATFORM_OPTIONS = ("subnets", "instance_type", "security_groups", "iam_instance_profile", "key_name",
                        "user_data", "ssh_user")
_NOT_FOUND = ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidSubnetID.NotFound",
              "InvalidSubnetID.Malformed")
_LT_NOT_FOUND = ("InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound")


def asg_name(group):
    """The Auto Scaling group (and launch template) of a server group: its name."""
    return group


def instance_name(group, ec2_id):
    """web-prod-v003, i-0abc -> web-prod-v003-0abc (so that _names.instance_group finds the group)."""
    return "%s-%s" % (group, ec2_id[2:] if ec2_id.startswith("i-") else ec2_id)


def ec2_id_of(name):
    return "i-" + str(name).rsplit("-", 1)[1]


def group_tags(spec):
    """The ASG's tags of a create spec: the group's identity and its extra labels, propagated at launch."""
    values = {"app": spec["app"], "stack": spec["stack"], "group": spec["group"], "sequence": spec["sequence"],
              "image": spec["image"], "image-digest": spec["image_digest"],
              "image-version": spec.get("image_version") or "", "port": spec["port"]}
    tags = {LABEL_PREFIX + k: str(values[k]) for k in GROUP_KEYS}
    tags.update({k: str(v) for k, v in (spec.get("labels") or {}).items()})
    tags["Name"] = spec["group"]
    return tags


def _state(member):
    """running when InService and Healthy; else the lifecycle state, lower case (pending, terminating...)."""
    lifecycle = member.get("LifecycleState") or "unknown"
    if lifecycle == "InService" and member.get("HealthStatus") == "Healthy":
        return "running"
    return lifecycle.lower().replace(":", "-")


def parse_group(asg, ec2=None):
    """Instance records of one ASG (describe_auto_scaling_groups entry); ec2: {id: describe_instances entry}."""
    tags = {t["Key"]: t["Value"] for t in asg.get("Tags") or []}
    ident = {k.replace("-", "_"): tags.get(LABEL_PREFIX + k) for k in GROUP_KEYS}
    try:
        ident["sequence"] = int(ident["sequence"])
    except (TypeError, ValueError):
        ident["sequence"] = 0
    port = int(tags.get(LABEL_PREFIX + "port") or 0)
    group = ident["group"] or asg["AutoScalingGroupName"]
    out = []
    for member in asg.get("Instances") or []:
        iid = member["InstanceId"]
        info = (ec2 or {}).get(iid) or {}
        host = info.get("PrivateIpAddress")
        launched = info.get("LaunchTime")
        rec = dict(ident, group=group, name=instance_name(group, iid), id=iid, instance_id=iid,
                   zone=member.get("AvailabilityZone") or (info.get("Placement") or {}).get("AvailabilityZone"),
                   port=port, host=host, host_port=port if host else None,
                   endpoint="http://%s:%d" % (host, port) if host and port else None,
                   ports={port: port} if port else {}, state=_state(member),
                   created=launched.isoformat() if hasattr(launched, "isoformat") else launched,
                   labels=dict(tags), lifecycle_state=member.get("LifecycleState"),
                   health_status=member.get("HealthStatus"))
        out.append(rec)
    return out


class AwsPlatform(Platform):
    name = "aws"
    image_format = "ami"
    boot_seconds = 600
    # The ASG replaces dead instances itself: the policy only sets how many (desired capacity).
    replaces_dead = True
    OPTIONS = AWS_OPTIONS + AWS_PLATFORM_OPTIONS
    # Options a caller may fill in (server_group: the registry's TLS setting): none, validate_certs is AWS's.
    CALLER_DEFAULTS = ()

    def __init__(self, subnets=None, instance_type="t3.micro", security_groups=None, iam_instance_profile=None,
                 key_name=None, user_data=None, ssh_user=None, **connection):
        if subnets is not None and not isinstance(subnets, dict):
            raise ImmutableInfraError("platform_options.subnets must map zone (availability zone name) to subnet id "
                                      "(got %r)" % (subnets,))
        self.subnets = dict(subnets or {})
        self.instance_type = instance_type or "t3.micro"
        self.security_groups = list(security_groups or [])
        self.iam_instance_profile = iam_instance_profile
        self.key_name = key_name
        self.user_data = user_data
        self.ssh_user = ssh_user
        self.aws = Session(connection)
        self.region = self.aws.region
        self.poll = 2.0

    # -- reading --------------------------------------------------------------------------------------
    def _groups(self, app=None, stack=None, group=None):
        filters = [{"Name": "tag-key", "Values": [LABEL_PREFIX + "group"]}]
        for key, value in (("app", app), ("stack", stack), ("group", group)):
            if value is not None:
                filters.append({"Name": "tag:%s%s" % (LABEL_PREFIX, key), "Values": [str(value)]})
        kw = {"AutoScalingGroupNames": [asg_name(group)]} if group else {}
        return self.aws.pages("autoscaling", "describe_auto_scaling_groups", "AutoScalingGroups",
                              what="listing Auto Scaling groups", Filters=filters, **kw)

    def _ec2(self, ids):
        out = {}
        ids = list(ids)
        for i in range(0, len(ids), 100):
            for res in self.aws.pages("ec2", "describe_instances", "Reservations", what="describing instances",
                                      InstanceIds=ids[i:i + 100]):
                out.update((inst["InstanceId"], inst) for inst in res.get("Instances") or [])
        return out

    def list_instances(self, app=None, stack=None, group=None):
        groups = self._groups(app, stack, group)
        ec2 = self._ec2(m["InstanceId"] for g in groups for m in g.get("Instances") or [])
        found = [rec for g in groups for rec in parse_group(g, ec2)]
        return sorted(found, key=lambda i: (i["app"] or "", i["stack"] or "", i["sequence"], i["name"]))

    def instance(self, name):
        for inst in self.list_instances(group=instance_group(name)):
            if inst["name"] == name:
                return inst
        raise ImmutableInfraError("instance %s (%s) is not in Auto Scaling group %s in %s"
                                  % (name, ec2_id_of(name), instance_group(name), self.region))

    def pull(self, reference):
        """Nothing to fetch: the AMI is in the region already (checked before a group is created)."""

    # -- checks before anything is made ---------------------------------------------------------------
    def ami_for(self, spec):
        """The AMI id of the spec's image in this region; an error naming what exists when there is none."""
        amis = spec.get("amis") or {}
        ami = amis.get(self.region)
        if not ami:
            raise ImmutableInfraError("image %s has no AMI in region %s (it has: %s): bake its amazon-ebs source "
                                      "for %s" % (spec["image"], self.region,
                                                  ", ".join("%s=%s" % kv for kv in sorted(amis.items())) or "none",
                                                  self.region), region=self.region)
        try:
            found = self.aws.client("ec2").describe_images(ImageIds=[ami]).get("Images") or []
        except Exception as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise self._error(exc, "describing AMI %s" % ami)
            found = []
        if not found:
            raise ImmutableInfraError("AMI %s of image %s does not exist in region %s (deregistered, or baked in "
                                      "another account)" % (ami, spec["image"], self.region), ami=ami)
        return ami

    def subnets_for(self, zones):
        """The subnet ids of zones (in order), each checked to exist in its zone."""
        if not self.subnets:
            raise ImmutableInfraError("the aws platform needs platform_options.subnets ({availability zone: "
                                      "subnet id}) for zones %s" % ", ".join(zones))
        unknown = [z for z in zones if z not in self.subnets]
        if unknown:
            raise ImmutableInfraError("zone(s) %s have no subnet in platform_options.subnets (known zones: %s)"
                                      % (", ".join(unknown), ", ".join(sorted(self.subnets))), zones=unknown)
        wanted = [self.subnets[z] for z in zones]
        try:
            found = self.aws.client("ec2").describe_subnets(SubnetIds=sorted(set(wanted))).get("Subnets") or []
        except Exception as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise self._error(exc, "describing subnets %s" % ", ".join(wanted))
            found = []
        real = {s["SubnetId"]: s.get("AvailabilityZone") for s in found}
        for zone in zones:
            subnet = self.subnets[zone]
            if subnet not in real:
                raise ImmutableInfraError("subnet %s (zone %s) does not exist in region %s"
                                          % (subnet, zone, self.region), subnet=subnet)
            if real[subnet] != zone:
                raise ImmutableInfraError("subnet %s is in zone %s, not %s: fix platform_options.subnets"
                                          % (subnet, real[subnet], zone), subnet=subnet)
        return wanted

    def _error(self, exc, what):
        return aws_error(exc, what, self.region)

    # -- changes ----------------------------------------------------------------------------------------
    def create_instances(self, specs):
        """Create the group's ASG (or raise its desired capacity); return the new instances' records."""
        out = []
        by_group = {}
        for spec in specs:
            by_group.setdefault(spec["group"], []).append(spec)
        for group, group_specs in sorted(by_group.items()):
            out.extend(self._create_group(group, group_specs))
        return out

    def _create_group(self, group, specs):
        self.aws.check_credentials()
        existing = self._groups(group=group)
        before = {m["InstanceId"] for g in existing for m in g.get("Instances") or []}
        if existing:
            asg = existing[0]
            desired = int(asg.get("DesiredCapacity") or 0) + len(specs)
            self.aws.call("autoscaling", "update_auto_scaling_group", what="raising the desired capacity of %s"
                          % group, AutoScalingGroupName=asg_name(group), DesiredCapacity=desired,
                          MaxSize=max(desired, int(asg.get("MaxSize") or 0)))
        else:
            desired = len(specs)
            self._create_asg(group, specs)
        return self._wait_members(group, before, desired)

    def _create_asg(self, group, specs):
        spec = specs[0]
        zones = list(dict.fromkeys(list(spec.get("zones") or []) + [s["zone"] for s in specs]))
        ami = self.ami_for(spec)                 # every check first: nothing is made on bad input
        subnets = self.subnets_for(zones)
        tags = group_tags(spec)
        data = {"ImageId": ami, "InstanceType": self.instance_type,
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
                "TagSpecifications": [{"ResourceType": "volume", "Tags": _tag_list(tags)}]}
        if self.security_groups:
            data["SecurityGroupIds"] = self.security_groups
        if self.iam_instance_profile:
            key = "Arn" if str(self.iam_instance_profile).startswith("arn:") else "Name"
            data["IamInstanceProfile"] = {key: self.iam_instance_profile}
        if self.key_name:
            data["KeyName"] = self.key_name
        if self.user_data:
            data["UserData"] = base64.b64encode(self.user_data.encode()).decode()
        made = []     # removed again when a later step fails
        try:
            lt = self.aws.call("ec2", "create_launch_template", what="creating launch template %s" % group,
                               LaunchTemplateName=asg_name(group), LaunchTemplateData=data,
                               TagSpecifications=[{"ResourceType": "launch-template", "Tags": _tag_list(tags)}])
            made.append("launch template")
            version = str((lt.get("LaunchTemplate") or {}).get("LatestVersionNumber") or 1)
            self.aws.call("autoscaling", "create_auto_scaling_group", what="creating Auto Scaling group %s" % group,
                          AutoScalingGroupName=asg_name(group),
                          LaunchTemplate={"LaunchTemplateName": asg_name(group), "Version": version},
                          MinSize=0, MaxSize=len(specs), DesiredCapacity=len(specs),
                          VPCZoneIdentifier=",".join(subnets),
                          Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": asg_name(group),
                                 "ResourceType": "auto-scaling-group"} for k, v in sorted(tags.items())])
            made.append("Auto Scaling group")
        except ImmutableInfraError as exc:
            self._remove_group(group, asg=True, lt="launch template" in made)
            raise ImmutableInfraError("cannot create server group %s: %s (removed what was made: %s)"
                                      % (group, exc.msg, ", ".join(made) or "nothing"), **exc.details)

    def _wait_members(self, group, before, desired, timeout=300):
        """The ASG's new instances once it lists `desired` of them (they appear as they launch)."""
        deadline = time.monotonic() + timeout
        while True:
            members = self.list_instances(group=group)
            new = [i for i in members if i["id"] not in before]
            if len(members) >= desired or time.monotonic() > deadline:
                return new
            time.sleep(self.poll)

    def destroy_instances(self, names, timeout=5):
        """Terminate instances, lowering the desired capacity; all of a group removes the group."""
        names = list(names)
        by_group = {}
        for name in names:
            by_group.setdefault(instance_group(name), []).append(name)
        for group, gone in sorted(by_group.items()):
            members = {i["name"] for i in self.list_instances(group=group)}
            if members and members <= set(gone):
                self.decommission(group)
                continue
            for name in gone:
                if name in members:
                    self.aws.call("autoscaling", "terminate_instance_in_auto_scaling_group",
                                  what="terminating %s of %s" % (ec2_id_of(name), group),
                                  InstanceId=ec2_id_of(name), ShouldDecrementDesiredCapacity=True)
        return names

    def decommission(self, group, timeout=600):
        """Detach target groups, scale to 0, delete the ASG, then the launch template (in that order)."""
        self._remove_group(group, asg=True, lt=True, timeout=timeout)

    def remove_empty_group(self, group, check_mode=False):
        """An ASG without instances (scaled to 0) or a launch template left by a crash: removed."""
        name = asg_name(group)
        asg = self.aws.call("autoscaling", "describe_auto_scaling_groups", what="reading %s" % name,
                            AutoScalingGroupNames=[name]).get("AutoScalingGroups")
        try:
            lt = self.aws.client("ec2").describe_launch_templates(LaunchTemplateNames=[name]).get("LaunchTemplates")
        except Exception as exc:
            if error_code(exc) not in _LT_NOT_FOUND:
                raise self._error(exc, "reading launch template %s" % name)
            lt = []
        if (asg or lt) and not check_mode:
            self._remove_group(group, asg=bool(asg), lt=bool(lt))
        return bool(asg or lt)

    def _remove_group(self, group, asg=True, lt=True, timeout=600):
        name = asg_name(group)
        if asg:
            found = self.aws.call("autoscaling", "describe_auto_scaling_groups", what="reading %s" % name,
                                  AutoScalingGroupNames=[name]).get("AutoScalingGroups") or []
            if found:
                tgs = found[0].get("TargetGroupARNs") or []
                if tgs:
                    self.aws.call("autoscaling", "detach_load_balancer_target_groups",
                                  what="detaching target groups from %s" % name,
                                  AutoScalingGroupName=name, TargetGroupARNs=tgs)
                self.aws.call("autoscaling", "update_auto_scaling_group", what="scaling %s to 0" % name,
                              AutoScalingGroupName=name, MinSize=0, MaxSize=0, DesiredCapacity=0)
                self.aws.call("autoscaling", "delete_auto_scaling_group", what="deleting %s" % name,
                              AutoScalingGroupName=name, ForceDelete=True)
                self._wait_gone(name, timeout)
        if lt:
            try:
                self.aws.client("ec2").delete_launch_template(LaunchTemplateName=name)
            except Exception as exc:
                if error_code(exc) not in _LT_NOT_FOUND:
                    raise self._error(exc, "deleting launch template %s" % name)

    def _wait_gone(self, name, timeout):
        deadline = time.monotonic() + timeout
        while True:
            found = self.aws.call("autoscaling", "describe_auto_scaling_groups", what="reading %s" % name,
                                  AutoScalingGroupNames=[name]).get("AutoScalingGroups") or []
            if not found:
                return
            if time.monotonic() > deadline:
                raise ImmutableInfraError("Auto Scaling group %s still exists %ss after its deletion (status %s)"
                                          % (name, timeout, found[0].get("Status")))
            time.sleep(self.poll)

    # -- readiness, logs, connection --------------------------------------------------------------------
    def wait_ready(self, instances, health_check, timeout):
        """Wait until each group of `instances` has its desired capacity InService and Healthy (the ASG's
        health: EC2 status, or the target groups' once the router attached them); {name: state}."""
        groups = sorted({i["group"] for i in instances})
        deadline = time.monotonic() + timeout
        while True:
            states, short = {}, []
            for group in groups:
                found = self._groups(group=group)
                desired = int(found[0].get("DesiredCapacity") or 0) if found else 0
                members = parse_group(found[0]) if found else []
                states.update((m["name"], m["state"]) for m in members)
                if sum(1 for m in members if m["state"] == "running") < desired:
                    short.append("%s (%d of %d InService and Healthy: %s)" % (
                        group, sum(1 for m in members if m["state"] == "running"), desired,
                        ", ".join("%s %s/%s" % (m["id"], m["lifecycle_state"], m["health_status"])
                                  for m in members) or "no instances"))
            if not short:
                return {name: "InService" for name, state in states.items() if state == "running"}
            if time.monotonic() > deadline:
                raise ImmutableInfraError("Auto Scaling group(s) not InService within %ss: %s"
                                          % (timeout, "; ".join(short)), unhealthy=groups)
            time.sleep(self.poll)

    def logs(self, name, lines=20):
        try:
            out = self.aws.client("ec2").get_console_output(InstanceId=ec2_id_of(name)).get("Output") or ""
        except Exception:
            return ""
        try:
            out = base64.b64decode(out).decode("utf-8", "replace")
        except (ValueError, TypeError):
            pass
        return "\n".join(out.strip().splitlines()[-lines:])

    def connection(self, instance):
        """SSH to the private IP (from a bastion or inside the VPC), as ssh_user when given."""
        if not instance.get("host"):
            return {}
        out = {"ansible_host": instance["host"]}
        if self.ssh_user:
            out["ansible_user"] = self.ssh_user
        return out


def _tag_list(tags):
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
