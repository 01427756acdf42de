"""The bake playbook's bookkeeping lives in the image_bake action: it picks and
announces the log, and answers a no-op bake from the catalog on the controller."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from conftest import TOP, versions

BAKE = os.path.join(TOP, "playbooks", "bake.yml")
ANNOUNCE = "Packer's output for this bake goes to "


def bake_json(env, workdir, extra_vars, check=False):
    """ansible-playbook bake.yml with the JSON callback: (rc, what it printed before the JSON, bake result)."""
    vars_file = os.path.join(workdir, "noop-vars-%s.json" % uuid.uuid4().hex[:8])
    with open(vars_file, "w") as f:
        json.dump(extra_vars, f)
    argv = ["ansible-playbook", BAKE, "-e", "@" + vars_file] + (["--check"] if check else [])
    proc = subprocess.run(argv, env=dict(env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"), cwd=TOP,
                          capture_output=True, text=True, timeout=1800, check=False)
    start = proc.stdout.index("{")
    doc = json.loads(proc.stdout[start:])
    found = [t["hosts"]["localhost"] for p in doc["plays"] for t in p["tasks"] if t["task"]["name"] == "Bake the recipe"]
    assert found, "no bake task ran (rc=%d): %s %s" % (proc.returncode, doc.get("stats"), proc.stderr[-2000:])
    return proc.returncode, proc.stdout[:start], found[-1]


@pytest.fixture(scope="module")
def baked(env, workdir, registry, base):
    name = "noop%s" % uuid.uuid4().hex[:6]
    extra = {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": name,
             "recipe_variables": {"web_message": name}}
    rc, printed, res = bake_json(env, workdir, extra)
    assert rc == 0 and res["changed"] is True, res
    return extra, printed, res


def test_bake_announces_its_log_in_the_state_directory(baked, env):
    _extra, printed, res = baked
    log = res["log_file"]
    assert os.path.dirname(log) == os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "bake-logs")
    assert ANNOUNCE + log in printed, printed
    assert "Provisioning with Ansible" in open(log).read()


def test_noop_bake_is_answered_on_the_controller(baked, env, workdir, registry):
    extra, _printed, first = baked
    logs = os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "bake-logs")
    before = set(os.listdir(logs))
    rc, printed, res = bake_json(env, workdir, extra)
    assert rc == 0 and res["changed"] is False, res
    assert res["image"]["digest"] == first["image"]["digest"] and res["fingerprint"] == first["fingerprint"]
    assert res["parent"]["digest"] == first["parent"]["digest"]
    assert "invocation" not in res, "the module ran: the action did not answer the no-op itself"
    assert ANNOUNCE not in printed and set(os.listdir(logs)) == before
    assert versions(registry, extra["recipe_name"]) == ["1"]


def test_check_mode_creates_no_log_directory(baked, env, workdir):
    extra, _printed, _first = baked
    log_dir = os.path.join(workdir, "noop-logs-%s" % uuid.uuid4().hex[:6])
    extra = dict(extra, bake_log_dir=log_dir, recipe_variables={"web_message": "new inputs"})
    rc, printed, res = bake_json(env, workdir, extra, check=True)
    assert rc == 0 and res["changed"] is True and res["image"] is None, res
    assert not os.path.exists(log_dir) and ANNOUNCE not in printed
