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

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

LABEL = "infra.immutable."
IDENTITY = ("app", "stack", "group", "sequence", "image", "image-digest", "image-version", "zone", "instance-id", "port")


def parse_instance(entry):
    """One `podman ps --format json` entry -> instance dict."""
    labels = entry.get("Labels") or {}
    port = int(labels.get(LABEL + "port") or 0)
    ports = {}
    for p in entry.get("Ports") or []:
        if p.get("host_port"):
            for offset in range(int(p.get("range") or 1)):
                ports[int(p["container_port"]) + offset] = int(p["host_port"]) + offset
    host_port = ports.get(port)
    name = (entry.get("Names") or [entry.get("Id", "")[:12]])[0]
    inst = {k.replace("-", "_"): labels.get(LABEL + k) for k in IDENTITY}
    inst.update(
        name=name,
        id=entry.get("Id"),
        sequence=int(inst["sequence"] or 0),
        port=port,
        host="127.0.0.1",
        host_port=host_port,
        endpoint="http://127.0.0.1:%d" % host_port if host_port else None,
        state=entry.get("State"),
        created=entry.get("Created"),
        ports=ports,
    )
    return inst


def group_name(app, stack, sequence):
    return "%s-%s-v%03d" % (app, stack, int(sequence))


class PodmanPlatform:
    name = "podman"

    def __init__(self, podman="podman", validate_certs=False):
        self.podman = podman
        self.validate_certs = validate_certs

    def _podman(self, args, what, **kw):
        return run([self.podman] + args, what=what, **kw)

    def list_instances(self, app=None, stack=None, group=None):
        """Every instance (any state) matching the filters, oldest group first."""
        argv = ["ps", "-a", "--format", "json", "--filter", "label=%sgroup" % LABEL]
        for key, value in (("app", app), ("stack", stack), ("group", group)):
            if value is not None:
                argv += ["--filter", "label=%s%s=%s" % (LABEL, key, value)]
        _rc, out, _err = self._podman(argv, "podman ps", timeout=60)
        found = [parse_instance(e) for e in json.loads(out or "[]")]
        return sorted(found, key=lambda i: (i["app"] or "", i["stack"] or "", i["sequence"], i["name"]))

    def instance(self, name):
        _rc, out, _err = self._podman(["ps", "-a", "--format", "json", "--filter", "name=^%s$" % name],
                                      "podman ps", timeout=60)
        found = [parse_instance(e) for e in json.loads(out or "[]")]
        if not found:
            raise ImmutableInfraError("instance %s vanished right after it was started" % name)
        return found[0]

    def pull(self, reference):
        _rc, out, _err = self._podman(["image", "exists", reference], "podman image exists", check=False)
        if _rc != 0:
            self._podman(["pull", "-q", "--tls-verify=%s" % str(bool(self.validate_certs)).lower(), reference],
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
            argv += ["--label", "%s%s=%s" % (LABEL, key, value)]
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

    def logs(self, name, lines=20):
        rc, out, err = self._podman(["logs", "--tail", str(lines), name], "podman logs", check=False)
        return (out + err).strip() if rc == 0 else ""
