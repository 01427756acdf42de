"""Baking for real: Packer, podman and the registry; then running the image."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import TOP, free_port, tags, versions

BAKE = os.path.join(TOP, "playbooks", "bake.yml")


def bake_vars(registry, **kw):
    v = {"catalog_registry": registry["address"], "recipe": "web"}
    v.update(kw)
    return v


def http_get_json(url, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.loads(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def serve(reference):
    """Run an image version on 127.0.0.1 and return what /version says."""
    name = "it-web-%s" % uuid.uuid4().hex[:8]
    port = free_port()
    subprocess.run(["podman", "run", "-d", "--tls-verify=false", "--name", name, "-p", "127.0.0.1:%d:8080" % port,
                    "-e", "INSTANCE_ID=%s" % name, reference], check=True, capture_output=True)
    try:
        return http_get_json("http://127.0.0.1:%d/version" % port), name
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "2", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def web_v1(ansible, registry, base):
    check = ansible.playbook(BAKE, bake_vars(registry), check=True, diff=True)
    assert check.rc == 0, check.stderr
    planned = check.result("Bake the recipe")
    assert planned["changed"] is True and planned["image"] is None and planned["version"] == "1"
    assert planned["diff"] == {"before": "", "after": "%s/web:1\n" % registry["address"],
                               "before_header": "%s/web" % registry["address"], "after_header": "%s/web" % registry["address"]}
    assert planned["commands"][0][:2] == ["packer", "validate"]
    assert tags(registry, "web") == [], "check mode must not push anything"

    run = ansible.playbook(BAKE, bake_vars(registry))
    assert run.rc == 0, run.stderr
    return run


def test_bake_records_the_version_with_its_facts(web_v1, base, registry):
    res = web_v1.result("Bake the recipe")
    assert res["changed"] is True
    img = res["image"]
    assert img["version"] == "1" and img["tag"] == "1"
    assert img["reference"] == "%s/web@%s" % (registry["address"], img["digest"])
    assert img["parent_digest"] == base["image"]["digest"]
    assert img["fingerprint"] == res["fingerprint"]
    assert img["recipe"] == "web" and img["created"] and img["bake_id"]
    assert versions(registry, "web") == ["1"]
    assert not [w for w in res.get("warnings") or [] if "build shell" in w], "web resets its CMD"


def test_bake_log_can_be_followed(web_v1, env):
    log = web_v1.result("Bake the recipe")["log_file"]
    assert os.path.dirname(log) == os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "bake-logs")
    text = open(log).read()
    assert "Provisioning with Ansible" in text and "immutable.infra.seal" in text


def test_baked_image_serves_its_version(web_v1):
    img = web_v1.result("Bake the recipe")["image"]
    doc, name = serve(img["reference"])
    assert doc == {"app": "web", "version": "1", "message": "hello from immutable.infra", "instance": name}


def test_unchanged_inputs_do_not_run_packer(web_v1, ansible, registry, env):
    logs = os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "bake-logs")
    before = set(os.listdir(logs))
    run = ansible.playbook(BAKE, bake_vars(registry))
    assert run.rc == 0
    res = run.result("Bake the recipe")
    assert res["changed"] is False
    assert res["image"]["digest"] == web_v1.result("Bake the recipe")["image"]["digest"]
    assert "packer_seconds" not in res and "commands" not in res
    assert set(os.listdir(logs)) == before, "Packer wrote a log: it ran"
    assert run.changed == 0


def test_changed_input_bakes_a_new_visible_version(web_v1, ansible, registry):
    run = ansible.playbook(BAKE, bake_vars(registry, recipe_variables={"web_message": "second"}))
    assert run.rc == 0, run.stderr
    img = run.result("Bake the recipe")["image"]
    assert img["version"] == "2"
    doc, _name = serve(img["reference"])
    assert doc["version"] == "2" and doc["message"] == "second"


def test_image_info_finds_versions(web_v1, ansible, registry):
    fp = web_v1.result("Bake the recipe")["fingerprint"]
    rc, res = ansible.task("immutable.infra.image_info", {"name": "web", "registry": registry["address"], "fingerprint": fp})
    assert rc == 0 and [v["version"] for v in res["versions"]] == ["1"]
    rc, res = ansible.task("immutable.infra.image_info", {"name": "web", "registry": registry["address"]})
    assert rc == 0 and [v["version"] for v in res["versions"]][:1] == ["1"]
    rc, res = ansible.task("immutable.infra.image_info", {"name": "web", "registry": registry["address"], "version": "99"})
    assert rc == 0 and res["versions"] == []


def test_recipe_from_a_path_outside_the_collection(web_v1, ansible, registry, workdir):
    recipe = os.path.join(workdir, "elsewhere", "api")
    shutil.copytree(os.path.join(TOP, "packer", "web"), recipe)
    run = ansible.playbook(BAKE, bake_vars(registry, recipe=recipe))
    assert run.rc == 0, run.stderr
    img = run.result("Bake the recipe")["image"]
    assert img["repository"] == "%s/api" % registry["address"] and img["version"] == "1"
    assert versions(registry, "api") == ["1"]


def test_base_image_is_baked_once(base, ansible, registry):
    assert base["image"]["version"] == "1"
    run = ansible.playbook(os.path.join(TOP, "playbooks", "base.yml"), {"catalog_registry": registry["address"]})
    assert run.rc == 0 and run.changed == 0
    assert run.result("Build the base image")["image"]["digest"] == base["image"]["digest"]


def digest_of(registry, name, tag):
    proc = subprocess.run(["skopeo", "inspect", "--no-tags", "--tls-verify=false",
                           "docker://%s/%s:%s" % (registry["address"], name, tag)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)["Digest"]


@pytest.fixture(scope="module")
def named(ansible, registry, base):
    """A bake with a version name of its own, in a repository of its own."""
    name = "named%s" % uuid.uuid4().hex[:6]
    v = bake_vars(registry, recipe_name=name, recipe_version="2024.06.1", recipe_variables={"web_message": "named"})
    run = ansible.playbook(BAKE, v)
    assert run.rc == 0, run.stderr
    return name, v, run.result("Bake the recipe")


def test_a_named_version_is_used(named, registry):
    name, _v, res = named
    assert res["changed"] and res["image"]["version"] == "2024.06.1" and res["image"]["tag"] == "2024.06.1"
    assert versions(registry, name) == ["2024.06.1"]


def test_a_version_is_never_overwritten(named, ansible, registry):
    name, v, first = named
    digest = digest_of(registry, name, "2024.06.1")
    other = ansible.playbook(BAKE, dict(v, recipe_variables={"web_message": "other inputs"}))
    assert other.rc != 0
    msg = other.result("Bake the recipe")["msg"]
    assert "%s:2024.06.1 already exists with other inputs" % name in msg and "versions are immutable" in msg
    assert versions(registry, name) == ["2024.06.1"] and digest_of(registry, name, "2024.06.1") == digest

    same = ansible.playbook(BAKE, v)
    assert same.rc == 0 and same.changed == 0
    assert same.result("Bake the recipe")["image"]["digest"] == digest == first["image"]["digest"]

    forced = ansible.playbook(BAKE, dict(v, bake_force=True))
    assert forced.rc != 0
    assert "already exists with the same inputs" in forced.result("Bake the recipe")["msg"]
    assert versions(registry, name) == ["2024.06.1"] and digest_of(registry, name, "2024.06.1") == digest


def test_force_bakes_the_same_inputs_as_a_new_version(named, ansible, registry):
    name, v, first = named
    run = ansible.playbook(BAKE, dict(v, recipe_version="", bake_force=True))
    assert run.rc == 0, run.stderr
    res = run.result("Bake the recipe")
    assert res["changed"] and res["image"]["version"] == "1"
    assert res["image"]["fingerprint"] == first["image"]["fingerprint"]
    assert res["image"]["digest"] != first["image"]["digest"] and res["image"]["bake_id"] != first["image"]["bake_id"]
    assert versions(registry, name) == ["1", "2024.06.1"]
    assert digest_of(registry, name, "2024.06.1") == first["image"]["digest"]
