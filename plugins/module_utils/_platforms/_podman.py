# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The podman platform: an instance is one container started from an image
version pinned by digest, labelled with its identity, its service port
published on 127.0.0.1 only. Nothing ever execs into an instance."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.immutable.infra.plugins.module_utils import _registry_auth
from ansible_collections.immutable.infra.plugins.module_utils._names import IDENTITY, LABEL_PREFIX
from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import Platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

# Published on every interface: reach it on loopback.
_ANY_ADDRESS = ("", "0.0.0.0", "::")


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def published_ports(mappings):
    """{container port: (host address, host port)} of the TCP ports a container publishes.

    podman 4.3 lists mappings as {host_ip, container_port, host_port, range, protocol};
    a range maps container_port+i to host_port+i.
    """
    out = {}
    for m in mappings or []:
        if not isinstance(m, dict) or (m.get("protocol") or "tcp") != "tcp":
            continue
        first, host_first = _int(m.get("container_port")), _int(m.get("host_port"))
        if not (first and host_first):
            continue
        address = m.get("host_ip") or ""
        address = "127.0.0.1" if address in _ANY_ADDRESS else address
        for offset in range(_int(m.get("range"), 1) or 1):
            out.setdefault(first + offset, (address, host_first + offset))
    return out


def parse_instance(entry):
    """One `podman ps --format json` entry -> instance dict (identity fields None when not labelled)."""
    labels = entry.get("Labels") or {}
    published = published_ports(entry.get("Ports"))
    port = _int(labels.get(LABEL_PREFIX + "port"))
    address, host_port = published.get(port, ("127.0.0.1", None))
    names = entry.get("Names")
    name = (names[0] if isinstance(names, list) and names else names) or entry.get("Name") or (entry.get("Id") or "")[:12]
    inst = {k.replace("-", "_"): labels.get(LABEL_PREFIX + k) for k in IDENTITY}
    inst.update(
        name=name,
        id=entry.get("Id"),
        sequence=_int(inst["sequence"]),
        port=port,
        host=address,
        host_port=host_port,
        endpoint="http://%s:%d" % ("[%s]" % address if ":" in address else address, host_port) if host_port else None,
        state=entry.get("State"),
        created=entry.get("Created"),
        ports={cport: hport for cport, (_addr, hport) in published.items()},
        labels=dict(labels),
    )
    return inst


def parse_ps(stdout):
    """The instances in `podman ps --format json` output (podman prints nothing or null for none)."""
    try:
        doc = json.loads((stdout or "").strip() or "[]")
    except ValueError as exc:
        raise ImmutableInfraError("podman ps printed invalid JSON: %s" % exc, stdout=stdout)
    if doc is not None and not isinstance(doc, list):
        raise ImmutableInfraError("podman ps printed %s, expected a list of containers" % type(doc).__name__,
                                  stdout=stdout)
    return [parse_instance(e) for e in doc or [] if isinstance(e, dict)]


def is_root(user):
    return (user or "").split(":")[0] in ("", "root", "0")


def connection_vars(name, user=None, podman="podman"):
    """How Ansible reaches an instance: the podman connection, as the container's own user.

    containers.podman.podman copies module files in as root; a non-root
    container user can only run them when the connection knows the user (it
    then chowns them). Temporary files go in a private directory under /tmp,
    removed after each task, so a check leaves no file behind in the
    instance (a sealed image's service user may have no home either).
    """
    hostvars = {"ansible_connection": "containers.podman.podman", "ansible_host": name, "ansible_remote_tmp": "/tmp"}
    if not is_root(user):
        hostvars["ansible_user"] = user
    if podman != "podman":
        hostvars["ansible_podman_executable"] = podman
    return hostvars


def parse_users(stdout):
    """{container name: configured user ('' for the image default)} from `podman container inspect --format json`."""
    try:
        doc = json.loads(stdout or "[]")
    except ValueError:
        return {}
    users = {}
    for c in doc if isinstance(doc, list) else []:
        if isinstance(c, dict) and c.get("Name"):
            users[c["Name"]] = str((c.get("Config") or {}).get("User") or "")
    return users


class PodmanPlatform(Platform):
    name = "podman"
    OPTIONS = ("podman", "validate_certs")
    boot_seconds = 60
    image_format = "container"

    def __init__(self, podman="podman", validate_certs=False):
        self.podman = podman
        self.validate_certs = validate_certs

    def _podman(self, args, what, **kw):
        return run([self.podman] + args, what=what, **kw)

    def list_instances(self, app=None, stack=None, group=None):
        """Every instance (any state) matching the filters, oldest group first."""
        argv = ["ps", "-a", "--format", "json", "--filter", "label=%sgroup" % LABEL_PREFIX]
        for key, value in (("app", app), ("stack", stack), ("group", group)):
            if value is not None:
                argv += ["--filter", "label=%s%s=%s" % (LABEL_PREFIX, key, value)]
        _rc, out, _err = self._podman(argv, "podman ps", timeout=60)
        return sorted(parse_ps(out), key=lambda i: (i["app"] or "", i["stack"] or "", i["sequence"], i["name"]))

    def instance(self, name):
        _rc, out, _err = self._podman(["ps", "-a", "--format", "json", "--filter", "name=^%s$" % name],
                                      "podman ps", timeout=60)
        found = parse_ps(out)
        if not found:
            raise ImmutableInfraError("instance %s vanished right after it was started" % name)
        return found[0]

    def pull(self, reference):
        _rc, out, _err = self._podman(["image", "exists", reference], "podman image exists", check=False)
        if _rc != 0:
            self._podman(["pull", "-q", "--tls-verify=%s" % str(bool(self.validate_certs)).lower()]
                         + _registry_auth.tool_args(reference.split("/", 1)[0]) + [reference],
                         "podman pull %s" % reference, timeout=1800)

    def create_instance(self, spec):
        """Start one instance; spec has the identity fields, env and extra_ports."""
        name = "%s-%s" % (spec["group"], uuid.uuid4().hex[:6])
        labels = {
            "app": spec["app"], "stack": spec["stack"], "group": spec["group"], "sequence": spec["sequence"],
            "image": spec["image"], "image-digest": spec["image_digest"], "image-version": spec["image_version"],
            "zone": spec["zone"], "instance-id": name, "port": spec["port"],
        }
        argv = ["run", "-d", "--name", name, "--stop-timeout", str(spec.get("stop_timeout", 5))]
        for port in sorted({int(spec["port"])} | {int(p) for p in spec.get("extra_ports") or []}):
            argv += ["-p", "127.0.0.1::%d" % port]
        for key, value in labels.items():
            argv += ["--label", "%s%s=%s" % (LABEL_PREFIX, key, value)]
        for key, value in sorted((spec.get("labels") or {}).items()):      # more facts, e.g. the channel released
            argv += ["--label", "%s=%s" % (key, value)]
        env = {"INSTANCE_ID": name, "ZONE": spec["zone"]}
        env.update(spec.get("env") or {})
        for key, value in sorted(env.items()):
            argv += ["-e", "%s=%s" % (key, value)]
        argv.append(spec["image"])
        try:
            self._podman(argv, "podman run (instance %s)" % name, timeout=300)
        except ImmutableInfraError:
            self._podman(["rm", "-f", "-t", "0", name], "podman rm", check=False)
            raise
        return name

    def create_instances(self, specs, workers=4):
        """Start instances, 4 at a time; then read them all back with one podman ps."""
        if not specs:
            return []
        with ThreadPoolExecutor(max_workers=min(workers, len(specs))) as pool:
            names = list(pool.map(self.create_instance, specs))
        found = {}
        for group in sorted({s["group"] for s in specs}):
            found.update((i["name"], i) for i in self.list_instances(group=group))
        missing = [n for n in names if n not in found]
        if missing:
            raise ImmutableInfraError("instances vanished right after they were started: %s" % ", ".join(missing))
        return [found[n] for n in names]

    def destroy_instances(self, names, timeout=5):
        """Stop and remove instances (SIGTERM, then SIGKILL after timeout)."""
        names = list(names)
        if names:
            self._podman(["rm", "-f", "-t", str(timeout), "--ignore"] + names, "podman rm", timeout=120)
        return names

    def users(self, names):
        """The configured user of each named instance, in one call.

        An instance removed since it was listed makes podman exit non-zero but
        still print the others, so only a call that yields nothing is an error.
        """
        names = list(names)
        if not names:
            return {}
        argv = ["container", "inspect", "--format", "json"] + names
        rc, out, err = self._podman(argv, "podman container inspect", check=False, timeout=120)
        users = parse_users(out)
        if rc != 0 and not users:
            detail = (err or out).strip().splitlines()
            raise ImmutableInfraError("podman container inspect failed (rc=%d): %s"
                                      % (rc, detail[-1] if detail else "no output"),
                                      cmd=[self.podman] + argv, rc=rc, stdout=out, stderr=err)
        return users

    def logs(self, name, lines=20):
        rc, out, err = self._podman(["logs", "--tail", str(lines), name], "podman logs", check=False)
        return (out + err).strip() if rc == 0 else ""

    def connection(self, instance):
        """The containers.podman.podman connection, as the instance's user (instance["user"], from users())."""
        return connection_vars(instance["name"], instance.get("user"), self.podman)
