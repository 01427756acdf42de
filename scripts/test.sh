#!/usr/bin/env bash
# The whole test suite (`make test`), or some parts: scripts/test.sh unit lint ...
# Parts: unit sanity lint packer integration vm molecule.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/env.sh

parts=("$@")
((${#parts[@]})) || parts=(unit sanity lint packer integration vm molecule)
failed=()
declare -A took

run_unit() {
  python -m pytest -q -p no:cacheprovider tests/unit
}

run_sanity() {
  # ansible-test wants the collection under ansible_collections/<ns>/<name>:
  # test a copy of what git would commit. Its venvs are cached across runs.
  local work=$top/.cache/sanity
  local dest=$work/ansible_collections/immutable/infra
  rm -rf "$dest" && mkdir -p "$dest"
  git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents -- {} "$dest/" 2>/dev/null || true
  (cd "$dest" && git init -q && git add -A)
  mkdir -p "$work/home/.ansible/test/cache"
  cp scripts/get_pip_standin.py "$work/home/.ansible/test/cache/get_pip_24_2.py"
  (cd "$dest" && HOME=$work/home ansible-test sanity --python 3.11 --color no)
}

run_lint() {
  HOME=$(mktemp -d) ansible-lint --profile production --offline -q playbooks roles extensions awx
}

run_packer() {
  local recipe vf dummy status=0
  shopt -s nullglob
  dummy=$(mktemp --suffix=.pkrvars.json)
  # The variables image_bake passes (the recipe contract), with dummy values.
  printf '{"parent_image": "127.0.0.1:5000/immutable/base@sha256:%064d", "image_version": "0", "build_name": "validate", "image_labels": {}}' 0 > "$dummy"
  for recipe in packer/*/; do
    compgen -G "$recipe*.pkr.hcl" >/dev/null || continue
    packer fmt -check -diff "$recipe" || status=1
    for vf in "$recipe"*.pkrvars.hcl; do
      echo "packer validate $recipe with $(basename "$vf")"
      (cd "$recipe" && packer validate -var-file="$dummy" -var-file="$(basename "$vf")" .) || status=1
    done
  done
  packer fmt -check -diff docs/packer-1.7 || status=1
  rm -f "$dummy"
  return $status
}

run_integration() {
  python -m pytest -q -p no:cacheprovider -m "not vm" tests/integration "${PYTEST_ARGS[@]}"
}

# The VM lane: bake VM images, boot them under libvirt/qemu (TCG where KVM
# does not run guests), release, roll back, decommission.
run_vm() {
  python -m pytest -q -p no:cacheprovider -m vm tests/integration "${PYTEST_ARGS[@]}"
}

run_molecule() {
  scripts/test-molecule.sh
}

PYTEST_ARGS=()
for part in "${parts[@]}"; do
  echo "=== $part"
  start=$SECONDS
  if "run_$part"; then :; else failed+=("$part"); fi
  took[$part]=$((SECONDS - start))
done
echo "=== summary"
for part in "${parts[@]}"; do
  if [[ " ${failed[*]} " == *" $part "* ]]; then s=FAILED; else s=ok; fi
  printf '%-12s %-7s %4ss\n' "$part" "$s" "${took[$part]}"
done
((${#failed[@]} == 0))
