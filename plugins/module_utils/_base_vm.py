# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base VM: a bootable Debian qcow2 from Debian packages only.

mmdebstrap builds the root file system (with a kernel, systemd and an
initramfs small enough to boot fast: MODULES=list), GUEST_FILES are copied
in, `mkfs.ext4 -d` turns the tree into a file system on a raw file (no loop
mount, no partition table) and `qemu-img convert` makes it a qcow2. The
kernel and initrd are taken out of the tree's /boot for direct kernel boot.

The guest side of the identity contract lives here: immutable-identity.service
reads qemu fw_cfg entries opt/immutable/{instance-id,hostname,env,authorized_keys}
early at boot, sets the host name, writes /run/immutable/env (services use
EnvironmentFile=-/run/immutable/env), and when a key is given installs it for
root and creates an ed25519 host key (sshd runs only then).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil

from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

# What a bootable, quickly booting guest needs beyond the variant.
PACKAGES = ["linux-image-cloud-amd64", "systemd-sysv", "python3", "udev", "iproute2", "initramfs-tools", "kmod",
            "dbus", "openssh-server"]
# virtio, the root file system and fw_cfg: all an instance needs in the initramfs.
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "qemu_fw_cfg"]
DISK_SIZE = "3G"

_IDENTITY_SCRIPT = r"""#!/bin/sh
# immutable.infra guest contract: identity and environment from qemu fw_cfg.
# Few processes on purpose: under TCG every exec at boot costs.
set -u
dir=/sys/firmware/qemu_fw_cfg/by_name/opt/immutable
[ -d /sys/firmware/qemu_fw_cfg ] || modprobe qemu_fw_cfg 2>/dev/null || true
mkdir -p -m 0755 /run/immutable
name= id=
[ -r "$dir/hostname/raw" ] && read -r name < "$dir/hostname/raw"
[ -n "$name" ] && printf '%s\n' "$name" > /proc/sys/kernel/hostname
[ -r "$dir/instance-id/raw" ] && read -r id < "$dir/instance-id/raw"
[ -n "$id" ] && printf '%s\n' "$id" > /run/immutable/instance-id
umask 077
keys= has_id=
{
    if [ -r "$dir/env/raw" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            case "$line" in INSTANCE_ID=*) has_id=1 ;; esac
            printf '%s\n' "$line"
            keys="$keys${line%%=*},"
        done < "$dir/env/raw"
    fi
    [ -z "$has_id" ] && [ -n "$id" ] && printf 'INSTANCE_ID=%s\n' "$id" && keys="${keys}INSTANCE_ID,"
} > /run/immutable/env
if [ -r "$dir/authorized_keys/raw" ]; then
    mkdir -p -m 0700 /root/.ssh
    while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done \
        < "$dir/authorized_keys/raw" > /root/.ssh/authorized_keys
    [ -s /root/.ssh/authorized_keys ] && [ ! -s /etc/ssh/ssh_host_ed25519_key ] \
        && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi
read -r now < /proc/sys/kernel/hostname
echo "immutable-identity: hostname=$now instance-id=${id:-none} env=$keys" > /dev/console
exit 0
"""

_IDENTITY_UNIT = """[Unit]
Description=immutable.infra instance identity from qemu fw_cfg
DefaultDependencies=no
After=local-fs.target systemd-remount-fs.service
Before=network-pre.target systemd-networkd.service ssh.service sysinit.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/immutable-identity

[Install]
WantedBy=sysinit.target
"""

GUEST_FILES = {
    "usr/local/sbin/immutable-identity": (0o755, _IDENTITY_SCRIPT),
    "etc/systemd/system/immutable-identity.service": (0o644, _IDENTITY_UNIT),
    "etc/systemd/network/80-dhcp.network": (
        0o644, "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"),
    "etc/systemd/journald.conf.d/immutable-infra.conf": (0o644, "[Journal]\nStorage=volatile\n"),
    # sshd only when the identity unit installed a key (bakes); ed25519 only.
    "etc/systemd/system/ssh.service.d/immutable-infra.conf": (
        0o644, "[Unit]\nAfter=immutable-identity.service\nConditionPathExists=/etc/ssh/ssh_host_ed25519_key\n"),
    "etc/ssh/sshd_config.d/immutable-infra.conf": (
        0o644, "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
               "UseDNS no\n"),
    "etc/fstab": (0o644, "/dev/vda / ext4 rw,noatime 0 1\n"),
    "etc/hostname": (0o644, "localhost\n"),
    "etc/initramfs-tools/conf.d/immutable-infra.conf": (0o644, "MODULES=list\n"),
    "usr/share/initramfs-tools/modules.d/immutable-infra.conf": (0o644, "\n".join(INITRAMFS_MODULES) + "\n"),
}

# Enabled by symlink, masked by /dev/null links (no systemctl in a chroot build).
ENABLE = {"sysinit.target.wants/immutable-identity.service": "/etc/systemd/system/immutable-identity.service",
          "multi-user.target.wants/systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
          "sockets.target.wants/systemd-networkd.socket": "/lib/systemd/system/systemd-networkd.socket"}
MASK = ["e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer", "apt-daily-upgrade.timer",
        "dpkg-db-backup.timer", "fstrim.timer", "getty-static.service", "getty@.service", "serial-getty@.service",
        "systemd-networkd-wait-online.service", "man-db.timer", "logrotate.timer", "systemd-timesyncd.service"]

_CUSTOMIZE = r"""set -e
rm -f "$1"/etc/ssh/ssh_host_*
: > "$1/etc/machine-id"
rm -f "$1/var/lib/dbus/machine-id"
rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin
"""


def guest_digest():
    """sha256 of everything this module puts into the guest (a fingerprint input)."""
    doc = {"files": GUEST_FILES, "enable": ENABLE, "mask": MASK, "packages": PACKAGES, "customize": _CUSTOMIZE,
           "disk_size": DISK_SIZE}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()


def write_overlay(root):
    """GUEST_FILES, enable and mask links into a directory tree (synced into the rootfs)."""
    for rel, (mode, text) in GUEST_FILES.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
    units = os.path.join(root, "etc", "systemd", "system")
    for rel, target in ENABLE.items():
        os.makedirs(os.path.dirname(os.path.join(units, rel)), exist_ok=True)
        os.symlink(target, os.path.join(units, rel))
    for unit in MASK:
        os.symlink("/dev/null", os.path.join(units, unit))


def mmdebstrap_argv(params, rootfs, overlay):
    packages = list(dict.fromkeys(PACKAGES + list(params.get("packages") or [])))
    argv = ["mmdebstrap", "--quiet", "--variant=%s" % params["variant"], "--format=directory",
            "--include=%s" % ",".join(packages)]
    for pattern in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"):
        argv.append("--dpkgopt=path-exclude=%s" % pattern)
    argv.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    # Before any package: the initramfs is generated once, already small.
    argv.append("--setup-hook=sync-in %s /" % os.path.join(overlay, "early"))
    argv.append("--customize-hook=sync-in %s /" % os.path.join(overlay, "late"))
    argv.append("--customize-hook=" + _CUSTOMIZE)
    argv += [params["suite"], rootfs] + ([params["mirror"]] if params.get("mirror") else [])
    return argv


def build_disk(params, workdir, timeout=1800):
    """Build the base VM in workdir; return ({"disk", "kernel", "initrd"}, [commands])."""
    overlay = os.path.join(workdir, "overlay")
    early = os.path.join(overlay, "early")
    for rel in ("etc/initramfs-tools/conf.d/immutable-infra.conf",
                "usr/share/initramfs-tools/modules.d/immutable-infra.conf"):
        os.makedirs(os.path.dirname(os.path.join(early, rel)), exist_ok=True)
        with open(os.path.join(early, rel), "w") as f:
            f.write(GUEST_FILES[rel][1])
    write_overlay(os.path.join(overlay, "late"))
    rootfs = os.path.join(workdir, "rootfs")
    commands = [mmdebstrap_argv(params, rootfs, overlay)]
    run(commands[0], timeout=timeout, what="mmdebstrap")
    files = {}
    for key, pattern in (("kernel", "vmlinuz-*"), ("initrd", "initrd.img-*")):
        found = sorted(glob.glob(os.path.join(rootfs, "boot", pattern)))
        if not found:
            raise ImmutableInfraError("the base VM's root file system has no /boot/%s: is linux-image-cloud-amd64 "
                                      "installable from the mirror?" % pattern)
        files[key] = os.path.join(workdir, key)
        shutil.copyfile(found[-1], files[key])
    raw = os.path.join(workdir, "disk.raw")
    files["disk"] = os.path.join(workdir, "disk.qcow2")
    commands += [["truncate", "-s", DISK_SIZE, raw],
                 ["mkfs.ext4", "-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d", rootfs, raw],
                 ["qemu-img", "convert", "-O", "qcow2", raw, files["disk"]]]
    for argv in commands[1:]:
        run(argv, timeout=timeout, what=argv[0])
    os.unlink(raw)
    shutil.rmtree(rootfs, ignore_errors=True)
    return files, commands
