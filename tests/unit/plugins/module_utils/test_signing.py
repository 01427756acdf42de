"""Signing's pure parts (_signing): the lookaside layout, the policy option and its
errors, gpg status parsing, the signed identity; and the place server_group asks
for verification (converge refuses before anything is made, on any platform)."""
from __future__ import annotations

import json
import os

import pytest
from test_conformance import IMAGES, FakePlatform, params

from ansible_collections.immutable.infra.plugins.module_utils import _signing
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._server_group import converge

HEX = "ab" * 32
DIGEST = "sha256:" + HEX
ARMORED = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n"


def test_signature_dir_follows_the_containers_lookaside_layout(tmp_path):
    assert _signing.signature_dir(str(tmp_path), "web", DIGEST) == str(tmp_path / ("web@sha256=" + HEX))
    assert _signing.signature_dir("/s", "team/web", DIGEST) == "/s/team/web@sha256=" + HEX


def test_default_lookaside_is_the_state_dirs_sigstore(monkeypatch, tmp_path):
    monkeypatch.setenv("IMMUTABLE_INFRA_STATE_DIR", str(tmp_path))
    assert _signing.default_lookaside() == str(tmp_path / "sigstore")
    assert _signing.signature_dir(None, "web", DIGEST).startswith(str(tmp_path / "sigstore") + "/")


@pytest.mark.parametrize("name, digest, error", [
    ("web", "sha256:abc", "invalid digest"),
    ("web", "md5:" + HEX, "invalid digest"),
    ("web", "sha256:" + "AB" * 32, "invalid digest"),
    ("../etc", DIGEST, "invalid repository name"),
    ("/abs", DIGEST, "invalid repository name"),
    ("", DIGEST, "invalid repository name"),
])
def test_signature_dir_refuses_what_could_escape_the_lookaside(name, digest, error):
    with pytest.raises(ImmutableInfraError, match=error):
        _signing.signature_dir("/s", name, digest)


def test_signature_paths_count_from_one_up_to_the_first_gap(tmp_path):
    base = tmp_path / ("web@sha256=" + HEX)
    assert _signing.signature_paths(str(tmp_path), "web", DIGEST) == []
    base.mkdir()
    for n in (1, 2, 4):
        (base / ("signature-%d" % n)).write_bytes(b"x")
    assert _signing.signature_paths(str(tmp_path), "web", DIGEST) == [str(base / "signature-1"), str(base / "signature-2")]


def test_a_signature_is_stored_as_the_next_free_index_never_over_one(tmp_path):
    made = tmp_path / "made"
    made.write_bytes(b"new")
    base = tmp_path / "dir"
    base.mkdir()
    (base / "signature-1").write_bytes(b"old")
    assert _signing._store(str(made), str(base)) == str(base / "signature-2")
    assert (base / "signature-1").read_bytes() == b"old" and (base / "signature-2").read_bytes() == b"new"
    assert sorted(os.listdir(base)) == ["signature-1", "signature-2"]


def test_no_policy_means_no_verification():
    assert _signing.parse_policy(None, environ={}) is None


def test_a_policy_is_filled_in(tmp_path):
    key = tmp_path / "a.pub"
    key.write_text(ARMORED)
    assert _signing.parse_policy({"keys": [str(key), ARMORED]}) == {
        "keys": [str(key), ARMORED], "lookaside": None, "require": True}
    assert _signing.parse_policy({"keys": str(key), "lookaside": "/l", "require": False}) == {
        "keys": [str(key)], "lookaside": "/l", "require": False}


def test_the_project_policy_file_applies_when_the_option_is_absent(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"keys": [ARMORED], "require": True}))
    assert _signing.parse_policy(None, environ={_signing.POLICY_ENV: str(path)})["keys"] == [ARMORED]
    path.write_text("{not json")
    with pytest.raises(ImmutableInfraError, match=r"cannot read the signature policy file .*policy.json"):
        _signing.parse_policy(None, environ={_signing.POLICY_ENV: str(path)})


@pytest.mark.parametrize("policy, error", [
    ([ARMORED], r"expected a mapping with keys, lookaside, require \(got list\)"),
    ({"keys": []}, "keys must list the trusted public keys"),
    ({}, "keys must list the trusted public keys"),
    ({"keys": [ARMORED], "trust": "all"}, r"unknown field\(s\) trust \(known: keys, lookaside, require\)"),
    ({"keys": ["/no/such/key.pub"]}, "key '/no/such/key.pub' is neither a readable key file nor armored key text"),
    ({"keys": [ARMORED], "require": "yes"}, "require must be true or false"),
    ({"keys": [ARMORED], "lookaside": 3}, "lookaside must be a directory path"),
])
def test_a_bad_policy_is_refused_naming_the_field(policy, error):
    with pytest.raises(ImmutableInfraError, match=error):
        _signing.parse_policy(policy)


def test_a_bad_policy_error_shows_armored_text_by_its_first_line_only():
    with pytest.raises(ImmutableInfraError) as err:
        _signing.parse_policy({"keys": [ARMORED, 7]})
    assert "mDMEZ" not in err.value.msg and "-----BEGIN PGP PUBLIC KEY BLOCK----- ..." in err.value.msg


FPR_A, FPR_B = "A" * 40, "B" * 40


@pytest.mark.parametrize("status, expected", [
    ("[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 1234 A\n[GNUPG:] VALIDSIG %s 2026-11-30 1 0 4 0 22 8 00 %s\n" % (FPR_B, FPR_A),
     {"valid": True, "fingerprint": FPR_B, "primary": FPR_A, "problem": None}),
    ("[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 2C77 1 10 00 1796047374 9 %s\n[GNUPG:] NO_PUBKEY 2C77\n" % FPR_B,
     {"valid": False, "fingerprint": FPR_B, "primary": FPR_B, "problem": "no_pubkey"}),
    ("[GNUPG:] ERRSIG 2C77 1 10 00 1796047374 9 -\n",
     {"valid": False, "fingerprint": "2C77", "primary": "2C77", "problem": "no_pubkey"}),
    ("[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 1234 A\n", {"valid": False, "fingerprint": None, "primary": None, "problem": "bad"}),
    ("[GNUPG:] EXPKEYSIG 1234 A\n[GNUPG:] VALIDSIG %s x 1 0 4 0 22 8 00 %s\n" % (FPR_A, FPR_A),
     {"valid": True, "fingerprint": FPR_A, "primary": FPR_A, "problem": "expired_key"}),
    ("", {"valid": False, "fingerprint": None, "primary": None, "problem": "none"}),
    ("gpg: no valid OpenPGP data found.\n", {"valid": False, "fingerprint": None, "primary": None, "problem": "none"}),
])
def test_gpg_status_lines_say_what_a_signature_is(status, expected):
    assert _signing.parse_status(status) == expected


def test_a_version_is_signed_for_its_repository_and_tag():
    facts = {"reference": "127.0.0.1:5000/web@" + DIGEST, "repository": "127.0.0.1:5000/web", "tag": "3",
             "version": "3", "digest": DIGEST}
    assert _signing.identity_of(facts) == "127.0.0.1:5000/web:3"
    assert _signing.identity_of(dict(facts, tag=None, version=None)) == "127.0.0.1:5000/web"


@pytest.mark.parametrize("signing, error", [
    (None, "signing needs the private key"),
    ({"passphrase": "x"}, "signing needs the private key"),
    ({"key": "k", "key_file": "/k"}, "one of key_file and key"),
    ({"key_file": "/no/such/key.asc"}, "signing.key_file /no/such/key.asc does not exist"),
])
def test_bad_signing_options_are_refused_before_gpg_runs(signing, error):
    with pytest.raises(ImmutableInfraError, match=error):
        _signing._signing_key(None, signing)


@pytest.mark.parametrize("image_format", ["container", "vm"])
def test_server_group_refuses_a_version_the_policy_refuses_before_anything_is_made(image_format):
    platform = FakePlatform(image_format=image_format)
    images = {k: dict(v, format=image_format) for k, v in IMAGES.items()}
    asked = []

    def refuse(image):
        asked.append(image["digest"])
        raise ImmutableInfraError("image %s is not signed" % image["reference"])
    for check_mode in (True, False):
        with pytest.raises(ImmutableInfraError, match="reg/shop@sha256:01 is not signed"):
            converge(platform, images.__getitem__, params(), check_mode, verify_image=refuse)
    assert asked == ["sha256:01", "sha256:01"]
    assert platform.calls == [] and platform.pulled == [] and platform.instances == {}


def test_server_group_reports_the_verification_and_a_warning_when_not_enforced():
    platform = FakePlatform()
    try:
        res = converge(platform, IMAGES.__getitem__, params(), verify_image=lambda image: {
            "verified": True, "fingerprint": FPR_A, "digest": image["digest"]})
        assert res["signature"] == {"verified": True, "fingerprint": FPR_A, "digest": "sha256:01"}
        assert len(res["created"]) == 2
        res = converge(platform, IMAGES.__getitem__, params(image="shop:2"), verify_image=lambda image: {
            "verified": False, "warning": "signature policy not enforced (require: false): unsigned"})
        assert res["signature"] == {"verified": False}
        assert res["warnings"] == ["signature policy not enforced (require: false): unsigned"]
        removed = converge(platform, IMAGES.__getitem__, params(image="shop:2", state="absent"),
                           verify_image=lambda image: pytest.fail("removing a group verifies nothing"))
        assert removed["changed"]
    finally:
        platform.close()
