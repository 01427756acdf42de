# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
TOP := $(CURDIR)
export PATH := $(TOP)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(TOP)/ansible.cfg
export CONTAINERS_CONF := $(TOP)/.cache/containers/containers.conf
export CONTAINERS_REGISTRIES_CONF := $(TOP)/.cache/containers/registries.conf
export CHECKPOINT_DISABLE := 1

.PHONY: setup demo test test-unit test-sanity test-lint test-packer test-integration test-vm test-molecule bench bench-release bench-vm bench-lifecycle bench-scan registry-stop libvirt-stop

setup:
	@scripts/setup.sh

## The main job on the local embedded default.
demo: setup
	ansible-playbook playbooks/demo.yml $(ARGS)

## The whole test suite.
test: setup
	@scripts/test.sh

test-unit test-sanity test-lint test-packer test-integration test-vm test-molecule: setup
	@scripts/test.sh $(subst test-,,$@)

bench: setup
	python3 bench/bake.py $(ARGS)

bench-vm: setup
	python3 bench/vm.py $(ARGS)

bench-release: setup
	python3 bench/release.py $(ARGS)

bench-lifecycle: setup
	python3 bench/lifecycle.py $(ARGS)

bench-scan: setup
	python3 bench/scan.py $(ARGS)

registry-stop: setup
	ansible-playbook playbooks/registry.yml -e registry_state=stopped

libvirt-stop: setup
	ansible-playbook playbooks/libvirt.yml -e libvirt_state=stopped
