# shellcheck shell=bash
# Source this to use the checkout from a shell: `. scripts/env.sh`.
_top=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
export PATH="$_top/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$_top/ansible.cfg"
export CONTAINERS_CONF="$_top/.cache/containers/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$_top/.cache/containers/registries.conf"
export CHECKPOINT_DISABLE=1
unset _top
