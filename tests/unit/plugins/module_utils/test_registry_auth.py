"""Registry credentials: auth.json parsing and writing, the skopeo/podman argv (never a secret in it),
the temporary files' modes and removal, and the default (no option) behaviour left exactly as before."""
from __future__ import annotations

import base64
import json
import os

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _registry_auth as ra
from ansible_collections.immutable.infra.plugins.module_utils._catalog import Catalog
from ansible_collections.immutable.infra.plugins.module_utils._oci import RegistryClient, credentials
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

REG = "registry.example.com:5443"


@pytest.fixture(autouse=True)
def clean():
    yield
    ra.close_all()


def write(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f) if not isinstance(doc, str) else f.write(doc)
    return str(path)


def test_auth_file_entries_in_podman_and_docker_forms(tmp_path):
    auth = base64.b64encode(b"robot$ci:pa:ss").decode()
    path = write(tmp_path / "auth.json", {"auths": {"https://" + REG: {"auth": auth}, "other": {"auth": "x"}}})
    assert ra.RegistryAccess(REG, auth_file=path).credentials() == ("robot$ci", "pa:ss")
    path = write(tmp_path / "token.json", {"auths": {REG: {"identitytoken": "tok"}}})
    assert ra.RegistryAccess(REG, auth_file=path).credentials() == ("<token>", "tok")
    # No entry for this registry: anonymous, as podman.
    assert ra.RegistryAccess("elsewhere:1", auth_file=path).credentials() is None
    # The default auth files (podman's order) still answer when no option is given.
    assert credentials(REG, [str(tmp_path / "missing.json"), str(tmp_path / "auth.json")]) == ("robot$ci", "pa:ss")


@pytest.mark.parametrize("doc, message", [
    ("{not json", "is not JSON"),
    ({"auths": {REG: {"auth": base64.b64encode(b"nocolon").decode()}}}, "is not base64 of user:password"),
])
def test_bad_auth_files_name_the_file_and_what_to_do(tmp_path, doc, message):
    path = write(tmp_path / "auth.json", doc)
    with pytest.raises(ImmutableInfraError, match=message) as err:
        ra.RegistryAccess(REG, auth_file=path).credentials()
    assert path in err.value.msg and "podman login --authfile" in err.value.msg


@pytest.mark.parametrize("kw, message", [
    ({"username": "u"}, "give registry_username and registry_password together"),
    ({"password": "p"}, "give registry_username and registry_password together"),
    ({"auth_file": "/nonexistent/auth.json"}, "registry auth file /nonexistent/auth.json does not exist"),
    ({"ca_file": "/nonexistent/ca.crt"}, "registry CA file /nonexistent/ca.crt does not exist"),
])
def test_bad_options(kw, message):
    with pytest.raises(ImmutableInfraError, match=message):
        ra.RegistryAccess(REG, **kw)


def test_argv_carries_files_never_secrets(tmp_path):
    ca = write(tmp_path / "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    acc = ra.use(ra.RegistryAccess(REG, username="robot", password="hunter2-secret", ca_file=ca))
    cat = Catalog(REG)
    argv = cat._access_args
    assert not [a for a in argv if "hunter2" in a or base64.b64encode(b"robot:hunter2-secret").decode() in a]
    authfile = acc.authfile()
    assert argv == ["--tls-verify=true", "--authfile=" + authfile, "--cert-dir=" + acc.cert_dir()]
    assert acc.tool_args("src-") == ["--src-authfile=" + authfile, "--src-cert-dir=" + acc.cert_dir()]
    assert os.stat(authfile).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(authfile)).st_mode & 0o777 == 0o700
    with open(authfile) as f:
        assert json.load(f) == {"auths": {REG: {"auth": base64.b64encode(b"robot:hunter2-secret").decode()}}}
    with open(os.path.join(acc.cert_dir(), "ca.crt")) as f:
        assert f.read().startswith("-----BEGIN CERTIFICATE-----")
    assert set(acc.secrets()) == {"hunter2-secret", base64.b64encode(b"robot:hunter2-secret").decode()}
    tmp = os.path.dirname(authfile)
    ra.close_all()
    assert not os.path.exists(tmp)


def test_a_given_auth_file_is_passed_as_is(tmp_path):
    path = write(tmp_path / "auth.json", {"auths": {REG: {"auth": base64.b64encode(b"a:b").decode()}}})
    ra.use(ra.RegistryAccess(REG, auth_file=path))
    assert Catalog(REG)._access_args == ["--tls-verify=true", "--authfile=" + path]


def test_no_option_changes_nothing():
    """The plain-HTTP loopback default: no flags, plain HTTP, no TLS verification."""
    assert not ra.access_for("127.0.0.1:5000").configured
    cat = Catalog("127.0.0.1:5000")
    assert cat._access_args == ["--tls-verify=false"] and cat.validate_certs is False
    client = RegistryClient("127.0.0.1:5000")
    assert client.base == "http://127.0.0.1:5000" and client.validate_certs is False
    assert RegistryClient(REG).base == "https://" + REG


def test_a_ca_file_means_tls_even_on_loopback(tmp_path):
    ca = write(tmp_path / "ca.pem", "x")
    ra.use(ra.RegistryAccess("127.0.0.1:5443", ca_file=ca))
    client = RegistryClient("127.0.0.1:5443")
    assert client.base == "https://127.0.0.1:5443" and client.validate_certs is True
    assert Catalog("127.0.0.1:5443").validate_certs is True


def test_ecr_hosts_are_recognised():
    assert ra.RegistryAccess("123456789012.dkr.ecr.eu-west-1.amazonaws.com").ecr
    assert not ra.RegistryAccess("123456789012.dkr.ecr.eu-west-1.amazonaws.com", ecr=False).ecr
    assert not ra.RegistryAccess(REG).ecr
    with pytest.raises(ImmutableInfraError, match="is not an ECR registry"):
        ra.ecr_login(REG)


def test_using_scopes_an_action_s_access(tmp_path):
    with ra.using({"registry": REG, "registry_username": "u", "registry_password": "p"}) as acc:
        assert ra.access_for(REG) is acc
        tmp = os.path.dirname(acc.authfile())
    assert not ra.access_for(REG).configured and not os.path.exists(tmp)
    with ra.using({"registry": REG, "registry_username": "u"}) as acc:      # left to the module to report
        assert acc is None
