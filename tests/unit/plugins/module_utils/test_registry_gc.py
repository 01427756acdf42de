"""Pure logic of the registry's garbage collection: the ownership decision, the configuration's
listen address, the commands (the registry role's), and blob counting."""
from __future__ import annotations

import os

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _registry_gc as gc
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
STATE = "/srv/state/registry"


def role_config(addr):
    """The role's template rendered for addr (only the variables it uses)."""
    with open(os.path.join(TOP, "roles", "registry", "templates", "config.yml.j2")) as f:
        text = f.read()
    host, port = addr.rsplit(":", 1)
    return (text.replace("{{ ansible_managed }}", "managed").replace("{{ registry_state_dir }}", STATE)
            .replace("{{ registry_listen_address }}", host).replace("{{ registry_port }}", port))


def test_the_role_s_config_is_read():
    assert gc.config_addr(role_config("127.0.0.1:5123")) == "127.0.0.1:5123"


@pytest.mark.parametrize("text, addr", [
    ("http:\n  addr: '127.0.0.1:5000'\n", "127.0.0.1:5000"),
    ("http:\n  headers:\n    addr: x\n  addr: 127.0.0.1:1  # comment\n", "127.0.0.1:1"),
    ("storage:\n  addr: 127.0.0.1:5000\nhttp:\n  net: tcp\n", None),      # addr of another section
    ("version: 0.1\n", None),
    ("", None),
    (None, None),
])
def test_config_addr(text, addr):
    assert gc.config_addr(text) == addr


def test_owned_only_with_a_live_pid_and_the_same_address():
    owned, reason = gc.decide("127.0.0.1:5000", 4242, "127.0.0.1:5000", STATE)
    assert owned and "pid 4242" in reason
    owned, reason = gc.decide("127.0.0.1:5000", None, "127.0.0.1:5000", STATE)
    assert not owned and reason == "no docker-registry is running from %s/registry.pid" % STATE
    owned, reason = gc.decide("127.0.0.1:5000", 4242, "127.0.0.1:5001", STATE)
    assert not owned and reason == "%s/config.yml listens on 127.0.0.1:5001, not on 127.0.0.1:5000" % STATE
    owned, reason = gc.decide("127.0.0.1:5000", 4242, None, STATE)
    assert not owned and "listens on nothing (no http.addr)" in reason
    # The same port on another address is another registry.
    assert not gc.decide("localhost:5000", 4242, "127.0.0.1:5000", STATE)[0]


def test_the_commands_are_the_role_s():
    with open(os.path.join(TOP, "roles", "registry", "defaults", "main.yml")) as f:
        assert "registry_binary: %s\n" % gc.REGISTRY_BINARY in f.read()
    with open(os.path.join(TOP, "roles", "registry", "tasks", "main.yml")) as f:
        tasks = f.read()
    assert "('http://' ~ registry_listen_address ~ ':' ~ registry_port ~ '/v2/')" in tasks
    assert "('http://127.0.0.1:' ~ registry_debug_port ~ '/debug/health')" in tasks
    assert 'pidfile: "{{ registry_state_dir }}/registry.pid"' in tasks
    assert gc.serve_argv(STATE) == ["docker-registry", "serve", STATE + "/config.yml"]
    assert gc.health_url("127.0.0.1:5000") == "http://127.0.0.1:5000/v2/"
    tls = "http:\n  addr: 127.0.0.1:5000\n  tls:\n    key: k\n  debug:\n    addr: 127.0.0.1:5001\n"
    assert gc.health_url("127.0.0.1:5000", tls) == "http://127.0.0.1:5001/debug/health"
    assert gc.gc_argv(STATE, True) == ["docker-registry", "garbage-collect", "--delete-untagged", STATE + "/config.yml"]
    assert gc.gc_argv(STATE, False) == ["docker-registry", "garbage-collect", STATE + "/config.yml"]


def test_count_blobs(tmp_path):
    blobs = tmp_path / "blobs"
    assert gc.count_blobs(str(blobs)) == (0, 0)            # no registry data yet
    for name, size in (("aa/aabb", 10), ("aa/aacc", 5), ("cd/cdef", 0)):
        (blobs / "sha256" / name).mkdir(parents=True)
        (blobs / "sha256" / name / "data").write_bytes(b"x" * size)
    (blobs / "sha256" / "aa" / "other").write_bytes(b"y" * 100)  # not a blob
    (blobs / "sha256" / "ee" / "eeff").mkdir(parents=True)       # a blob directory left empty
    assert gc.count_blobs(str(blobs)) == (3, 15)


def test_not_owned_changes_nothing_even_outside_check_mode(tmp_path):
    res = gc.collect("127.0.0.1:5000", str(tmp_path / "registry"))
    assert res["owned"] is False and res["changed"] is False and res["freed_blobs"] == 0
    assert "no docker-registry is running from" in res["reason"]


def test_a_bad_registry_is_named():
    with pytest.raises(ImmutableInfraError, match="registry 'nowhere' is not host:port"):
        gc.collect("nowhere", STATE)
