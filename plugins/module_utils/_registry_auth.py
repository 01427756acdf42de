# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials and TLS trust for a shared registry (Harbor, ECR, GitLab's, any OCI registry).

A module run resolves its registry_* options once (`from_params`, called by
_module.run_module) into a RegistryAccess that is registered for the registry's
address (`use`). Every client of that address then picks it up by address
(`access_for`): _oci.RegistryClient for the API (Basic/Bearer credentials, a CA
bundle), and skopeo/podman through `tool_args` (`--authfile` / `--cert-dir`).
Secrets never reach argv: a username/password (or ECR token) is written to a
0600 auth.json in a private 0700 temporary directory that `close_all` removes
(run_module calls it before the module exits; atexit is the backstop).

With no registry_* option the access is empty and every client behaves as it
always did (plain HTTP on loopback, the podman/skopeo auth files)."""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import shutil
import tempfile

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

ECR_HOST_RE = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?(?::443)?$")

_ACCESS = {}


def encode_auth(user, password):
    return base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")


def auth_entry(path, registry):
    """The auths entry of an auth.json (containers-auth.json format) for the registry:
    {"auth": ..., "identitytoken": ...} or None. Keys may carry a scheme (Docker's config.json)."""
    try:
        with open(path) as f:
            doc = json.load(f) or {}
    except OSError as exc:
        raise ImmutableInfraError("registry auth file %s cannot be read: %s" % (path, exc.strerror))
    except ValueError as exc:
        raise ImmutableInfraError("registry auth file %s is not JSON (%s): write it with `podman login "
                                  "--authfile %s %s`" % (path, exc, path, registry))
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (registry, "https://" + registry, "http://" + registry, "https://" + registry + "/v2/"):
        if isinstance(auths.get(key), dict):
            return auths[key]
    return None


def decode_entry(entry, path, registry):
    """(user, password) of an auths entry; an identitytoken gives ("<token>", token) as podman does."""
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise ImmutableInfraError("registry auth file %s: the auth of %s is not base64 of user:password; "
                                      "log in again with `podman login --authfile %s %s`" % (path, registry, path, registry))
        return user, password
    if entry.get("identitytoken"):
        return "<token>", entry["identitytoken"]
    return None


def write_auth_file(directory, registry, user, password):
    """A containers-auth.json holding only this registry's credentials, mode 0600."""
    path = os.path.join(directory, "auth.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {registry: {"auth": encode_auth(user, password)}}}, f)
    return path


def ecr_login(registry, aws_options=None):
    """(user, password) of an ECR registry from the AWS credentials (ecr get_authorization_token)."""
    match = ECR_HOST_RE.match(registry)
    if not match:
        raise ImmutableInfraError("registry %s is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com): "
                                  "set registry_ecr false or give registry_username/registry_password" % registry)
    from ansible_collections.immutable.infra.plugins.module_utils import _aws
    options = dict(aws_options or {})
    session = _aws.Session(options, region=options.get("region") or match.group(2))
    session.check_credentials()
    what = "ECR get_authorization_token for registry %s" % registry
    data = session.call("ecr", "get_authorization_token", what=what, registryIds=[match.group(1)])
    entries = data.get("authorizationData") or []
    if not entries or not entries[0].get("authorizationToken"):
        raise ImmutableInfraError("%s returned no token" % what)
    user, sep, password = base64.b64decode(entries[0]["authorizationToken"]).decode("utf-8").partition(":")
    if not sep:
        raise ImmutableInfraError("%s returned a token that is not base64 of user:password" % what)
    return user, password


class RegistryAccess:
    """How to reach one registry: credentials (or none) and the CA bundle to trust (or the system's)."""

    def __init__(self, registry, username=None, password=None, auth_file=None, ca_file=None, ecr=None,
                 aws_options=None):
        self.registry = registry
        self.username, self.password = username, password
        self.auth_file, self.ca_file = auth_file, ca_file
        self.ecr = bool(ECR_HOST_RE.match(registry or "")) if ecr is None else bool(ecr)
        self.aws_options = aws_options or {}
        self._creds = None
        self._tmp = None
        self._files = {}
        if (username is None) != (password is None):
            raise ImmutableInfraError("registry %s: give registry_username and registry_password together "
                                      "(or a registry_auth_file)" % registry)
        if auth_file and not os.path.isfile(auth_file):
            raise ImmutableInfraError("registry auth file %s does not exist: create it with `podman login "
                                      "--authfile %s %s`" % (auth_file, auth_file, registry))
        if ca_file and not os.path.isfile(ca_file):
            raise ImmutableInfraError("registry CA file %s does not exist: give the PEM CA bundle that signed "
                                      "the certificate of %s" % (ca_file, registry))

    @property
    def configured(self):
        return bool(self.username is not None or self.auth_file or self.ca_file or self.ecr)

    def credentials(self):
        """(user, password) given to this run, or None (then the default auth files apply)."""
        if self._creds is None:
            if self.username is not None:
                self._creds = (self.username, self.password)
            elif self.ecr:
                self._creds = ecr_login(self.registry, self.aws_options)
            elif self.auth_file:
                entry = auth_entry(self.auth_file, self.registry)      # no entry: anonymous, as podman
                self._creds = (entry and decode_entry(entry, self.auth_file, self.registry)) or ()
            else:
                self._creds = ()
        return self._creds or None

    def secrets(self):
        """Values to keep out of every output."""
        creds = self.credentials() if self.username is not None or self.ecr else None
        return [creds[1], encode_auth(*creds)] if creds else []

    def _private_dir(self):
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="immutable-infra-registry-")      # mode 0700
        return self._tmp

    def authfile(self):
        """The auth file podman/skopeo should read for this registry, or None (their defaults)."""
        if self.username is None and not self.ecr:
            return self.auth_file or None
        if "auth" not in self._files:
            user, password = self.credentials()
            self._files["auth"] = write_auth_file(self._private_dir(), self.registry, user, password)
        return self._files["auth"]

    def cert_dir(self):
        """A directory holding the CA bundle as ca.crt (podman/skopeo --cert-dir), or None."""
        if not self.ca_file:
            return None
        if "certs" not in self._files:
            certs = os.path.join(self._private_dir(), "certs")
            os.mkdir(certs, 0o700)
            shutil.copyfile(self.ca_file, os.path.join(certs, "ca.crt"))
            self._files["certs"] = certs
        return self._files["certs"]

    def tool_args(self, prefix=""):
        """--authfile/--cert-dir flags for skopeo or podman (prefix "src-"/"dest-" for skopeo copy)."""
        args = []
        authfile = self.authfile()
        if authfile:
            args.append("--%sauthfile=%s" % (prefix, authfile))
        cert_dir = self.cert_dir()
        if cert_dir:
            args.append("--%scert-dir=%s" % (prefix, cert_dir))
        return args

    def close(self):
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp, self._files = None, {}


def use(access):
    """Register the access for its registry address (this process); returns it."""
    old = _ACCESS.get(access.registry)
    if old is not None and old is not access:
        old.close()
    _ACCESS[access.registry] = access
    return access


def access_for(registry):
    """The access registered for the address, else an empty one (the default behaviour)."""
    return _ACCESS.get(registry) or RegistryAccess(registry)


def tool_args(registry, prefix=""):
    return access_for(registry).tool_args(prefix)


def from_params(params):
    """The RegistryAccess of a module's registry_* options (REGISTRY_ARGS), or None without a registry."""
    if not params.get("registry"):
        return None
    return RegistryAccess(params["registry"], username=params.get("registry_username"),
                          password=params.get("registry_password"), auth_file=params.get("registry_auth_file"),
                          ca_file=params.get("registry_ca_file"), ecr=params.get("registry_ecr"),
                          aws_options=params.get("registry_aws_options"))


class using:
    """`with using(args):` the registry_* options of a task's args in effect for controller-side
    reads (action plugins), removed afterwards. Options that fail to resolve are left to the module."""

    def __init__(self, args):
        self.access = None
        try:
            self.access = from_params(dict({"registry": "127.0.0.1:5000"}, **(args or {})))
        except (ImmutableInfraError, TypeError, ValueError):
            pass

    def __enter__(self):
        if self.access is not None:
            use(self.access)
        return self.access

    def __exit__(self, *exc):
        if self.access is not None:
            self.access.close()
            if _ACCESS.get(self.access.registry) is self.access:
                del _ACCESS[self.access.registry]
        return False


def close_all():
    for access in list(_ACCESS.values()):
        access.close()
    _ACCESS.clear()


atexit.register(close_all)
