"""The web recipe's qemu source: the same roles bake a sealed qcow2 golden
image, published as its own version in <name>-vm, once per fingerprint, and
booting to a healthy service with the identity the platform gives it."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid

from conftest import TOP, QemuVM, fetch_vm_image, tags, vm_accelerator, versions

BAKE = os.path.join(TOP, "playbooks", "bake.yml")


def http(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=3) as resp:
            return resp.status, resp.read().decode()
    except OSError:
        return None


def test_the_vm_output_is_its_own_image_version(web_vm_image, registry):
    image = web_vm_image["image"]
    assert web_vm_image["changed"] is True and web_vm_image["name"] == "vmweb-vm"
    assert [(o["source"], o["format"]) for o in web_vm_image["outputs"]] == [("qemu.vm", "vm")]
    assert image["format"] == "vm" and image["digest"].startswith("sha256:")
    assert image["labels"]["infra.immutable.port"] == "8080"
    assert image["parent_name"].endswith("/immutable/base-vm")
    assert versions(registry, "vmweb-vm") == [image["version"]] and tags(registry, "vmweb") == []
    print("golden VM bake: %.1fs (Packer %.1fs)" % (web_vm_image["duration"], web_vm_image["packer_seconds"]))


def test_a_vm_rebake_is_answered_from_the_catalog(web_vm_image, ansible, registry):
    started = time.monotonic()
    run = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": "vmweb",
                                  "bake_only": "vm", "recipe_variables": {"web_message": "vmweb"}})
    assert run.rc == 0, run.stderr
    res = run.result("Bake the recipe")
    assert res["changed"] is False and res["image"]["digest"] == web_vm_image["image"]["digest"], res
    assert "invocation" not in res, "the module ran: the action did not answer the no-op itself"
    print("golden VM no-op: %.1fs" % (time.monotonic() - started))


def test_check_mode_validates_the_vm_source_and_bakes_nothing(web_vm_image, ansible, registry):
    run = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": "vmweb",
                                  "bake_only": "vm", "recipe_variables": {"web_message": "other"}}, check=True)
    assert run.rc == 0, run.stderr
    res = run.result("Bake the recipe")
    assert res["changed"] is True and res["image"] is None and res["name"] == "vmweb-vm", res
    assert res["commands"][0][:2] == ["packer", "validate"] and "-only=qemu.vm,*.qemu.vm" in res["commands"][0]
    assert versions(registry, "vmweb-vm") == [web_vm_image["image"]["version"]]


def test_the_golden_vm_boots_to_a_healthy_service(web_vm_image, env, workdir):
    image = fetch_vm_image(env, web_vm_image["image"]["reference"])
    iid = "i-%s" % uuid.uuid4().hex[:8]
    # WEB_PORT from the platform's environment wins over the baked port.
    with QemuVM(image, workdir, vm_accelerator(env), "web1", iid, env={"WEB_PORT": "8081", "ZONE": "z1"},
                ports=(8081,)) as vm:
        port = vm.ports[8081]
        assert vm.wait(lambda: http(port, "/healthz"), 300, "HTTP on /healthz") == (200, "ok\n")
        seconds = time.monotonic() - vm.started
        status, body = http(port, "/version")
        assert status == 200 and json.loads(body)["instance"] == iid and json.loads(body)["message"] == "vmweb"
    print("golden VM: HTTP 200 %.1fs after qemu started" % seconds)


def test_the_golden_disk_is_sealed(web_vm_image, env, workdir):
    image = fetch_vm_image(env, web_vm_image["image"]["reference"])
    raw = os.path.join(workdir, "sealed-%s.raw" % uuid.uuid4().hex[:6])
    subprocess.run(["qemu-img", "convert", "-O", "raw", image["disk"], raw], check=True)
    try:
        def debugfs(request):
            proc = subprocess.run(["debugfs", "-R", request, raw], capture_output=True, text=True, check=True)
            return proc.stdout
        assert "ssh_host_" not in debugfs("ls /etc/ssh") and "sshd_config" in debugfs("ls /etc/ssh")
        assert debugfs("cat /etc/machine-id") == ""
        assert "authorized_keys" not in debugfs("ls /root/.ssh")
        assert "web.service" in debugfs("ls /etc/systemd/system/multi-user.target.wants")
        assert "python3 /opt/web/web.py" in debugfs("cat /etc/systemd/system/web.service")
    finally:
        os.unlink(raw)


def test_a_bake_of_both_runs_packer_only_for_the_missing_output(web_vm_image, base, ansible, registry):
    run = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": "vmweb",
                                  "bake_only": "both", "recipe_variables": {"web_message": "vmweb"}})
    assert run.rc == 0, run.stderr
    res = run.result("Bake the recipe")
    outs = {o["format"]: o for o in res["outputs"]}
    assert outs["vm"]["changed"] is False and outs["vm"]["image"]["digest"] == web_vm_image["image"]["digest"]
    assert outs["container"]["changed"] is True and outs["container"]["image"]["format"] == "container"
    assert outs["container"]["fingerprint"] != outs["vm"]["fingerprint"]
    builds = [c for c in res["commands"] if c[:2] == ["packer", "build"]]
    assert len(builds) == 1 and any(a.startswith("-only=docker.container") for a in builds[0]), builds
    assert versions(registry, "vmweb") == ["1"] and versions(registry, "vmweb-vm") == [web_vm_image["image"]["version"]]
    print("container bake of the same recipe: %.1fs (Packer %.1fs)" % (res["duration"], res["packer_seconds"]))
    again = ansible.playbook(BAKE, {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": "vmweb",
                                    "bake_only": "both", "recipe_variables": {"web_message": "vmweb"}})
    hit = again.result("Bake the recipe")
    assert again.rc == 0 and hit["changed"] is False and "invocation" not in hit, hit
    assert [o["image"]["digest"] for o in hit["outputs"]] == [outs["container"]["image"]["digest"],
                                                              outs["vm"]["image"]["digest"]]
