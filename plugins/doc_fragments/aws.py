# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # The AWS connection options (_aws.AWS_OPTIONS). They are keys of a dict option
    # (platform_options of the aws platform, router_options of the elbv2 router, the AWS
    # options of an amazon-ebs bake), not options of their own: a plugin that talks to
    # AWS extends this fragment and points its dict option at these notes.
    DOCUMENTATION = r"""
options: {}
requirements:
  - boto3 and botocore, on the host that runs the module (the controller), only when AWS is used.
notes:
  - "AWS connection keys (the same in every AWS-facing dict option: C(platform_options) of the C(aws) platform,
    C(router_options) of the C(elbv2) router backend, the AWS options of an C(amazon-ebs) bake):
    C(region) (default C($AWS_REGION), else C($AWS_DEFAULT_REGION); required one way or the other),
    C(endpoint_url) (another endpoint than AWS's, e.g. a moto server or a VPC endpoint),
    C(access_key) and C(secret_key) (default C($AWS_ACCESS_KEY_ID)/C($AWS_SECRET_ACCESS_KEY), a C(profile),
    or the instance role; never logged), C(session_token) (temporary credentials; never logged),
    C(profile) (a profile of the AWS shared configuration), C(validate_certs) (verify the endpoint's TLS
    certificate, default C(true)). Names as amazon.aws spells its C(aws_*) options without the prefix."
  - "Missing credentials fail before anything is made, with an error naming what to give. The values of
    C(secret_key) and C(session_token) are masked (no_log) in the results of the modules that take them; give
    them through the environment, a profile or an instance role where possible."
"""
