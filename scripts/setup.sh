#!/usr/bin/env bash
# Install everything `make demo` and `make test` need, idempotently: Debian
# packages, the virtualenv, the collection link, project-local podman config,
# and the offline bootstrap ansible-test sanity needs. A second run is quick.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

APT_PACKAGES=(
  podman runc uidmap slirp4netns containernetworking-plugins iptables
  packer docker-registry skopeo mmdebstrap haproxy
  python3-venv git make ca-certificates curl shellcheck
  qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  gnupg e2fsprogs chromium dpkg-dev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirt without libvirt-daemon-system (that package pulls in systemd): its
# qemu driver refuses to start unless the libvirt-qemu user exists, and qemu
# runs as root so that libvirt sees /dev/kvm the same way on every call (as
# libvirt-qemu it cannot open it, and libvirt then re-probes qemu for ~40 s on
# each define). The project starts libvirtd itself (module_utils/_libvirtd.py).
if [ "$(id -u)" -eq 0 ]; then
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd --system --gid libvirt-qemu --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
  if [ ! -e /etc/libvirt/qemu.conf ]; then
    mkdir -p /etc/libvirt
    printf '# Written by immutable.infra scripts/setup.sh: qemu runs as root.\nuser = "root"\ngroup = "root"\n' \
      > /etc/libvirt/qemu.conf
  fi
fi

# Virtualenv: rebuilt only when requirements.txt changes.
PY=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: building .venv from requirements.txt"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

# The checkout is the collection: ansible.cfg's collections_path points here.
mkdir -p .cache/collections/ansible_collections/immutable
ln -sfn ../../../.. .cache/collections/ansible_collections/immutable/infra

# Podman settings that work on hosts without CAP_SYS_RESOURCE or where crun
# fails; used only through CONTAINERS_CONF, never written to /etc.
mkdir -p .cache/containers
cat > .cache/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
cat > .cache/containers/registries.conf <<'CONF'
unqualified-search-registries = []

[[registry]]
location = "127.0.0.1:5000"
insecure = true
CONF
echo "setup: ok"
