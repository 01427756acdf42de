"""A shared registry with TLS and credentials: the project's registry role started with htpasswd
authentication (bcrypt) and TLS from a test CA on a free loopback port. The right credentials (as a
username/password or as an auth file) read and write the catalog; a wrong password, a missing CA and an
expired token each fail with an error naming the registry and what to do, and change nothing; the
password never shows in ansible-playbook's output, even at -vvv."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import TOP, _collection_import_path, free_port, push_test_image

USER, PASSWORD = "ci-robot", "S3cret-%s" % uuid.uuid4().hex[:12]


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca_and_server_cert(d):
    """A test CA and a server certificate for 127.0.0.1 signed by it (PEM files in d)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=immutable.infra test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=d)
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "san.cnf", "-out", "server.crt", cwd=d)
    return {k: os.path.join(d, k + ".crt") for k in ("ca", "server")} | {"key": os.path.join(d, "server.key")}


def bcrypt_htpasswd(path, users):
    """An htpasswd file with bcrypt entries (docker-registry accepts no other), from libcrypt."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt    # Python 3.11's (libxcrypt has bcrypt); apache2-utils' `htpasswd -B` does the same
    with open(path, "w") as f:
        for user, password in users.items():
            f.write("%s:%s\n" % (user, crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))))


@pytest.fixture(scope="module")
def secure_registry(ansible, workdir):
    d = os.path.join(workdir, "secure-registry-%s" % uuid.uuid4().hex[:6])
    os.makedirs(d)
    pki = make_ca_and_server_cert(d)
    htpasswd = os.path.join(d, "htpasswd")
    bcrypt_htpasswd(htpasswd, {USER: PASSWORD})
    port = free_port()
    rvars = {"registry_port": port, "registry_debug_port": free_port(), "registry_state_dir": os.path.join(d, "state"),
             "registry_tls_certificate": pki["server"], "registry_tls_key": pki["key"],
             "registry_htpasswd_file": htpasswd}
    run = ansible.playbook(os.path.join(TOP, "playbooks", "registry.yml"), rvars)
    assert run.rc == 0, run.stderr
    try:
        yield {"address": "127.0.0.1:%d" % port, "ca": pki["ca"], "dir": d, "vars": rvars}
    finally:
        ansible.playbook(os.path.join(TOP, "playbooks", "registry.yml"), dict(rvars, registry_state="stopped"))


def access(reg, **kw):
    """Register credentials for the registry in this (the test's) process, as run_module does in a module's."""
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _registry_auth
    return _registry_auth.use(_registry_auth.RegistryAccess(reg["address"], **kw))


def tags(reg, name):
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._oci import RegistryClient
    access(reg, username=USER, password=PASSWORD, ca_file=reg["ca"])
    return sorted(RegistryClient(reg["address"]).tags(name))


def auth_file(path, registry, user, password=None, identitytoken=None):
    entry = {"identitytoken": identitytoken} if identitytoken else \
        {"auth": base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}
    with open(path, "w") as f:
        json.dump({"auths": {registry: entry}}, f)
    os.chmod(path, 0o600)
    return path


def playbook(env, workdir, tasks, verbose=True):
    """ansible-playbook (default callback, -vvv) on a play of tasks; returns (rc, everything it printed)."""
    path = os.path.join(workdir, "play-%s.yml" % uuid.uuid4().hex[:8])
    with open(path, "w") as f:
        json.dump([{"name": "Registry auth", "hosts": "localhost", "gather_facts": False, "tasks": tasks}], f)
    proc = subprocess.run(["ansible-playbook", path] + (["-vvv"] if verbose else []), env=env, cwd=TOP,
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def version(secure_registry):
    """A test version pushed with credentials and the CA (push_test_image through the registered access)."""
    name = "authapp%s" % uuid.uuid4().hex[:6]
    access(secure_registry, username=USER, password=PASSWORD, ca_file=secure_registry["ca"])
    push_test_image(secure_registry, name, "1")
    return name


def test_right_credentials_read_and_write(env, workdir, secure_registry, version):
    reg = secure_registry
    opts = {"registry": reg["address"], "registry_ca_file": reg["ca"], "registry_username": USER,
            "registry_password": PASSWORD}
    rc, out = playbook(env, workdir, [
        {"name": "Read the version", "immutable.infra.image_info": dict(opts, name=version, version="1"),
         "register": "info"},
        {"name": "Show it", "ansible.builtin.debug": {"var": "info"}},
        {"name": "Check it", "ansible.builtin.assert": {"that": ["info.versions | length == 1",
                                                                 "info.versions[0].tag == '1'"]}},
        {"name": "Move the dev channel",
         "immutable.infra.image_channel": dict(opts, name=version, channel="dev", version="1")},
    ])
    assert rc == 0, out[-3000:]
    assert PASSWORD not in out and base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode() not in out
    assert "channel.dev" in tags(reg, version)


def test_auth_file_form_and_env_password(env, workdir, secure_registry, version):
    reg = secure_registry
    path = auth_file(os.path.join(workdir, "auth-%s.json" % uuid.uuid4().hex[:6]), reg["address"], USER, PASSWORD)
    rc, out = playbook(env, workdir, [{"name": "Read with an auth file", "immutable.infra.image_info": {
        "registry": reg["address"], "registry_ca_file": reg["ca"], "registry_auth_file": path, "name": version,
        "version": "1"}}])
    assert rc == 0, out[-3000:]
    assert PASSWORD not in out
    # podman's own default: REGISTRY_AUTH_FILE in the environment, no option.
    rc, out = playbook(dict(env, REGISTRY_AUTH_FILE=path, IMMUTABLE_INFRA_REGISTRY_CA_FILE=reg["ca"]), workdir,
                       [{"name": "Read with REGISTRY_AUTH_FILE", "immutable.infra.image_info": {
                           "registry": reg["address"], "name": version, "version": "1"}}])
    assert rc == 0, out[-3000:]
    # The password from the environment (no_log fallback).
    rc, out = playbook(dict(env, IMMUTABLE_INFRA_REGISTRY_USERNAME=USER, IMMUTABLE_INFRA_REGISTRY_PASSWORD=PASSWORD,
                            IMMUTABLE_INFRA_REGISTRY_CA_FILE=reg["ca"]), workdir,
                       [{"name": "Read with env credentials", "immutable.infra.image_info": {
                           "registry": reg["address"], "name": version, "version": "1"}}])
    assert rc == 0, out[-3000:]
    assert PASSWORD not in out


def test_skopeo_and_podman_get_the_credentials_by_file(secure_registry, version):
    """The catalog's skopeo read and podman pull run for real with --authfile/--cert-dir (no secret in argv)."""
    reg = secure_registry
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils._catalog import Catalog
    acc = access(reg, username=USER, password=PASSWORD, ca_file=reg["ca"])
    cat = Catalog(reg["address"])
    assert cat.validate_certs is True
    argv = cat._access_args
    assert not [a for a in argv if PASSWORD in a]
    assert argv[0] == "--tls-verify=true" and any(a.startswith("--authfile=") for a in argv)
    authfile = acc.authfile()
    assert oct(os.stat(authfile).st_mode & 0o777) == "0o600" and oct(os.stat(os.path.dirname(authfile)).st_mode & 0o777) == "0o700"
    ref = "%s/%s:1" % (reg["address"], version)
    assert cat.config(ref)["config"]["Labels"]["org.opencontainers.image.version"] == "1"
    cat.pull(ref)
    subprocess.run(["podman", "rmi", "-f", ref], capture_output=True, check=False)
    tmp = os.path.dirname(authfile)
    acc.close()
    assert not os.path.exists(tmp)


@pytest.mark.parametrize("case", ["wrong password", "missing CA", "missing CA on loopback", "expired token"])
def test_refusals_are_clear_and_change_nothing(env, workdir, secure_registry, version, case):
    reg = secure_registry
    before = tags(reg, version)
    opts = {"registry": reg["address"], "name": version, "channel": "staging", "version": "1"}
    if case == "wrong password":
        opts.update(registry_ca_file=reg["ca"], registry_username=USER, registry_password="not-" + PASSWORD)
        expected = ["image registry %s" % reg["address"], "HTTP 401", "registry_password"]
    elif case == "missing CA":
        opts.update(registry_username=USER, registry_password=PASSWORD, validate_certs=True)
        expected = ["image registry %s: its TLS certificate is not trusted" % reg["address"], "registry_ca_file"]
    elif case == "missing CA on loopback":      # the loopback default is plain HTTP: the registry answers 400
        opts.update(registry_username=USER, registry_password=PASSWORD)
        expected = ["image registry %s speaks TLS, not plain HTTP: give registry_ca_file" % reg["address"]]
    else:
        # A token the registry no longer accepts (an expired identity token in an auth file, as `podman login`
        # writes for token logins). With htpasswd authentication the registry refuses it like a wrong password.
        path = auth_file(os.path.join(workdir, "expired-%s.json" % uuid.uuid4().hex[:6]), reg["address"], None,
                         identitytoken="expired-" + PASSWORD)
        opts.update(registry_ca_file=reg["ca"], registry_auth_file=path)
        expected = ["image registry %s" % reg["address"], "HTTP 401", "expired token"]
    rc, out = playbook(env, workdir, [{"name": "Move the staging channel", "immutable.infra.image_channel": opts}])
    assert rc != 0, out[-3000:]
    for text in expected:
        assert text in out, (text, out[-3000:])
    assert PASSWORD not in out.replace("not-" + PASSWORD, "").replace("expired-" + PASSWORD, "")
    assert tags(reg, version) == before


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_ecr_token_from_the_aws_credentials(moto):
    """ECR's login comes from ecr get_authorization_token (moto's token is base64 of AWS:<account>-auth-token),
    and is written to the private auth file podman and skopeo read."""
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _registry_auth
    acc = _registry_auth.RegistryAccess(ECR, aws_options=dict(moto["options"], region=None))
    assert acc.ecr
    assert acc.credentials() == ("AWS", "123456789012-auth-token")
    with open(acc.authfile()) as f:
        assert json.load(f) == {"auths": {ECR: {"auth": base64.b64encode(b"AWS:123456789012-auth-token").decode()}}}
    assert "123456789012-auth-token" in acc.secrets()
    acc.close()


def test_ecr_without_aws_credentials_says_what_to_do(moto, monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _collection_import_path()
    from ansible_collections.immutable.infra.plugins.module_utils import _registry_auth
    from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
    acc = _registry_auth.RegistryAccess(ECR, aws_options={"endpoint_url": moto["endpoint_url"]})
    with pytest.raises(ImmutableInfraError, match="AWS credentials missing for region us-east-1") as err:
        acc.credentials()
    assert "access_key" in err.value.msg


# ------------------------------------------------------------------ token authentication (auth: token)
def _b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """A small token service (docker's token protocol) on loopback: Basic credentials in, a JWT bearer token
    signed by a test key (x5c: its certificate, the registry's rootcertbundle) out. A user may also log in with
    an identity token: a JWT of the same key whose exp the service checks, as a real token service would."""

    def __init__(self, d, service="immutable-infra-test", issuer="immutable-infra-test-issuer"):
        from cryptography.hazmat.primitives import serialization
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=token signer",
                 "-keyout", "token.key", "-out", "token.crt", cwd=d)
        with open(os.path.join(d, "token.key"), "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        with open(os.path.join(d, "token.crt"), "rb") as f:
            from cryptography import x509
            self.cert_der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
        self.cert, self.service, self.issuer = os.path.join(d, "token.crt"), service, issuer
        self.port = free_port()
        self.realm = "http://127.0.0.1:%d/token" % self.port

    def sign(self, claims):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing = _b64u(json.dumps(header).encode()) + "." + _b64u(json.dumps(claims).encode())
        return signing + "." + _b64u(self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256()))

    def identity_token(self, lifetime):
        now = int(time.time())
        return self.sign({"iss": self.issuer, "sub": USER, "aud": "refresh", "iat": now - 3600, "exp": now + lifetime})

    def valid_identity(self, token):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        try:
            head, body, sig = token.split(".")
            self.key.public_key().verify(base64.urlsafe_b64decode(sig + "=="), ("%s.%s" % (head, body)).encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        except (ValueError, InvalidSignature):
            return "invalid token"
        return None if claims["exp"] > time.time() else "token expired"

    def answer(self, authorization, query):
        user, _sep, password = base64.b64decode((authorization or "Basic ").split(" ", 1)[1] or b"").decode().partition(":")
        refused = None if (user, password) == (USER, PASSWORD) else \
            self.valid_identity(password) if user == "<token>" else "wrong user or password"
        if refused:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": refused}]}
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.rsplit(":", 2) if scope.count(":") >= 2 else (scope, "", "")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = self.sign({"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                           "iat": now, "jti": uuid.uuid4().hex, "access": access})
        return 200, {"token": token, "access_token": token, "expires_in": 300}

    def start(self):
        import http.server
        import threading
        import urllib.parse
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):       # noqa: N802 (http.server's name)
                status, doc = service.answer(self.headers.get("Authorization"),
                                             urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self


@pytest.fixture(scope="module")
def token_registry(ansible, workdir):
    d = os.path.join(workdir, "token-registry-%s" % uuid.uuid4().hex[:6])
    os.makedirs(d)
    pki = make_ca_and_server_cert(d)
    tokens = TokenService(d).start()
    port = free_port()
    rvars = {"registry_port": port, "registry_debug_port": free_port(), "registry_state_dir": os.path.join(d, "state"),
             "registry_tls_certificate": pki["server"], "registry_tls_key": pki["key"],
             "registry_token_auth": {"realm": tokens.realm, "service": tokens.service, "issuer": tokens.issuer,
                                     "rootcertbundle": tokens.cert}}
    run = ansible.playbook(os.path.join(TOP, "playbooks", "registry.yml"), rvars)
    assert run.rc == 0, run.stderr
    try:
        yield {"address": "127.0.0.1:%d" % port, "ca": pki["ca"], "tokens": tokens}
    finally:
        ansible.playbook(os.path.join(TOP, "playbooks", "registry.yml"), dict(rvars, registry_state="stopped"))
        tokens.server.shutdown()


def test_token_auth_and_a_really_expired_token(env, workdir, token_registry):
    """docker-registry with `auth: token`: bearer tokens from the token service; an identity token whose exp has
    passed is refused by the token service, with an error naming the registry, and nothing changes."""
    reg = token_registry
    import ssl
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as anonymous:      # the registry really asks for a bearer token
        urllib.request.urlopen("https://%s/v2/" % reg["address"], timeout=10,
                               context=ssl.create_default_context(cafile=reg["ca"]))
    assert anonymous.value.code == 401
    assert anonymous.value.headers["WWW-Authenticate"].startswith('Bearer realm="%s"' % reg["tokens"].realm)
    name = "tokapp%s" % uuid.uuid4().hex[:6]
    access(reg, username=USER, password=PASSWORD, ca_file=reg["ca"])
    push_test_image(reg, name, "1")
    before = tags(reg, name)
    good = auth_file(os.path.join(workdir, "tok-%s.json" % uuid.uuid4().hex[:6]), reg["address"], None,
                     identitytoken=reg["tokens"].identity_token(3600))
    expired = auth_file(os.path.join(workdir, "tok-%s.json" % uuid.uuid4().hex[:6]), reg["address"], None,
                        identitytoken=reg["tokens"].identity_token(-60))
    base = {"registry": reg["address"], "registry_ca_file": reg["ca"], "name": name}
    rc, out = playbook(env, workdir, [
        {"name": "Read with a password", "immutable.infra.image_info": dict(base, registry_username=USER,
                                                                            registry_password=PASSWORD)},
        {"name": "Read with a valid identity token", "immutable.infra.image_info": dict(base, registry_auth_file=good)},
    ])
    assert rc == 0, out[-3000:]
    assert PASSWORD not in out
    rc, out = playbook(env, workdir, [{"name": "Move a channel with an expired token", "immutable.infra.image_channel":
                                       dict(base, registry_auth_file=expired, channel="dev", version="1")}])
    assert rc != 0
    for text in ("image registry %s refused the credentials" % reg["address"], "HTTP 401", "token expired",
                 "an expired token or password must be renewed"):
        assert text in out, (text, out[-3000:])
    assert tags(reg, name) == before
