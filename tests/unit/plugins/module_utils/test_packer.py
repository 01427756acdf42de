from __future__ import annotations

import os

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _packer as packer
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture_lines(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.readlines()


def test_decode_undoes_packer_escaping():
    assert packer.decode("a%!(PACKER_COMMA) b\\nc") == "a, b\nc"


def test_parse_line_rejects_non_machine_readable():
    assert packer.parse_line("plain text") is None
    assert packer.parse_line("123,web,artifact,0,id,abc") == ("123", "web", "artifact", ["0", "id", "abc"])


def test_successful_build_yields_one_docker_artifact():
    parsed = packer.parse_machine_readable(fixture_lines("packer-docker-ok.txt"))
    assert [a["index"] for a in parsed["artifacts"]] == [0]
    art = parsed["artifacts"][0]
    assert art["build"] == "docker.container"
    assert art["builder_id"] == "packer.post-processor.docker-import"
    assert art["id"] == "c54fe6d68d1a3e2959f8ca5a2e30263d63f37b244208b2f793c93d8fc381cb8d"
    assert packer.container_artifacts(parsed["artifacts"]) == {"docker.container": art["id"]}
    assert parsed["errors"] == []


def test_failed_provisioner_names_task_and_reason():
    parsed = packer.parse_machine_readable(fixture_lines("packer-provisioner-failed.txt"))
    assert parsed["artifacts"] == []
    errors = packer.relevant_errors(parsed)
    assert errors[0] == "TASK [Fail on purpose]"
    assert "[ERROR]: Task failed: Module failed: non-zero return code" in errors
    assert "fatal: [default]: FAILED! =>" in errors
    assert "msg: non-zero return code" in errors
    assert "Error executing Ansible: Non-zero exit status: exit status 2" in errors
    assert not any("Warning:" in e for e in errors)
    assert len(errors) == len(set(errors))


def test_artifact_with_files_and_tag_reference():
    lines = [
        "1,qemu.vm,artifact-count,1\n",
        "1,qemu.vm,artifact,0,builder-id,transcend.qemu\n",
        "1,qemu.vm,artifact,0,id,VM\n",
        "1,qemu.vm,artifact,0,files-count,1\n",
        "1,qemu.vm,artifact,0,file,0,output/disk.qcow2\n",
        "1,qemu.vm,artifact,0,end\n",
        "1,docker.c,artifact,0,builder-id,packer.docker\n",
        "1,docker.c,artifact,0,id,sha256:1\n",
        "1,docker.c,artifact,1,builder-id,packer.post-processor.docker-tag\n",
        "1,docker.c,artifact,1,id,127.0.0.1:5000/web:3\n",
    ]
    parsed = packer.parse_machine_readable(lines)
    vm = [a for a in parsed["artifacts"] if a["build"] == "qemu.vm"][0]
    assert vm["files"] == ["output/disk.qcow2"]
    # A docker-tag reference wins over the bare image id; the VM disk is no container image.
    assert packer.container_artifacts(parsed["artifacts"]) == {"docker.c": "127.0.0.1:5000/web:3"}


@pytest.fixture
def recipe(tmp_path):
    d = tmp_path / "recipe"
    d.mkdir()
    (d / "build.pkr.hcl").write_text("build {}\n")
    (d / "playbook.yml").write_text("- hosts: all\n")
    role = tmp_path / "role"
    (role / "tasks").mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text("- name: x\n")
    return d, role


def base_fp(d, role, **kw):
    args = dict(recipe_dir=str(d), var_files=(), variables={"a": 1}, parent_digest="sha256:" + "0" * 64,
                collection_version="0.1.0", paths=[str(role)], only=())
    args.update(kw)
    return packer.fingerprint(**args)


def test_fingerprint_is_stable_and_formatted(recipe):
    d, role = recipe
    assert base_fp(d, role) == base_fp(d, role)
    assert base_fp(d, role).startswith("sha256:") and len(base_fp(d, role)) == 71


@pytest.mark.parametrize("change", [
    "template", "role", "variables", "parent", "collection", "only", "new_file", "rename",
])
def test_fingerprint_covers_every_input(recipe, change):
    d, role = recipe
    before = base_fp(d, role)
    kw = {}
    if change == "template":
        (d / "build.pkr.hcl").write_text("build { name = \"x\" }\n")
    elif change == "role":
        (role / "tasks" / "main.yml").write_text("- name: y\n")
    elif change == "variables":
        kw["variables"] = {"a": 2}
    elif change == "parent":
        kw["parent_digest"] = "sha256:" + "1" * 64
    elif change == "collection":
        kw["collection_version"] = "0.2.0"
    elif change == "only":
        kw["only"] = ["docker.container"]
    elif change == "new_file":
        (d / "extra.pkrvars.hcl").write_text("a = 1\n")
    elif change == "rename":
        (d / "playbook.yml").rename(d / "site.yml")
    assert base_fp(d, role, **kw) != before


def test_fingerprint_ignores_caches_and_logs(recipe):
    d, role = recipe
    before = base_fp(d, role)
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (d / "packer_cache").mkdir()
    (d / "packer_cache" / "iso").write_text("big")
    (d / "bake.log").write_text("noise")
    assert base_fp(d, role) == before


def test_fingerprint_leaves_out_the_recipes_tests(recipe):
    """A recipe's tests/ run against a baked version; editing them must not force a rebake.
    A nested directory named tests is still an input (only the recipe's own is left out)."""
    d, role = recipe
    before = base_fp(d, role)
    (d / "tests").mkdir()
    (d / "tests" / "test_web.py").write_text("def test_x():\n    pass\n")
    assert base_fp(d, role) == before
    (d / "files" / "tests").mkdir(parents=True)
    (d / "files" / "tests" / "data").write_text("copied into the image\n")
    assert base_fp(d, role) != before


def test_fingerprint_var_file_outside_recipe(recipe, tmp_path):
    d, role = recipe
    vf = tmp_path / "prod.pkrvars.hcl"
    vf.write_text("a = 1\n")
    one = base_fp(d, role, var_files=[str(vf)])
    vf.write_text("a = 2\n")
    assert base_fp(d, role, var_files=[str(vf)]) != one


def test_fingerprint_missing_path_is_an_error(recipe, tmp_path):
    d, _role = recipe
    with pytest.raises(ImmutableInfraError, match="does not exist"):
        base_fp(d, tmp_path / "nope")


def test_build_args():
    assert packer.build_args(["a.pkrvars.hcl"], ["docker.c", "qemu.v"], "x.json") == [
        "-var-file=a.pkrvars.hcl", "-var-file=x.json", "-only=docker.c,*.docker.c,qemu.v,*.qemu.v"]
    assert packer.build_args() == []


@pytest.mark.parametrize("config,warns", [
    ({"Cmd": ["/bin/sh"]}, True),
    ({"Cmd": ["/bin/sh"], "Entrypoint": ["/usr/bin/python3", "/srv/app.py"]}, True),
    ({"Cmd": ["bash"]}, True),
    ({"Cmd": None, "Entrypoint": ["/usr/bin/python3", "/srv/app.py"]}, False),
    ({"Cmd": ["/usr/bin/python3", "-m", "http.server"]}, False),
    ({}, False),
])
def test_bake_warns_about_the_build_shell_as_command(config, warns):
    from ansible_collections.immutable.infra.plugins.module_utils._bake import build_shell_warning

    warning = build_shell_warning(config, "web:3")
    assert bool(warning) is warns
    if warns:
        assert "web:3" in warning and "CMD []" in warning and config["Cmd"][0] in warning


SOURCES = """
source "docker" "container" {
  image = var.parent_image
}
  source  "qemu"   "vm" {
}
source "null" "other" {}
"""


def test_recipe_sources_and_selection(tmp_path):
    (tmp_path / "sources.pkr.hcl").write_text(SOURCES)
    sources = packer.recipe_sources([str(tmp_path / "sources.pkr.hcl")])
    assert sources == ["docker.container", "qemu.vm", "null.other"]
    two = sources[:2]
    assert packer.select_sources(two, [], "r") == ["docker.container"]      # empty: the container, as before
    assert packer.select_sources(["qemu.vm"], [], "r") == ["qemu.vm"]        # ... or every source without one
    assert packer.select_sources(two, ["container", "vm"], "r") == ["docker.container", "qemu.vm"]
    assert packer.select_sources(two, ["vm"], "r") == ["qemu.vm"]
    assert packer.select_sources(two, ["web.qemu.vm", "container"], "r") == ["qemu.vm", "docker.container"]
    assert [packer.source_format(s) for s in two] == ["container", "vm"]
    three = two + ["amazon-ebs.ami"]
    assert packer.select_sources(three, [], "r") == ["docker.container"]    # an AMI only when asked for
    assert packer.select_sources(three, ["ami"], "r") == ["amazon-ebs.ami"]
    assert packer.source_format("amazon-ebs.ami") == "ami"


@pytest.mark.parametrize("sources, only, message", [
    (["docker.container"], ["qemu.vm"], "unknown source 'qemu.vm' in only: recipe r has docker.container"),
    (["docker.container"], ["vm"], "recipe r has no vm source"),
    (["null.other"], ["null.other"], "immutable.infra bakes only amazon-ebs, docker, qemu sources"),
    (["docker.a", "docker.b"], [], "several container sources \\(docker.a, docker.b\\)"),
    (["null.other"], [], "no docker, qemu or amazon-ebs source to bake"),
])
def test_bad_source_selections_name_the_sources(sources, only, message):
    with pytest.raises(ImmutableInfraError, match=message):
        packer.select_sources(sources, only, "r")


def test_vm_artifacts_are_the_qemu_builds_qcow2():
    parsed = packer.parse_machine_readable([
        "1,web.qemu.vm,artifact,0,builder-id,transcend.qemu\n",
        "1,web.qemu.vm,artifact,0,id,VM\n",
        "1,web.qemu.vm,artifact,0,file,0,/tmp/out/disk.qcow2\n",
        "1,web.docker.container,artifact,0,builder-id,packer.docker\n",
        "1,web.docker.container,artifact,0,id,abc\n",
    ])
    assert packer.vm_artifacts(parsed["artifacts"]) == {"web.qemu.vm": "/tmp/out/disk.qcow2"}
    assert packer.container_artifacts(parsed["artifacts"]) == {"web.docker.container": "abc"}


def test_ami_artifacts_are_the_amazon_ebs_builds_amis_per_region():
    parsed = packer.parse_machine_readable([
        "1,web.amazon-ebs.ami-offline,artifact,0,builder-id,mitchellh.amazonebs\n",
        "1,web.amazon-ebs.ami-offline,artifact,0,id,eu-west-1:ami-0b%!(PACKER_COMMA)us-east-1:ami-0a\n",
        "1,web.docker.container,artifact,0,builder-id,packer.docker\n",
        "1,web.docker.container,artifact,0,id,abc\n",
    ])
    assert packer.ami_artifacts(parsed["artifacts"]) == {
        "web.amazon-ebs.ami-offline": {"eu-west-1": "ami-0b", "us-east-1": "ami-0a"}}
    assert packer.container_artifacts(parsed["artifacts"]) == {"web.docker.container": "abc"}


def test_offline_variant_is_the_build_blocks_communicator_none_source():
    web = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "packer", "web")
    templates = sorted(os.path.join(web, f) for f in os.listdir(web) if f.endswith(".pkr.hcl"))
    assert packer.offline_variant(templates, "amazon-ebs.ami") == "amazon-ebs.ami-offline"
    assert packer.offline_variant(templates, "docker.container") is None


def test_fingerprint_extra_is_an_input_and_absent_keeps_old_fingerprints(recipe):
    d, role = recipe
    assert base_fp(d, role, extra=None) == base_fp(d, role)
    one = base_fp(d, role, extra={"regions": ["us-east-1"], "communicator": "none"})
    assert one != base_fp(d, role)
    assert one != base_fp(d, role, extra={"regions": ["us-east-1", "eu-west-1"], "communicator": "none"})
    assert one != base_fp(d, role, extra={"regions": ["us-east-1"], "communicator": "ssh"})
