"""The registry client's pure parts (auth challenges, auth files, pagination
links) and its auth flow against a small local HTTP server that asks for
Bearer or Basic credentials as a registry does."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _oci as oci
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


@pytest.mark.parametrize("header,expected", [
    ('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:web:pull"',
     ("bearer", {"realm": "https://auth.example.com/token", "service": "registry.example.com", "scope": "repository:web:pull"})),
    ('Basic realm="Registry Realm"', ("basic", {"realm": "Registry Realm"})),
    ('Bearer realm="r",scope="repository:a:pull,push"', ("bearer", {"realm": "r", "scope": "repository:a:pull,push"})),
    ('Bearer realm=unquoted, error="invalid_token"', ("bearer", {"realm": "unquoted", "error": "invalid_token"})),
    ('Bearer realm="with \\"quote\\""', ("bearer", {"realm": 'with "quote"'})),
    ("", ("", {})),
])
def test_parse_www_authenticate(header, expected):
    assert oci.parse_www_authenticate(header) == expected


def test_credentials_from_the_first_auth_file_naming_the_registry(tmp_path):
    first, second = tmp_path / "auth.json", tmp_path / "config.json"
    first.write_text(json.dumps({"auths": {"other:5000": {"auth": base64.b64encode(b"x:y").decode()}}}))
    second.write_text(json.dumps({"auths": {"https://reg.example.com": {"auth": base64.b64encode(b"me:p:w").decode()}}}))
    files = [str(tmp_path / "missing.json"), str(first), str(second)]
    assert oci.credentials("reg.example.com", files) == ("me", "p:w")
    assert oci.credentials("other:5000", files) == ("x", "y")
    assert oci.credentials("nowhere", files) is None


def test_auth_files_order():
    env = {"HOME": "/h", "REGISTRY_AUTH_FILE": "/a.json", "XDG_RUNTIME_DIR": "/run/u"}
    assert oci.auth_files(env) == ["/a.json", "/run/u/containers/auth.json", "/h/.config/containers/auth.json",
                                   "/h/.docker/config.json"]


def test_next_link_and_loopback():
    assert oci._next_link('</v2/web/tags/list?last=9&n=2>; rel="next"') == "/v2/web/tags/list?last=9&n=2"
    assert oci._next_link(None) is None
    assert oci.is_loopback("127.0.0.1:5000") and oci.is_loopback("localhost:1") and oci.is_loopback("[::1]:5000")
    assert not oci.is_loopback("registry.example.com:5000")
    assert oci.RegistryClient("127.0.0.1:5000").base == "http://127.0.0.1:5000"
    assert oci.RegistryClient("reg.example.com").base == "https://reg.example.com"


class Registry(BaseHTTPRequestHandler):
    """Answers tags/list after Bearer auth (token from /token with Basic me:secret), paginated by Link."""
    scheme = "bearer"

    def log_message(self, *args):
        pass

    def reply(self, code, doc, headers=()):
        body = json.dumps(doc).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        port = self.server.server_address[1]
        basic = "Basic " + base64.b64encode(b"me:secret").decode()
        if self.path.startswith("/token"):
            assert "scope=repository%3Aweb%3Apull" in self.path
            ok = self.headers.get("Authorization") == basic
            return self.reply(200 if ok else 401, {"token": "T0K"} if ok else {})
        expected = "Bearer T0K" if self.scheme == "bearer" else basic
        if self.headers.get("Authorization") != expected:
            challenge = ('Bearer realm="http://127.0.0.1:%d/token",service="t",scope="repository:web:pull"' % port
                         if self.scheme == "bearer" else 'Basic realm="r"')
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                              [("WWW-Authenticate", challenge)])
        if self.path == "/v2/web/tags/list":
            return self.reply(200, {"tags": ["1", "2"]}, [("Link", '</v2/web/tags/list?last=2>; rel="next"')])
        if self.path == "/v2/web/tags/list?last=2":
            return self.reply(200, {"tags": ["3"]})
        return self.reply(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]})


@pytest.fixture(params=["bearer", "basic"])
def server(request):
    handler = type("H", (Registry,), {"scheme": request.param})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def auth_file(tmp_path, monkeypatch, registry, creds):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {registry: {"auth": base64.b64encode(creds).decode()}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))


def test_auth_flow_and_pagination(server, tmp_path, monkeypatch):
    auth_file(tmp_path, monkeypatch, server, b"me:secret")
    client = oci.RegistryClient(server)
    assert client.tags("web") == ["1", "2", "3"]
    assert client.tags("unknown") == []


def test_wrong_credentials_are_named(server, tmp_path, monkeypatch):
    auth_file(tmp_path, monkeypatch, server, b"me:wrong")
    with pytest.raises(ImmutableInfraError, match="podman login %s" % server):
        oci.RegistryClient(server).tags("web")


def test_unreachable_registry():
    with pytest.raises(ImmutableInfraError, match=r"image registry 127.0.0.1:1 is not reachable \(is it running\?\)"):
        oci.RegistryClient("127.0.0.1:1").tags("web")


def test_plain_http_only_when_certificates_are_not_checked(server, tmp_path, monkeypatch):
    """A registry that does not speak TLS (the server here is plain HTTP, reached as if it were remote):
    with validate_certs false it is spoken to over HTTP, as skopeo --tls-verify=false does; with
    certificate checks on, never."""
    auth_file(tmp_path, monkeypatch, server, b"me:secret")
    insecure = oci.RegistryClient(server, validate_certs=False)
    insecure.base = "https://" + server
    assert insecure.tags("web") == ["1", "2", "3"]
    assert insecure.base == "http://" + server
    strict = oci.RegistryClient(server, validate_certs=True)
    strict.base = "https://" + server
    with pytest.raises(ImmutableInfraError, match="is not reachable"):
        strict.tags("web")
    assert strict.base == "https://" + server
