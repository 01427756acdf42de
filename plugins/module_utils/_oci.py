# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small OCI distribution (registry v2 API) client on the standard library.

Plain HTTP for loopback registries, HTTPS otherwise, over keep-alive
connections (one per thread and host; ansible's open_url builds a TLS context
per request, ~50 ms, which dominated reading a catalog). No proxy: registries
are reached directly. Credentials come from the
containers auth file (the one podman and skopeo use), Basic or Bearer as the
registry asks. Every failure is an ImmutableInfraError naming the registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import http.client
import re
import ssl
import threading
import urllib.parse

from ansible_collections.immutable.infra.plugins.module_utils._registry_auth import access_for, auth_entry, decode_entry
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
MANIFEST_ACCEPT = ", ".join([MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_LIST])
_PARAM_RE = re.compile(r'\s*([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def is_loopback(registry):
    """True for registries on this host's loopback (plain HTTP is acceptable there)."""
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry[1:].split("]")[0]
    return host == "localhost" or host.startswith("127.") or host == "::1"


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_www_authenticate(header):
    """'Bearer realm="https://a/token",service="r",scope="repository:x:pull"' ->
    ('bearer', {'realm': ..., 'service': ..., 'scope': ...})."""
    scheme, _sep, rest = (header or "").strip().partition(" ")
    params = {}
    for match in _PARAM_RE.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


def auth_files(environ=None):
    """The auth files podman/skopeo read, in their order."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(env["REGISTRY_AUTH_FILE"])
    if env.get("XDG_RUNTIME_DIR"):
        files.append(os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    files.append(os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "containers", "auth.json"))
    files.append(os.path.join(home, ".docker", "config.json"))
    return files


def credentials(registry, files=None):
    """(user, password) for the registry from the first auth file naming it, or None."""
    for path in auth_files() if files is None else files:
        try:
            entry = auth_entry(path, registry) if os.path.isfile(path) else None
            found = entry and decode_entry(entry, path, registry)
        except ImmutableInfraError:
            continue
        if found:
            return found
    return None


class _Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


class RegistryClient:
    """The registry v2 API of one registry."""

    def __init__(self, registry, validate_certs=None, timeout=30):
        self.registry = registry
        self.access = access_for(registry)
        tls = not is_loopback(registry) or bool(self.access.ca_file) or validate_certs is True
        self.validate_certs = tls if validate_certs is None else bool(validate_certs)
        self.base = "%s://%s" % ("https" if tls else "http", registry)
        self.timeout = timeout
        self._auth = {}
        self._local = threading.local()
        self._tls = None

    # ------------------------------------------------------------ transport
    def _connection(self, scheme, netloc, fresh=False):
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get((scheme, netloc))
        if conn is not None and not fresh:
            return conn, True
        if conn is not None:
            conn.close()
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context(cafile=self.access.ca_file or None) if self.validate_certs \
                    else ssl._create_unverified_context()  # pylint: disable=protected-access
            conn = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._tls)
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        conns[(scheme, netloc)] = conn
        return conn, False

    def _open(self, method, url, data=None, headers=None, redirects=5):
        parts = urllib.parse.urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        headers = dict(headers or {}, **{"User-Agent": "immutable.infra"})
        conn, reused = self._connection(parts.scheme, parts.netloc)
        while True:
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                if not reused:  # the server closed an idle keep-alive connection: once more on a new one
                    raise ImmutableInfraError("image registry %s is not reachable (is it running?): %s" % (self.registry, exc))
                conn, reused = self._connection(parts.scheme, parts.netloc, fresh=True)
            except (OSError, http.client.HTTPException) as exc:
                self._connection(parts.scheme, parts.netloc, fresh=True)
                if isinstance(exc, ssl.SSLError) and self._plain_http_fallback(url):
                    return self._open(method, "http" + url[len("https"):], data, headers, redirects)
                if isinstance(exc, ssl.SSLCertVerificationError):
                    given = " (given: %s)" % self.access.ca_file if self.access.ca_file else ""
                    raise ImmutableInfraError(
                        "image registry %s: its TLS certificate is not trusted (%s); give registry_ca_file, the CA "
                        "bundle that signed it%s" % (self.registry, exc.verify_message or exc, given))
                raise ImmutableInfraError("image registry %s is not reachable (is it running?): %s" % (self.registry, exc))
        if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and redirects and resp.headers.get("Location"):
            location = urllib.parse.urljoin(url, resp.headers["Location"])
            if urllib.parse.urlsplit(location).netloc != parts.netloc:
                headers.pop("Authorization", None)  # credentials stay with the registry
            return self._open(method, location, None, headers, redirects - 1)
        return _Response(resp.status, resp.headers, body)

    def _plain_http_fallback(self, url):
        """Like skopeo --tls-verify=false: a registry that does not speak TLS is
        spoken to over plain HTTP, only when certificate checks are off."""
        if self.validate_certs or not url.startswith("https://%s/" % self.registry):
            return False
        self.base = "http://" + self.registry
        return True

    def _authorize(self, challenge, key):
        scheme, params = parse_www_authenticate(challenge)
        creds = self.access.credentials() or credentials(self.registry)
        if scheme == "basic":
            if not creds:
                return None
            self._auth[key] = "Basic " + base64.b64encode(("%s:%s" % creds).encode("utf-8")).decode("ascii")
            return self._auth[key]
        if scheme != "bearer" or not params.get("realm"):
            return None
        query = {k: params[k] for k in ("service", "scope") if params.get(k)}
        url = params["realm"] + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {}
        if creds:
            headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % creds).encode("utf-8")).decode("ascii")
        resp = self._open("GET", url, headers=headers)
        if resp.status != 200:
            raise ImmutableInfraError("image registry %s refused the credentials for %s (HTTP %d from %s: %s); %s"
                                      % (self.registry, key, resp.status, params["realm"], _errors(resp.body),
                                         _login_hint(self.registry)))
        doc = json.loads(resp.body or b"{}")
        token = doc.get("token") or doc.get("access_token")
        self._auth[key] = "Bearer " + token if token else None
        return self._auth[key]

    def request(self, method, path, data=None, headers=None, key="registry", ok=(200,)):
        """One API call; returns the response, None for 404, raises otherwise."""
        url = path if path.startswith(("http://", "https://")) else self.base + path
        headers = dict(headers or {})
        for attempt in (0, 1):
            if self._auth.get(key):
                headers["Authorization"] = self._auth[key]
            resp = self._open(method, url, data, headers)
            if resp.status == 401 and attempt == 0 and self._authorize(resp.headers.get("WWW-Authenticate"), key):
                continue
            break
        if resp.status in ok:
            return resp
        if resp.status == 404:
            return None
        if resp.status == 400 and url.startswith("http:") and b"HTTP request to an HTTPS server" in (resp.body or b""):
            raise ImmutableInfraError("image registry %s speaks TLS, not plain HTTP: give registry_ca_file (the CA "
                                      "that signed its certificate) or validate_certs" % self.registry, status=400)
        raise ImmutableInfraError(
            "image registry %s answered HTTP %d to %s %s: %s%s" % (
                self.registry, resp.status, method, urllib.parse.urlsplit(url).path, _errors(resp.body),
                "; " + _login_hint(self.registry) if resp.status in (401, 403) else ""),
            status=resp.status)

    def _paged(self, path, field, key):
        out = []
        while path:
            resp = self.request("GET", path, key=key)
            if resp is None:
                return out
            out.extend(json.loads(resp.body or b"{}").get(field) or [])
            path = _next_link(resp.headers.get("Link"))
        return out

    # ------------------------------------------------------------ API
    def catalog(self):
        """Every repository name of the registry."""
        return self._paged("/v2/_catalog?n=1000", "repositories", "catalog")

    def tags(self, name):
        """The repository's tags; [] for an unknown repository."""
        return self._paged("/v2/%s/tags/list" % name, "tags", name)

    def manifest(self, name, ref):
        """(digest, manifest dict) of a tag or digest, or None when absent."""
        resp = self.request("GET", "/v2/%s/manifests/%s" % (name, ref), headers={"Accept": MANIFEST_ACCEPT}, key=name)
        if resp is None:
            return None
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(resp.body), json.loads(resp.body)

    def descriptor(self, name, ref):
        """The manifest's descriptor {mediaType, digest, size} as the registry serves it, or None."""
        resp = self.request("HEAD", "/v2/%s/manifests/%s" % (name, ref), headers={"Accept": MANIFEST_ACCEPT}, key=name)
        if resp is None:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            found = self.manifest(name, ref)
            return None if found is None else {"mediaType": found[1].get("mediaType", MEDIA_OCI_MANIFEST),
                                               "digest": found[0], "size": len(canonical_json(found[1]))}
        return {"mediaType": resp.headers.get("Content-Type", "").split(";")[0].strip(),
                "digest": digest, "size": int(resp.headers.get("Content-Length") or 0)}

    def head(self, name, ref):
        """The manifest digest of a tag (or digest), or None when absent."""
        found = self.descriptor(name, ref)
        return None if found is None else found["digest"]

    def blob(self, name, digest):
        resp = self.request("GET", "/v2/%s/blobs/%s" % (name, digest), key=name)
        if resp is None:
            raise ImmutableInfraError("blob %s of %s/%s is missing from the registry" % (digest, self.registry, name))
        return resp.body

    def put_blob(self, name, data, media_type="application/octet-stream"):
        """Upload a blob (monolithic) unless present; return its descriptor."""
        digest = sha256_digest(data)
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if self.request("HEAD", "/v2/%s/blobs/%s" % (name, digest), key=name) is not None:
            return desc
        resp = self.request("POST", "/v2/%s/blobs/uploads/" % name, data=b"", key=name, ok=(202,))
        location = urllib.parse.urljoin(self.base + "/", resp.headers.get("Location"))
        sep = "&" if "?" in location else "?"
        self.request("PUT", location + sep + urllib.parse.urlencode({"digest": digest}), data=data,
                     headers={"Content-Type": "application/octet-stream"}, key=name, ok=(201,))
        return desc

    def put_manifest(self, name, tag, manifest):
        """PUT a manifest under a tag (or its digest); returns the digest."""
        body = canonical_json(manifest)
        resp = self.request("PUT", "/v2/%s/manifests/%s" % (name, tag), data=body,
                            headers={"Content-Type": manifest.get("mediaType", MEDIA_OCI_MANIFEST)}, key=name, ok=(201,))
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(body)

    def delete_manifest(self, name, digest):
        """Delete a manifest (and every tag on it); False when it was already gone."""
        return self.request("DELETE", "/v2/%s/manifests/%s" % (name, digest), key=name, ok=(200, 202)) is not None

    def image_config(self, name, ref):
        """(digest, manifest, config dict) of an image version, or None. An index
        (multi-platform) resolves to its linux/amd64 entry, else its first."""
        found = self.manifest(name, ref)
        if found is None:
            return None
        digest, manifest = found
        if manifest.get("manifests"):
            entries = manifest["manifests"]
            pick = next((m for m in entries if (m.get("platform") or {}).get("architecture") == "amd64"), entries[0])
            inner = self.manifest(name, pick["digest"])
            if inner is None:
                return None
            manifest = inner[1]
        config = (manifest.get("config") or {}).get("digest")
        return digest, manifest, (json.loads(self.blob(name, config)) if config else {})


def _login_hint(registry):
    return ("give registry_username and registry_password (or a token), or registry_auth_file, or log in with "
            "`podman login %s`; an expired token or password must be renewed" % registry)


def canonical_json(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _errors(body):
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        return "; ".join("%s %s" % (e.get("code", ""), e.get("message", "")) for e in errors) or body.decode("utf-8", "replace")[:200]
    except (ValueError, AttributeError):
        return (body or b"").decode("utf-8", "replace")[:200]


def _next_link(link):
    """The path of a Link: <...>; rel="next" header, or None."""
    match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", link or "")
    return match.group(1) if match else None
