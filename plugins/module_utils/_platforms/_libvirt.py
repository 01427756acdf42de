# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt platform: an instance is one persistent libvirt domain booted
directly from a VM image's kernel and initrd, its disk a qcow2 overlay on the
read-only cached golden disk (the golden disk is never written).

libvirt is the system of record: the identity (_names.IDENTITY, the forwarded
ports, the creation time) sits in the domain's <metadata>, and list_instances
reads it back from there. The guest learns its identity through fw_cfg
(opt/immutable/instance-id, hostname, env; authorized_keys only when the create
spec has some, as image_test's throwaway VMs do). Its one NIC is qemu user
networking with restrict=on; each forwarded port listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.immutable.infra.plugins.module_utils import _libvirtd
from ansible_collections.immutable.infra.plugins.module_utils._names import IDENTITY, LABEL_PREFIX
from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import Platform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

XMLNS = "https://immutable.infra/xmlns/instance/1"
QEMU_XMLNS = "http://libvirt.org/schemas/domain/qemu/1.0"
FWCFG_PREFIX = "opt/immutable/"
LOOPBACK = "127.0.0.1"
# Metadata keys beyond IDENTITY.
HOST_PORT, PORTS, CREATED = "host-port", "ports", "created"
# The NIC: a PCI slot libvirt leaves free, so the qemu:commandline device never collides with its own.
NIC_ADDRESS = "0x1f"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ET.register_namespace("qemu", QEMU_XMLNS)
ET.register_namespace("ii", XMLNS)


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def identity(name, spec, ports, created):
    """The metadata labels of a new instance: {infra.immutable.<key>: str}, and the spec's labels."""
    values = {
        "app": spec["app"], "stack": spec["stack"], "group": spec["group"], "sequence": spec["sequence"],
        "image": spec["image"], "image-digest": spec["image_digest"], "image-version": spec["image_version"],
        "zone": spec["zone"], "instance-id": name, "port": spec["port"],
        HOST_PORT: ports[int(spec["port"])],
        PORTS: ",".join("%d:%d" % (p, h) for p, h in sorted(ports.items())),
        CREATED: created,
    }
    labels = {LABEL_PREFIX + k: str(v) for k, v in values.items()}
    for key, value in sorted((spec.get("labels") or {}).items()):     # more facts; never over the identity
        labels.setdefault(str(key), str(value))
    return labels


def fwcfg_entries(name, spec):
    """[(fw_cfg name, value)] that tell the guest who it is (read by immutable-identity.service)."""
    env = {"INSTANCE_ID": name, "ZONE": spec["zone"]}
    env.update(spec.get("env") or {})
    lines = []
    for key, value in sorted(env.items()):
        value = str(value)
        if "\n" in value or "\r" in value or not key or "=" in key or "\n" in key:
            raise ImmutableInfraError("env %r=%r cannot be passed to a VM: names need no '=' and values "
                                      "one line (they become KEY=VALUE lines of /run/immutable/env)" % (key, value))
        lines.append("%s=%s\n" % (key, value))
    entries = [(FWCFG_PREFIX + "instance-id", name), (FWCFG_PREFIX + "hostname", name),
               (FWCFG_PREFIX + "env", "".join(lines))]
    keys = spec.get("authorized_keys")
    if keys:
        entries.append((FWCFG_PREFIX + "authorized_keys", authorized_keys_text(keys)))
    return entries


def authorized_keys_text(keys):
    """The fw_cfg opt/immutable/authorized_keys of a spec's authorized_keys (a list of public
    keys or one text of them): the guest installs them for root and starts sshd (the bake's
    contract). Only image_test gives keys; a production instance never has one."""
    lines = keys.splitlines() if isinstance(keys, str) else [str(k) for k in keys]
    lines = [line.strip() for line in lines if line.strip()]
    bad = [line for line in lines if not line.startswith(("ssh-", "ecdsa-", "sk-"))]
    if bad or not lines:
        raise ImmutableInfraError("authorized_keys %r cannot be given to a VM: give OpenSSH public keys, one a line "
                                  "(ssh-ed25519 AAAA...)" % (bad[0] if bad else keys,))
    return "".join(line + "\n" for line in lines)


def netdev_arg(ports):
    """The qemu -netdev of an instance: user networking, no way out, each port on 127.0.0.1 only."""
    fwd = ["hostfwd=tcp:%s:%d-:%d" % (LOOPBACK, host, port) for port, host in sorted(ports.items())]
    return ",".join(["user", "id=ii0", "restrict=on"] + fwd)


def _sub(parent, tag, text=None, **attrib):
    el = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrib.items()})
    if text is not None:
        el.text = str(text)
    return el


def domain_xml(name, spec, image, overlay, console, ports, memory=512, vcpus=2, domain_type="qemu", created=""):
    """The libvirt domain of one instance (a string)."""
    dom = ET.Element("domain", type=domain_type)
    _sub(dom, "name", name)
    _sub(dom, "memory", int(memory), unit="MiB")
    _sub(dom, "vcpu", int(vcpus))
    meta = ET.SubElement(_sub(dom, "metadata"), "{%s}instance" % XMLNS)
    for key, value in sorted(identity(name, spec, ports, created).items()):
        _sub(meta, "{%s}label" % XMLNS, value, key=key)
    sysinfo = _sub(dom, "sysinfo", type="fwcfg")
    for key, value in fwcfg_entries(name, spec):
        _sub(sysinfo, "entry", value, name=key)
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "kernel", image["kernel"])
    _sub(os_el, "initrd", image["initrd"])
    _sub(os_el, "cmdline", image["kernel_args"])
    _sub(_sub(dom, "features"), "acpi")
    if domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2")
    _sub(disk, "source", file=overlay)
    _sub(disk, "target", dev="vda", bus="virtio")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=console)
    _sub(serial, "target", port=0)
    _sub(devices, "memballoon", model="none")
    # qemu runs as the caller and relabels nothing: the golden disk, kernel and
    # initrd stay read-only files of their owner, wherever the cache is.
    seclabel = _sub(dom, "seclabel", type="static", model="dac", relabel="no")
    _sub(seclabel, "label", "+%d:+%d" % (os.geteuid(), os.getegid()))
    cmd = _sub(dom, "{%s}commandline" % QEMU_XMLNS)
    for arg in ("-netdev", netdev_arg(ports), "-device", "virtio-net-pci,netdev=ii0,bus=pci.0,addr=" + NIC_ADDRESS):
        _sub(cmd, "{%s}arg" % QEMU_XMLNS, value=arg)
    return ET.tostring(dom, encoding="unicode")


def parse_ports(text):
    """"22:40001,8080:40002" -> {22: 40001, 8080: 40002}."""
    out = {}
    for pair in (text or "").split(","):
        port, _sep, host = pair.partition(":")
        if _int(port) and _int(host):
            out[_int(port)] = _int(host)
    return out


def parse_domain(xml_text, state=None):
    """An instance record from a domain's XML, or None when the domain is not one of ours."""
    try:
        dom = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    meta = dom.find("metadata/{%s}instance" % XMLNS)
    if meta is None:
        return None
    labels = {el.get("key"): el.text or "" for el in meta.findall("{%s}label" % XMLNS) if el.get("key")}
    inst = {k.replace("-", "_"): labels.get(LABEL_PREFIX + k) for k in IDENTITY}
    ports = parse_ports(labels.get(LABEL_PREFIX + PORTS))
    port = _int(inst["port"])
    host_port = ports.get(port) or _int(labels.get(LABEL_PREFIX + HOST_PORT)) or None
    inst.update(
        name=dom.findtext("name"),
        id=dom.findtext("uuid"),
        sequence=_int(inst["sequence"]),
        port=port,
        host=LOOPBACK,
        host_port=host_port,
        ports=ports,
        endpoint="http://%s:%d" % (LOOPBACK, host_port) if host_port else None,
        state=state,
        created=labels.get(LABEL_PREFIX + CREATED),
        labels=labels,
    )
    return inst


def domain_files(xml_text):
    """The per-instance files a domain names: its disk overlays and its console log."""
    try:
        dom = ET.fromstring(xml_text)
    except ET.ParseError:
        return []
    files = [s.get("file") for s in dom.findall("devices/disk/source")]
    files += [s.get("path") for s in dom.findall("devices/serial/source")]
    return [f for f in files if f]


def parse_list(stdout):
    """{name: state} from `virsh list --all` ("shut off" becomes "shutoff"), with or without its header."""
    states = {}
    for line in (stdout or "").splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[:2] != ["Id", "Name"]:
            states[fields[1]] = fields[2].strip().replace(" ", "")
    return states


_port_lock = threading.Lock()
_ports_given = set()


def free_ports(count):
    """count loopback ports free right now, never the same twice in this process."""
    out = []
    with _port_lock:
        while len(out) < count:
            with socket.socket() as s:
                s.bind((LOOPBACK, 0))
                port = s.getsockname()[1]
            if port not in _ports_given:
                _ports_given.add(port)
                out.append(port)
    return out


def _restated(exc, what):
    """exc with `what: ` before its message, keeping what is known of the command."""
    return ImmutableInfraError("%s: %s" % (what, exc.msg), cmd=exc.cmd, rc=exc.rc, stdout=exc.stdout,
                               stderr=exc.stderr, **exc.details)


class _PortTaken(Exception):
    def __init__(self, error):
        super().__init__(error.msg)
        self.error = error


def _default_state_dir():
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "immutable-infra", "libvirt")


def _remove(paths):
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class LibvirtPlatform(Platform):
    name = "libvirt"
    image_format = "vm"
    OPTIONS = ("uri", "state_dir", "cache_dir", "memory", "vcpus", "accelerator", "validate_certs")
    # A TCG guest boots in ~15 s alone; several at once on two cores take much longer.
    boot_seconds = 180

    def __init__(self, uri=None, state_dir=None, cache_dir=None, memory=512, vcpus=2, accelerator="auto",
                 validate_certs=None):
        if accelerator not in ("auto", "kvm", "tcg"):
            raise ImmutableInfraError("platform libvirt: accelerator %r is not one of auto, kvm, tcg" % (accelerator,))
        if _int(memory) < 128 or _int(vcpus) < 1:
            raise ImmutableInfraError("platform libvirt: memory (MiB) must be >= 128 and vcpus >= 1 (got %r, %r)"
                                      % (memory, vcpus))
        self.uri = uri or _libvirtd.default_uri()
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir or _default_state_dir()))
        self.cache_dir = cache_dir
        self.memory, self.vcpus = _int(memory), _int(vcpus)
        self.accelerator = accelerator
        self.validate_certs = validate_certs
        self._ready = False

    # ------------------------------------------------------------- plumbing
    def _virsh(self, args, what, **kw):
        if not self._ready:
            _libvirtd.ensure_running(self.uri)
            self._ready = True
        return run(["virsh", "-q", "-c", self.uri] + list(args), what=what, timeout=kw.pop("timeout", 120), **kw)

    def _domain_type(self):
        accel = self.accelerator
        if accel == "auto":
            from ansible_collections.immutable.infra.plugins.module_utils._vm_image import accelerator
            accel = accelerator(self.cache_dir)
        return "kvm" if accel == "kvm" else "qemu"

    def _fetch(self, reference):
        from ansible_collections.immutable.infra.plugins.module_utils._vm_image import fetch
        image = fetch(reference, self.cache_dir, validate_certs=self.validate_certs)
        for key in ("disk", "kernel", "initrd"):
            path = image.get(key)
            if not path or not os.path.isfile(path) or os.path.getsize(path) == 0:
                raise ImmutableInfraError("VM image %s has no %s in the cache (%r): it cannot boot; fetch or bake it again"
                                          % (reference, key, path))
        return image

    def _dumpxml(self, names):
        """{name: domain XML} for the names that still exist (one virsh call)."""
        if not names:
            return {}
        names = [n for n in names if SAFE_NAME.match(n)]      # they go into one virsh command line
        if not names:
            return {}
        _rc, out, _err = self._virsh([" ; ".join("dumpxml %s" % n for n in names)], "virsh dumpxml", check=False)
        docs = {}
        for chunk in out.split("</domain>"):
            chunk = chunk[chunk.find("<domain"):] if "<domain" in chunk else ""
            if chunk:
                text = chunk + "</domain>"
                try:
                    docs[ET.fromstring(text).findtext("name")] = text
                except ET.ParseError:
                    continue
        return docs

    # ------------------------------------------------------------ interface
    def list_instances(self, app=None, stack=None, group=None):
        """Every instance (any state) matching the filters, read from libvirt."""
        _rc, out, _err = self._virsh(["list", "--all"], "virsh list")
        states = parse_list(out)
        # Instance names are <app>-<stack>-vNNN-<suffix> (_names): other domains are never read.
        prefix = group + "-" if group else ("%s-%s-v" % (app, stack) if stack else app + "-") if app else ""
        names = sorted(n for n in states if n.startswith(prefix) and SAFE_NAME.match(n))
        found = []
        for name, text in self._dumpxml(names).items():
            inst = parse_domain(text, states.get(name))
            if inst is None:
                continue
            if any(v is not None and inst[k] != v for k, v in (("app", app), ("stack", stack), ("group", group))):
                continue
            found.append(inst)
        return sorted(found, key=lambda i: (i["app"] or "", i["stack"] or "", i["sequence"], i["name"]))

    def instance(self, name):
        rc, out, _err = self._virsh(["domstate", name], "virsh domstate", check=False)
        text = self._dumpxml([name]).get(name) if rc == 0 else None
        inst = parse_domain(text, out.strip().replace(" ", "")) if text else None
        if inst is None:
            raise ImmutableInfraError("instance %s does not exist (no libvirt domain of that name at %s)" % (name, self.uri))
        return inst

    def pull(self, reference):
        """Fetch the VM image into the local cache (a container image is refused by fetch)."""
        self._fetch(reference)

    def _cleanup(self, name, files):
        """Remove what a failed start left: its domain (when libvirt answers) and its files (always)."""
        try:
            self._virsh(["destroy", name], "virsh destroy", check=False)
            self._virsh(["undefine", name], "virsh undefine", check=False)
        except ImmutableInfraError:
            pass     # libvirt or virsh is what failed: no domain was defined
        _remove(files)

    def create_instance(self, spec, attempts=2):
        """Define and start one domain; on failure nothing of it remains. A forwarded
        port taken between choosing and binding it is retried once with new ports."""
        self._virsh(["version"], "virsh", timeout=60)      # libvirt answers, before anything is made
        image = self._fetch(spec["image"])
        domain_type = self._domain_type()
        os.makedirs(self.state_dir, exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                return self._start(spec, image, domain_type)
            except _PortTaken as exc:
                if attempt == attempts:
                    raise exc.error
        return None

    def _start(self, spec, image, domain_type):
        name = "%s-%s" % (spec["group"], uuid.uuid4().hex[:6])
        overlay = os.path.join(self.state_dir, name + ".qcow2")
        console = os.path.join(self.state_dir, name + ".console.log")
        wanted = sorted({int(spec["port"])} | {int(p) for p in spec.get("extra_ports") or []})
        ports = dict(zip(wanted, free_ports(len(wanted))))
        try:
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image["disk"], overlay],
                what="qemu-img create (overlay of %s)" % spec["image"], timeout=120)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            xml = domain_xml(name, spec, image, overlay, console, ports, self.memory, self.vcpus, domain_type, created)
            with tempfile.NamedTemporaryFile("w", suffix=".xml", dir=self.state_dir, delete=False) as f:
                f.write(xml)
            try:
                self._virsh(["define", f.name], "virsh define (instance %s)" % name)
            finally:
                _remove([f.name])
            self._virsh(["start", name], "virsh start (instance %s)" % name, timeout=300)
            return name
        except ImmutableInfraError as exc:
            self._cleanup(name, [overlay, console])
            if "host forwarding rule" in "%s %s" % (exc.stderr or "", exc.msg):
                raise _PortTaken(_restated(exc, "instance %s: a forwarded port is already taken on %s (host->guest %s)"
                                           % (name, LOOPBACK, ", ".join("%d->%d" % (h, p) for p, h in sorted(ports.items())))))
            if "qemu-img create" in exc.msg:
                raise _restated(exc, "instance %s: cannot make an overlay on the disk of %s (corrupt qcow2?)"
                                % (name, spec["image"]))
            raise

    def create_instances(self, specs, workers=3):
        """Start instances, a few at a time; if any fails, the ones started are removed too."""
        if not specs:
            return []
        results = {}

        def one(index):
            try:
                results[index] = self.create_instance(specs[index])
            except ImmutableInfraError as exc:
                results[index] = exc

        with ThreadPoolExecutor(max_workers=min(workers, len(specs))) as pool:
            list(pool.map(one, range(len(specs))))
        names = [r for r in results.values() if isinstance(r, str)]
        errors = [r for r in results.values() if not isinstance(r, str)]
        if errors:
            self.destroy_instances(names, timeout=0)
            raise errors[0]
        found = {i["name"]: i for i in self.list_instances(group=specs[0]["group"])}
        for name in names:
            if name not in found:
                found[name] = self.instance(name)
        return [found[results[i]] for i in range(len(specs))]

    def destroy_one(self, name, timeout=5):
        """ACPI shutdown for up to timeout seconds, then destroy; undefine; remove its files."""
        text = self._dumpxml([name]).get(name)
        if text is None:
            return
        rc, out, _err = self._virsh(["domstate", name], "virsh domstate", check=False)
        if rc == 0 and out.strip() == "running" and timeout > 0:
            self._virsh(["shutdown", name], "virsh shutdown", check=False)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                rc, out, _err = self._virsh(["domstate", name], "virsh domstate", check=False)
                if rc != 0 or out.strip() != "running":
                    break
                time.sleep(0.2)
        if rc == 0 and out.strip() != "shut off":       # running, paused, crashed, still shutting down
            self._virsh(["destroy", name], "virsh destroy", check=False)
        rc, _out, err = self._virsh(["undefine", name], "virsh undefine", check=False)
        if rc != 0 and name in self._dumpxml([name]):
            raise ImmutableInfraError("cannot remove instance %s: %s" % (name, err.strip()), rc=rc, stderr=err)
        _remove(domain_files(text))

    def destroy_instances(self, names, timeout=5):
        names = list(names)
        if names:
            with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
                list(pool.map(lambda n: self.destroy_one(n, timeout), names))
        return names

    def logs(self, name, lines=20):
        """The tail of the instance's serial console."""
        text = self._dumpxml([name]).get(name)
        consoles = [p for p in domain_files(text or "") if p.endswith(".console.log")]
        try:
            with open(consoles[0], errors="replace") as f:
                return "".join(f.readlines()[-int(lines):]).strip()
        except (IndexError, OSError):
            return ""
