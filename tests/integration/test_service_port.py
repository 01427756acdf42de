"""The image declares its service port. An outside recipe (tests/integration/
recipes/pyapi: a stdlib service on 9000, EXPOSE 9000, written against the
README's recipe contract only) is baked, then released without any service
port variable; server_group takes an explicit port too, and an existing group
keeps the port it runs. The bake warns about the docker builder's CMD trap."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from conftest import RELEASE, TOP, endpoint_version, free_port, instance_names, release_vars, versions

BAKE = os.path.join(TOP, "playbooks", "bake.yml")
PYAPI = os.path.join(TOP, "tests", "integration", "recipes", "pyapi")


def sg(ansible, registry, app, check=False, **kw):
    args = {"app": app, "stack": "prod", "registry": registry["address"], "health_check": {"interval": 0.2}}
    args.update(kw)
    return ansible.task("immutable.infra.server_group", args, check=check)


def build_shell_warnings(res):
    return [w for w in res.get("warnings") or [] if "build shell" in w]


@pytest.fixture(scope="module")
def pyapi(ansible, registry, base):
    run = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": PYAPI})
    assert run.rc == 0, run.stderr
    return run.result("Bake the recipe")


@pytest.fixture(scope="module")
def committed(registry, base):
    """Images made straight from the base image with podman commit, pushed to the
    registry: {'multi': two EXPOSEs, 'labelled': two EXPOSEs and a port label}."""
    ctr = "it-port-%s" % uuid.uuid4().hex[:6]
    repo = "%s/portcases%s" % (registry["address"], uuid.uuid4().hex[:6])
    subprocess.run(["podman", "create", "--tls-verify=false", "--name", ctr, base["image"]["reference"]],
                   check=True, capture_output=True)
    refs = {}
    try:
        for tag, changes in (("multi", ["EXPOSE 9000", "EXPOSE 9001"]),
                             ("labelled", ["EXPOSE 9000", "EXPOSE 9001", "LABEL infra.immutable.port=9001"])):
            ref = "%s:%s" % (repo, tag)
            argv = ["podman", "commit", "-q"]
            for c in changes:
                argv += ["--change", c]
            subprocess.run(argv + [ctr, ref], check=True, capture_output=True)
            subprocess.run(["podman", "push", "-q", "--tls-verify=false", ref], check=True, capture_output=True)
            subprocess.run(["podman", "rmi", ref], capture_output=True, check=False)
            refs[tag] = ref
    finally:
        subprocess.run(["podman", "rm", "-f", ctr], capture_output=True, check=False)
    return refs


def test_outside_recipe_is_released_on_its_declared_port(pyapi, ansible, registry, apps):
    assert pyapi["changed"] is True and build_shell_warnings(pyapi) == []
    app, port = apps("pa"), free_port()
    # No service port anywhere: only the router's own endpoint port.
    run = ansible.playbook(RELEASE, release_vars(registry, app, "pyapi:%s" % pyapi["image"]["version"], port=port))
    assert run.rc == 0, run.stderr
    group = run.result("Create the new server group (or find the one running this image)")
    assert group["port"] == 9000 and group["port_source"] == "expose"
    doc = endpoint_version(port)
    assert doc["app"] == "pyapi" and doc["version"] == pyapi["image"]["version"]
    labels = subprocess.run(["podman", "ps", "--format", "{{.Labels}}", "--filter", "label=infra.immutable.app=%s" % app],
                            capture_output=True, text=True, check=True).stdout
    assert "infra.immutable.port:9000" in labels


def test_explicit_port_wins_and_an_existing_group_keeps_its_port(pyapi, ansible, registry, apps):
    app = apps("pb")
    image = "pyapi:%s" % pyapi["image"]["version"]
    rc, res = sg(ansible, registry, app, check=True, image=image, port=9100, env={"PYAPI_PORT": "9100"})
    assert rc == 0 and res["port"] == 9100 and res["port_source"] == "option" and instance_names(app) == []
    # The service listens where PYAPI_PORT says: only the explicit port makes it healthy.
    rc, res = sg(ansible, registry, app, image=image, port=9100, env={"PYAPI_PORT": "9100"}, wait_timeout=30)
    assert rc == 0, res
    assert res["changed"] and res["port"] == 9100 and res["port_source"] == "option"
    assert set(res["health"].values()) == {200}
    rc, res = sg(ansible, registry, app, image=image, port=9200, env={"PYAPI_PORT": "9100"})
    assert rc == 0 and not res["changed"], res
    assert res["port"] == 9100 and res["port_source"] == "group"
    assert any("runs port 9100" in w for w in res.get("warnings") or []), res
    rc, res = sg(ansible, registry, app, image=image, env={"PYAPI_PORT": "9100"})
    assert rc == 0 and not res["changed"] and res["port"] == 9100 and res["port_source"] == "group"


def test_port_label_wins_over_several_exposed_ports(committed, ansible, registry, apps):
    app = apps("pc")
    rc, res = sg(ansible, registry, app, check=True, image=committed["labelled"])
    assert rc == 0 and res["port"] == 9001 and res["port_source"] == "label", res


def test_several_exposed_ports_need_a_port(committed, ansible, registry, apps):
    app = apps("pd")
    rc, res = sg(ansible, registry, app, check=True, image=committed["multi"])
    assert rc != 0 and "9000, 9001" in res["msg"] and "`port`" in res["msg"], res
    rc, res = sg(ansible, registry, app, check=True, image=committed["multi"], port=9001)
    assert rc == 0 and res["port"] == 9001 and res["port_source"] == "option"


def test_no_declared_port_falls_back_to_8080_with_a_warning(base, ansible, registry, apps):
    app = apps("pe")
    rc, res = sg(ansible, registry, app, check=True, image="immutable/base")
    assert rc == 0 and res["port"] == 8080 and res["port_source"] == "default", res
    assert any("declares no service port" in w for w in res.get("warnings") or []), res


def test_bake_warns_when_the_build_shell_is_the_command(pyapi, ansible, registry, base, workdir):
    name = "shellcmd%s" % uuid.uuid4().hex[:6]
    recipe = os.path.join(workdir, "recipes", name)
    shutil.copytree(PYAPI, recipe)
    path = os.path.join(recipe, "sources.pkr.hcl")
    text = open(path).read()
    assert '"CMD []",' in text
    with open(path, "w") as f:
        f.write(text.replace('      "CMD []",\n', ""))
    run = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": recipe})
    assert run.rc == 0, run.stderr
    res = run.result("Bake the recipe")
    warned = build_shell_warnings(res)
    assert len(warned) == 1 and '["/bin/sh"]' in warned[0] and "CMD []" in warned[0], res.get("warnings")
    assert versions(registry, name) == [res["image"]["version"]]
