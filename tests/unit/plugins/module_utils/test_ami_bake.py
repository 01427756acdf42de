from __future__ import annotations

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _ami_bake as ami_bake
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def test_settings_build_region_first_and_default_from_the_options():
    s = ami_bake.settings({"aws": {"region": "eu-west-1", "profile": None}, "ami_communicator": "none"})
    assert s == {"regions": ["eu-west-1"], "communicator": "none", "options": {"region": "eu-west-1"}}
    s = ami_bake.settings({"aws": {"region": "eu-west-1"}, "ami_regions": ["us-east-1", "eu-west-1"]})
    assert s["regions"] == ["us-east-1", "eu-west-1"] and s["communicator"] == "ssh"
    assert ami_bake.fingerprint_input(s) == {"regions": ["us-east-1", "eu-west-1"], "communicator": "ssh"}


@pytest.mark.parametrize("params, message", [
    ({"ami_regions": ["us-east-1", "us-east-1"]}, "each region once"),
    ({"ami_regions": ["us-east-1", " "]}, "each region once"),
    ({"ami_regions": ["us-east-1"], "ami_communicator": "winrm"}, "ami_communicator 'winrm'"),
])
def test_bad_settings_name_the_value(params, message):
    with pytest.raises(ImmutableInfraError, match=message):
        ami_bake.settings(params)


def test_a_region_the_copy_did_not_reach_is_an_error():
    ami = {"regions": ["us-east-1", "eu-west-1"]}
    built = {"web.amazon-ebs.ami": {"us-east-1": "ami-1"}}
    with pytest.raises(ImmutableInfraError, match=r"not copied to region\(s\) eu-west-1: .*us-east-1 \(ami-1\)"):
        ami_bake.amis_of_build(built, ami, "r")
    with pytest.raises(ImmutableInfraError, match="built no AMI"):
        ami_bake.amis_of_build({}, ami, "r")
    built["web.amazon-ebs.ami"]["eu-west-1"] = "ami-2"
    assert ami_bake.amis_of_build(built, ami, "r") == {"us-east-1": "ami-1", "eu-west-1": "ami-2"}


def test_contract_vars_and_tags_carry_the_identity_and_no_credentials():
    ami = {"regions": ["us-east-1", "eu-west-1"], "communicator": "none",
           "options": {"endpoint_url": "http://127.0.0.1:5", "access_key": "AK", "secret_key": "SK"}}
    labels = {"org.opencontainers.image.version": "3", "infra.immutable.fingerprint": "sha256:f",
              "infra.immutable.recipe": "web-ami", "infra.immutable.bake-id": "b1",
              "org.opencontainers.image.created": "2026-11-30T00:00:00Z"}
    v = ami_bake.contract_vars(ami, "web-ami", "3", "b1", labels, "reg/web-ami")
    assert v["aws_region"] == "us-east-1" and v["aws_ami_regions"] == ["eu-west-1"]
    assert v["aws_endpoint_ec2"] == "http://127.0.0.1:5" and v["aws_ami_name"] == "web-ami-v3-b1"
    assert v["aws_ami_tags"] == {"org.opencontainers.image.version": "3", "infra.immutable.fingerprint": "sha256:f",
                                 "infra.immutable.recipe": "web-ami", "infra.immutable.bake-id": "b1",
                                 "infra.immutable.repository": "reg/web-ami", "infra.immutable.state": "unpublished",
                                 "Name": "web-ami:3"}
    assert "SK" not in repr(v)
    env = ami_bake.packer_env(ami)
    assert env["AWS_ACCESS_KEY_ID"] == "AK" and env["AWS_SECRET_ACCESS_KEY"] == "SK" and env["AWS_REGION"] == "us-east-1"
