"""The collection as users get it: built, installed with ansible-galaxy, and
its playbooks run by FQCN from outside the checkout."""
from __future__ import annotations

import glob
import os
import subprocess

from conftest import TOP, versions
from test_bake import serve


def test_bake_through_the_installed_collection(ansible, registry, base, workdir, env):
    dist = os.path.join(workdir, "dist")
    dest = os.path.join(workdir, "installed")
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", dist, TOP],
                   check=True, capture_output=True, env=env)
    tarball = glob.glob(os.path.join(dist, "immutable-infra-*.tar.gz"))[0]
    cfg = os.path.join(workdir, "installed.cfg")
    with open(cfg, "w") as f:
        f.write("[defaults]\ncollections_path = %s\n" % dest)
    # --no-deps: Galaxy is out of reach here; containers.podman comes from the `ansible` package.
    subprocess.run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", dest, tarball],
                   check=True, capture_output=True, env=dict(env, ANSIBLE_CONFIG=cfg))
    installed = os.path.join(dest, "ansible_collections", "immutable", "infra")
    assert os.path.isfile(os.path.join(installed, "MANIFEST.json"))
    outside = os.path.join(workdir, "outside")
    os.makedirs(outside, exist_ok=True)
    run_env = dict(env, ANSIBLE_CONFIG=cfg)
    argv = ["ansible-playbook", "immutable.infra.bake",
            "-e", "catalog_registry=%s" % registry["address"], "-e", "recipe_name=installed-web",
            "-e", '{"recipe_variables": {"web_message": "from the installed collection"}}']
    proc = subprocess.run(argv, cwd=outside, env=run_env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "installed-web version 1 baked" in proc.stdout
    assert versions(registry, "installed-web") == ["1"]
    doc, _name = serve("%s/installed-web:1" % registry["address"])
    assert doc["message"] == "from the installed collection" and doc["version"] == "1"
