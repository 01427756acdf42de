# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image catalog: image versions kept in an OCI registry.

The registry is the system of record. Each tag of a repository is one image
version (tags of lifecycle records excepted, see _lifecycle); its immutable
facts ride as OCI labels in the image config. Tags and versions are read with
the registry API (_oci, keep-alive connections: reading 100 versions took
2.5 s with one skopeo process each), other reads go through skopeo (no local
pull), writes through podman push.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.immutable.infra.plugins.module_utils._names import label
from ansible_collections.immutable.infra.plugins.module_utils._oci import RegistryClient, is_loopback
from ansible_collections.immutable.infra.plugins.module_utils._registry_auth import access_for
from ansible_collections.immutable.infra.plugins.module_utils._records import is_record_tag
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

LABEL_VERSION = "org.opencontainers.image.version"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_BASE_DIGEST = "org.opencontainers.image.base.digest"
LABEL_BASE_NAME = "org.opencontainers.image.base.name"
LABEL_RECIPE = label("recipe")
LABEL_FINGERPRINT = label("fingerprint")
LABEL_BAKE_ID = label("bake-id")
# The port the image's service listens on, set by the recipe. It wins over
# EXPOSE; an image with exactly one exposed TCP port needs no label.
LABEL_PORT = label("port")
DEFAULT_PORT = 8080
# What the image is: "container" (absent = container) or "vm" (a VM image: a
# qcow2 disk with its kernel and initrd, see _vm_image).
LABEL_FORMAT = label("format")
# An AMI version carries one label per region it was baked to or copied into: infra.immutable.ami.<region>=ami-...
LABEL_AMI_PREFIX = label("ami") + "."

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_NOT_FOUND = ("manifest unknown", "404 (Not Found)", "name unknown", "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "network is unreachable", "server gave HTTP response")


def parse_reference(ref, default_registry=None):
    """Split 'registry/name[:tag][@digest]' into a dict.

    A first path component with a dot, a colon or 'localhost' is a registry;
    otherwise default_registry applies. Raises ImmutableInfraError on junk.
    """
    if not ref or not isinstance(ref, str) or ref.strip() != ref or " " in ref:
        raise ImmutableInfraError("invalid image reference %r" % (ref,))
    rest, digest = ref, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ImmutableInfraError("invalid digest %r in image reference %r" % (digest, ref))
    registry = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, rest = first, remainder
    tag = None
    if ":" in rest.rsplit("/", 1)[-1]:
        rest, tag = rest.rsplit(":", 1)
        if not _VERSION_RE.match(tag):
            raise ImmutableInfraError("invalid tag %r in image reference %r" % (tag, ref))
    if not _NAME_RE.match(rest):
        raise ImmutableInfraError("invalid repository name %r in image reference %r" % (rest, ref))
    registry = registry or default_registry
    if not registry:
        raise ImmutableInfraError("image reference %r names no registry" % (ref,))
    return {"registry": registry, "name": rest, "tag": tag, "digest": digest}


def validate_version(version):

    if not _VERSION_RE.match(str(version)):
        raise ImmutableInfraError(
            "invalid version %r: use letters, digits, '.', '_' or '-' (at most 128, not starting with '.' or '-')" % (version,)
        )
    if is_record_tag(version):
        raise ImmutableInfraError(
            "invalid version %r: tags starting with 'sha256-' or 'channel.' are reserved for lifecycle records "
            "(test results, revocations, channels)" % (version,))
    return str(version)


def version_key(version):
    """Order versions: numbers numerically, then other tags by name."""
    return (0, int(version), "") if str(version).isdigit() else (1, 0, str(version))


def next_version(existing):
    """The versioning scheme: the next whole number after the highest numeric tag."""
    numbers = [int(v) for v in existing if str(v).isdigit()]
    return str(max(numbers) + 1 if numbers else 1)


def version_facts(repository, tag, inspected):
    """One image version as modules return it, from skopeo inspect output."""
    labels = inspected.get("Labels") or {}
    digest = inspected["Digest"]
    return {
        "version": labels.get(LABEL_VERSION, tag),
        "tag": tag,
        "digest": digest,
        "reference": "%s@%s" % (repository, digest),
        "repository": repository,
        "created": labels.get(LABEL_CREATED, inspected.get("Created")),
        "revision": labels.get(LABEL_REVISION),
        "recipe": labels.get(LABEL_RECIPE),
        "fingerprint": labels.get(LABEL_FINGERPRINT),
        "parent_digest": labels.get(LABEL_BASE_DIGEST),
        "parent_name": labels.get(LABEL_BASE_NAME),
        "bake_id": labels.get(LABEL_BAKE_ID),
        "format": labels.get(LABEL_FORMAT) or "container",
        "amis": amis_of(labels),
        "labels": labels,
    }


def amis_of(labels):
    """{region: AMI id} of an AMI image version (format ami): its infra.immutable.ami.<region> labels."""
    return {k[len(LABEL_AMI_PREFIX):]: v for k, v in sorted((labels or {}).items())
            if k.startswith(LABEL_AMI_PREFIX) and v}


def _port_number(value, what):
    try:
        port = int(str(value).strip())
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ImmutableInfraError("%s is not a port number: %r (use 1-65535)" % (what, value))
    return port


def declared_port(image, config=None):
    """The service port an image declares, as (port, source, warning).

    `image` is version facts (its labels); `config` the OCI config (for
    ExposedPorts), read only when the label is absent. The label
    infra.immutable.port wins; else exactly one exposed TCP port; else
    DEFAULT_PORT with a warning. Several exposed ports are an error.
    """
    ref = image.get("reference") or image.get("repository")
    labels = image.get("labels") or {}
    if labels.get(LABEL_PORT) not in (None, ""):
        return _port_number(labels[LABEL_PORT], "label %s=%r of image %s" % (LABEL_PORT, labels[LABEL_PORT], ref)), "label", None
    exposed = sorted({_port_number(p.split("/", 1)[0], "exposed port %r of image %s" % (p, ref))
                      for p in ((config or {}).get("config") or {}).get("ExposedPorts") or {}
                      if p.split("/", 1)[1:] in ([], ["tcp"])})
    if len(exposed) == 1:
        return exposed[0], "expose", None
    if exposed:
        raise ImmutableInfraError(
            "image %s exposes several ports (%s) and has no %s label: give the service port with `port`"
            % (ref, ", ".join(str(p) for p in exposed), LABEL_PORT))
    return DEFAULT_PORT, "default", (
        "image %s declares no service port (no EXPOSE, no %s label): using %d; declare it in the recipe "
        "(`EXPOSE <port>` in the docker source's changes) or give `port`" % (ref, LABEL_PORT, DEFAULT_PORT))


class Catalog:
    """Image versions of one registry."""

    def __init__(self, registry, validate_certs=None, skopeo="skopeo", podman="podman"):
        self.registry = registry
        self.access = access_for(registry)      # credentials / CA given to this run (_registry_auth)
        default = not is_loopback(registry) or bool(self.access.ca_file)
        self.validate_certs = default if validate_certs is None else bool(validate_certs)
        self.skopeo = skopeo
        self.podman = podman
        self._client = None

    @property
    def client(self):
        """The registry API client (_oci.RegistryClient) of this registry."""
        if self._client is None:
            self._client = RegistryClient(self.registry, self.validate_certs)
        return self._client

    def _api(self, call, what):
        """A registry API call; errors other than unreachable name what failed."""
        try:
            return call()
        except ImmutableInfraError as exc:
            if "status" in exc.details:
                raise ImmutableInfraError("%s failed: %s" % (what, exc.msg), status=exc.details["status"])
            raise

    @property
    def _tls(self):
        return "--tls-verify=%s" % ("true" if self.validate_certs else "false")

    @property
    def _access_args(self):
        """TLS, auth file and CA flags for skopeo/podman (no secret in argv: an auth file path)."""
        return [self._tls] + self.access.tool_args()

    def repository(self, name):
        return "%s/%s" % (self.registry, name)

    def _skopeo(self, args, what):
        rc, out, err = run([self.skopeo] + args, check=False, timeout=120, what=what)
        if rc == 0:
            return out
        text = err.strip() or out.strip()
        if any(s in text for s in _NOT_FOUND):
            return None
        if any(s in text for s in _UNREACHABLE):
            raise ImmutableInfraError(
                "image registry %s is not reachable (is it running?): %s" % (self.registry, text.splitlines()[-1]),
                cmd=[self.skopeo] + args, rc=rc, stderr=err,
            )
        raise ImmutableInfraError("%s failed: %s" % (what, text), cmd=[self.skopeo] + args, rc=rc, stderr=err)

    def list_tags(self, name):
        """The repository's version tags (lifecycle record tags left out)."""

        tags = self._api(lambda: self.client.tags(name), "listing tags of %s" % name)
        return [t for t in tags if not is_record_tag(t)]

    def inspect(self, name, tag_or_digest):
        """Facts of one version (tag or sha256 digest), or None when absent."""
        sep = "@" if str(tag_or_digest).startswith("sha256:") else ":"
        ref = self.repository(name) + sep + str(tag_or_digest)
        found = self._api(lambda: self.client.image_config(name, str(tag_or_digest)), "inspecting %s" % ref)
        if found is None:
            return None
        digest, _manifest, config = found
        tag = None if sep == "@" else str(tag_or_digest)
        return version_facts(self.repository(name), tag, {
            "Digest": digest, "Labels": (config.get("config") or {}).get("Labels") or {}, "Created": config.get("created")})

    def config(self, reference):
        """The OCI image config (ExposedPorts, Cmd, Entrypoint...) of a reference, read without pulling."""
        out = self._skopeo(["inspect", "--config"] + self._access_args + ["docker://" + reference],
                           "reading the config of %s" % reference)
        if out is None:
            raise ImmutableInfraError("unknown image %r: no such image in registry %s" % (reference, self.registry))
        return json.loads(out)

    def service_port(self, image):
        """declared_port() of version facts, reading the config only when there is no port label."""
        if (image.get("labels") or {}).get(LABEL_PORT) not in (None, ""):
            return declared_port(image)
        return declared_port(image, self.config(image["reference"]))

    def versions(self, name):
        """Every image version of a repository, oldest first."""
        tags = sorted(self.list_tags(name), key=version_key)
        if not tags:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(tags))) as pool:
            found = list(pool.map(lambda t: self.inspect(name, t), tags))
        return [v for v in found if v is not None]

    def find_fingerprint(self, name, fingerprint, tags=None, batch=8):
        """The newest version with this fingerprint, or None. Searches newest
        first: the newest tag alone (a no-op bake usually matches it), then a
        batch at a time, so its cost does not grow with the catalog."""
        tags = sorted(self.list_tags(name) if tags is None else tags, key=version_key, reverse=True)
        start, size = 0, 1
        while start < len(tags):
            chunk = tags[start:start + size]
            with ThreadPoolExecutor(max_workers=len(chunk)) as pool:
                found = list(pool.map(lambda t: self.inspect(name, t), chunk))
            for v in found:
                if v is not None and v["fingerprint"] == fingerprint:
                    return v
            start, size = start + size, batch
        return None

    def newest(self, name):
        """The newest version of a repository, or None; inspects only as many
        tags as it takes (a tag listed but deleted meanwhile is skipped)."""
        for tag in sorted(self.list_tags(name), key=version_key, reverse=True):
            found = self.inspect(name, tag)
            if found is not None:
                return found
        return None

    def resolve(self, ref):
        """Resolve a parent reference (name, name:tag, name@digest, with or
        without registry) to version facts; a bare name means its newest version."""
        parts = parse_reference(ref, default_registry=self.registry)
        cat = self if parts["registry"] == self.registry else Catalog(parts["registry"], None, self.skopeo, self.podman)
        if parts["digest"]:
            found = cat.inspect(parts["name"], parts["digest"])
        elif parts["tag"]:
            found = cat.inspect(parts["name"], parts["tag"])
        else:
            found = cat.newest(parts["name"])
        if found is None:
            raise ImmutableInfraError("unknown image %r: no such image version in registry %s" % (ref, parts["registry"]))
        return found

    def pull(self, reference):
        registry = parse_reference(reference, self.registry)["registry"]
        run([self.podman, "pull", "-q", self._tls] + access_for(registry).tool_args() + [reference], timeout=1800, what="podman pull %s" % reference)

    def publish(self, local_image, name, version, bake_id=None):
        """Tag a local image as name:version and push it; return its facts.

        Refuses to overwrite: image versions are immutable. The registry has no
        conditional write, so the check runs right before the push, and with
        bake_id the pushed tag is read back: a bake on another host that pushed
        the same version in between is reported, never silently taken as ours.
        """
        if self.inspect(name, version) is not None:
            raise ImmutableInfraError(
                "image version %s:%s already exists in %s; versions are immutable" % (name, version, self.registry)
            )
        target = "%s:%s" % (self.repository(name), version)
        run([self.podman, "tag", local_image, target], what="podman tag")
        try:
            run([self.podman, "push", "-q"] + self._access_args + [target], timeout=1800, what="podman push %s" % target)
        except ImmutableInfraError:
            run([self.podman, "untag", local_image, target], check=False)
            raise
        facts = self.inspect(name, version)
        if facts is None:
            raise ImmutableInfraError("pushed %s but the registry does not list it" % target)
        if bake_id and facts["bake_id"] != bake_id:
            raise ImmutableInfraError(
                "image version %s:%s was pushed by another bake (bake id %s, not ours %s) at the same moment; "
                "bakes on separate hosts must share the bake-locks state directory or not run at once"
                % (name, version, facts["bake_id"], bake_id), image=facts)
        return facts
