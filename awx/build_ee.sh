#!/usr/bin/env bash
# Build the execution environment's context (default) or image (`build`) from the checkout.
#   awx/build_ee.sh [create|build] [extra ansible-builder arguments]
# create: the collection tarball into .cache/ee, then `ansible-builder create` into .cache/ee/context
#         (offline; the Containerfile and _build/ can be reviewed or built elsewhere).
# build:  the same, then `ansible-builder build` with podman: needs the base image (a RHEL-family image with
#         python3 and pip, pullable or present locally) and network access to PyPI, Galaxy (or your Automation
#         Hub) and the distribution's and HashiCorp's package repositories. See docs/awx.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-create}
[ $# -gt 0 ] && shift
case $mode in create|build) ;; *) echo "usage: $0 [create|build] [ansible-builder arguments]" >&2; exit 2;; esac
out="$top/.cache/ee"
rm -rf "$out/tarballs" && mkdir -p "$out/tarballs"
ansible-galaxy collection build --force --output-path "$out/tarballs" "$top" >/dev/null
cp "$out"/tarballs/immutable-infra-*.tar.gz "$out/immutable-infra.tar.gz"
cd "$top"
if [ "$mode" = create ]; then
    ansible-builder create -f execution-environment.yml -c "$out/context" "$@"
else
    ansible-builder build -f execution-environment.yml -c "$out/context" --container-runtime podman "$@"
fi
