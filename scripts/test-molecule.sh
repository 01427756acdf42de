#!/usr/bin/env bash
# Molecule scenario for the image roles (web, seal), offline and hermetic:
# builds its platform image from Debian packages when missing, runs
# `molecule test` with a throw-away HOME and a per-run instance name, and
# removes its own instance however the run ends (failure, Ctrl-C, SIGTERM).
#   scripts/test-molecule.sh [SCENARIO [MOLECULE_TEST_ARGS...]]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=SCRIPTDIR/env.sh
. scripts/env.sh

scenario=${1:-default}
shift $(($# > 0 ? 1 : 0))

export MOLECULE_BASE_IMAGE=${MOLECULE_BASE_IMAGE:-localhost/immutable-infra-molecule-base:bookworm}
# Part of the instance name (molecule.yml): concurrent runs never share or remove each other's instance.
export MOLECULE_RUN_ID="$$-${RANDOM}"
instance="immutable-infra-molecule-${MOLECULE_RUN_ID}"

work=$(mktemp -d "${TMPDIR:-/tmp}/immutable-infra-molecule.XXXXXX")
started=$SECONDS
molecule_pid=

# shellcheck disable=SC2317,SC2329 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$molecule_pid" ] && kill -0 "$molecule_pid" 2>/dev/null; then
    # molecule runs in its own process group (setsid): stop it and the playbook it is running.
    kill -TERM -- "-$molecule_pid" 2>/dev/null || true
    wait "$molecule_pid" 2>/dev/null || true
  fi
  # `molecule test` destroys after a failed playbook, but not after failed tests or a signal.
  if podman container exists "$instance" 2>/dev/null; then
    echo "test-molecule: destroying instance $instance" >&2
    molecule destroy -s "$scenario" >/dev/null 2>&1 || true
    podman rm -f --ignore --time 0 "$instance" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  echo "test-molecule: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (rc=$rc)") in $((SECONDS - started)) s" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Platform image: a minimal Debian 12 with python3, built locally (nothing can be pulled).
if ! podman image exists "$MOLECULE_BASE_IMAGE"; then
  echo "test-molecule: building $MOLECULE_BASE_IMAGE with mmdebstrap (~40 s, once)" >&2
  mmdebstrap --quiet --variant=minbase --include=python3 --format=tar bookworm "$work/rootfs.tar"
  podman import --quiet --change 'CMD ["/bin/bash"]' "$work/rootfs.tar" "$MOLECULE_BASE_IMAGE" >/dev/null
  rm -f "$work/rootfs.tar"
fi

# Molecule and Ansible write to ~/.cache, ~/.ansible: keep all of it in $work.
export HOME="$work/home"
mkdir -p "$HOME"
export MOLECULE_EPHEMERAL_DIRECTORY="$work/ephemeral"
export ANSIBLE_LOCAL_TEMP="$work/ansible-tmp"
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
export PY_COLORS=${PY_COLORS:-0}

# In the background so that a signal runs the trap at once rather than after molecule ends.
setsid molecule test -s "$scenario" "$@" </dev/null &
molecule_pid=$!
rc=0
wait "$molecule_pid" || rc=$?
molecule_pid= # reaped: its pid may be reused, never signal it again
exit "$rc"
