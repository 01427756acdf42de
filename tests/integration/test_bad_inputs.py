"""Every bad input fails with a message naming the problem and changes nothing:
no tag pushed, no build container left behind."""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from conftest import TOP, bake_containers, free_port, tags


def copy_recipe(workdir, name, extra_tasks=None):
    """A copy of the web recipe; extra_tasks (YAML text) are appended to its playbook."""
    dest = os.path.join(workdir, "bad", name)
    shutil.copytree(os.path.join(TOP, "packer", "web"), dest)
    if extra_tasks:
        with open(os.path.join(dest, "playbook.yml"), "a") as f:
            f.write("  tasks:\n" + extra_tasks)
    return dest


def bake(ansible, registry, **args):
    params = {"registry": registry["address"], "parent": "immutable/base"}
    params.update(args)
    return ansible.task("immutable.infra.image_bake", params)


def assert_failed_cleanly(rc, res, registry, name, *words):
    assert rc != 0 and res.get("failed"), res
    for w in words:
        assert w in res["msg"], "%r not in %r" % (w, res["msg"])
    assert tags(registry, name) == []
    assert [c for c in bake_containers() if c.startswith("immutable-bake-%s-" % name)] == []


def test_missing_template(ansible, registry, base, workdir):
    name = "empty-%s" % uuid.uuid4().hex[:6]
    recipe = os.path.join(workdir, "bad", name)
    os.makedirs(recipe)
    rc, res = bake(ansible, registry, recipe=recipe)
    assert_failed_cleanly(rc, res, registry, name, "no Packer template", recipe)


def test_missing_recipe_directory(ansible, registry, base, workdir):
    missing = os.path.join(workdir, "bad", "does-not-exist")
    rc, res = bake(ansible, registry, recipe=missing)
    assert rc != 0 and "does not exist" in res["msg"] and missing in res["msg"]


def test_unknown_shipped_recipe(ansible, registry, base):
    rc, res = bake(ansible, registry, recipe="nosuchrecipe")
    assert rc != 0 and "unknown recipe 'nosuchrecipe'" in res["msg"] and "web" in res["msg"]


def test_template_syntax_error(ansible, registry, base, workdir):
    name = "syntax-%s" % uuid.uuid4().hex[:6]
    recipe = copy_recipe(workdir, name)
    with open(os.path.join(recipe, "build.pkr.hcl"), "a") as f:
        f.write('\nbuild {\n  sources = [\n')
    rc, res = bake(ansible, registry, recipe=recipe)
    assert_failed_cleanly(rc, res, registry, name, "packer build", "build.pkr.hcl")


def test_failing_provisioner(ansible, registry, base, workdir):
    name = "failing-%s" % uuid.uuid4().hex[:6]
    recipe = copy_recipe(workdir, name, "    - name: Break the bake on purpose\n      ansible.builtin.command: /bin/false\n"
                                        "      changed_when: false\n")
    rc, res = bake(ansible, registry, recipe=recipe)
    assert_failed_cleanly(rc, res, registry, name, "TASK [Break the bake on purpose]", "non-zero return code")
    assert res["errors"] and os.path.exists(res["log_file"]) is False  # temporary log is cleaned up


def test_unknown_parent_image(ansible, registry, base, workdir):
    name = "orphan-%s" % uuid.uuid4().hex[:6]
    recipe = copy_recipe(workdir, name)
    rc, res = bake(ansible, registry, recipe=recipe, parent="immutable/nosuchbase")
    assert_failed_cleanly(rc, res, registry, name, "unknown image 'immutable/nosuchbase'")


def test_registry_not_running(ansible, registry, base, workdir):
    dead = "127.0.0.1:%d" % free_port()
    rc, res = ansible.task("immutable.infra.image_bake", {"recipe": "web", "registry": dead, "parent": "immutable/base"})
    assert rc != 0 and "not reachable" in res["msg"] and dead in res["msg"]


@pytest.mark.parametrize("version", ["bad tag", "-1"])
def test_bad_version(ansible, registry, base, workdir, version):
    name = "badver-%s" % uuid.uuid4().hex[:6]
    recipe = copy_recipe(workdir, name)
    rc, res = bake(ansible, registry, recipe=recipe, version=version)
    assert_failed_cleanly(rc, res, registry, name, "invalid version", repr(version))


def test_bad_option(ansible, registry, base):
    rc, res = bake(ansible, registry, recipe="web", no_such_option=1)
    assert rc != 0 and "no_such_option" in res["msg"]


def test_playbook_asserts_inputs(ansible, registry, base):
    bad = {"recipe_variables": "not-a-dict", "catalog_registry": registry["address"]}
    run = ansible.playbook(os.path.join(TOP, "playbooks", "bake.yml"), bad)
    assert run.rc != 0
    assert "recipe_variables=not-a-dict" in run.result("Check the inputs")["msg"]


def test_build_container_that_never_started_is_removed(ansible, registry, base, workdir):
    """podman run creates the build container, then cannot start it: Packer
    never knew it, so the bake removes it by the name it gave it."""
    name = "nostart-%s" % uuid.uuid4().hex[:6]
    recipe = copy_recipe(workdir, name)
    path = os.path.join(recipe, "sources.pkr.hcl")
    text = open(path).read()
    assert '"--name", var.build_name,' in text
    with open(path, "w") as f:
        f.write(text.replace('"--name", var.build_name,', '"--entrypoint", "/nonexistent", "--name", var.build_name,'))
    rc, res = bake(ansible, registry, recipe=recipe)
    assert_failed_cleanly(rc, res, registry, name, "packer build", "/nonexistent")


def test_tags_helper_fails_loudly_when_the_registry_is_down(registry):
    with pytest.raises(AssertionError, match="cannot list the tags"):
        tags({"address": "127.0.0.1:%d" % free_port()}, "web")
    assert tags(registry, "never-pushed-%s" % uuid.uuid4().hex[:6]) == []


def test_unknown_role_in_the_recipe(ansible, registry, base, workdir):
    name = "norole-%s" % uuid.uuid4().hex[:6]
    recipe = copy_recipe(workdir, name, "    - name: Apply a role that is nowhere\n      ansible.builtin.include_role:\n"
                                        "        name: acme.missing.thing\n")
    rc, res = bake(ansible, registry, recipe=recipe)
    assert_failed_cleanly(rc, res, registry, name, "role 'acme.missing.thing'", os.path.join(recipe, "playbook.yml"))
    assert "Traceback" not in res.get("exception", "") and "module_stderr" not in res
