"""AWX as code (awx/job_templates.yml, awx/configure.yml): every survey question is a variable its
playbook reads, surveys are valid AWX survey specs, and the workflow bake -> test -> promote -> release
is a graph of existing job templates."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
AWX = os.path.join(TOP, "awx")
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
JINJA = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.S)
NAME = re.compile(r"(?<![\w.'\"])([A-Za-z_]\w*)")
RAW_EXPRESSION_KEYS = {"when", "that", "changed_when", "failed_when", "until", "loop"}


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


DEFS = load(os.path.join(AWX, "job_templates.yml"))
TEMPLATES = {t["name"]: t for t in DEFS["immutable_job_templates"]}


def _names_in(text):
    return set(NAME.findall(text))


def _walk(node, found, key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            _walk(v, found, k)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found, key)
    elif isinstance(node, str):
        for a, b in JINJA.findall(node):
            found |= _names_in(a + " " + b)
        if key in RAW_EXPRESSION_KEYS:
            found |= _names_in(node)


def variables_read(playbook):
    """The variables a playbook reads: its plays' vars (defaults the caller may override) and every name used
    in a Jinja expression or a conditional; import_playbook is followed."""
    found = set()
    for play in load(playbook):
        if "ansible.builtin.import_playbook" in play:
            found |= variables_read(os.path.join(os.path.dirname(playbook), play["ansible.builtin.import_playbook"]))
            continue
        found |= set(play.get("vars") or {})
        _walk(play.get("tasks") or [], found)
        _walk(play.get("vars") or {}, found)
    return found


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_survey_variable_is_read_by_the_playbook(name):
    template = TEMPLATES[name]
    path = os.path.join(TOP, template["playbook"])
    assert os.path.isfile(path), "%s: no playbook %s" % (name, template["playbook"])
    read = variables_read(path)
    for question in template["survey"]:
        assert question["variable"] in read, "%s asks for %r, which %s never reads" % (
            name, question["variable"], template["playbook"])
        assert not question["variable"].startswith("_"), "a survey must not set private variables"
    for var in template.get("extra_vars", {}):
        assert var in read, "%s sets %r, which %s never reads" % (name, var, template["playbook"])


def test_the_checker_catches_a_variable_nobody_reads():
    read = variables_read(os.path.join(TOP, "playbooks", "release.yml"))
    assert {"app", "release_count", "channel", "catalog_registry"} <= read
    assert "release_counts" not in read and "recipe" not in read


@pytest.mark.parametrize("survey", [t["survey"] for t in TEMPLATES.values()] + [DEFS["immutable_workflow"]["survey"]],
                         ids=sorted(TEMPLATES, key=list(TEMPLATES).index) + ["workflow"])
def test_surveys_are_valid_awx_survey_specs(survey):
    variables = [q["variable"] for q in survey]
    assert len(variables) == len(set(variables)), "a variable asked twice: %s" % variables
    for q in survey:
        assert {"variable", "question_name", "type", "required"} <= set(q), q
        assert q["type"] in SURVEY_TYPES, q
        if q["type"] in ("multiplechoice", "multiselect"):
            assert q["choices"] and all(isinstance(c, str) for c in q["choices"]), q
            assert q.get("default", "") in q["choices"] + [""], q
        elif q["type"] == "integer":
            assert isinstance(q.get("default", 0), int) and q.get("min", 0) <= q.get("default", q.get("min", 0)), q
        elif q["type"] == "float":
            assert isinstance(q.get("default", 0), (int, float)), q
        else:
            assert isinstance(q.get("default", ""), str), q


def test_the_workflow_is_bake_test_promote_release_over_existing_templates():
    wf = DEFS["immutable_workflow"]
    nodes = {n["identifier"]: n for n in wf["nodes"]}
    for node in nodes.values():
        assert node["template"] in TEMPLATES, node
        for target in node.get("success", []) + node.get("failure", []):
            assert target in nodes, "%s points at unknown node %s" % (node["identifier"], target)
    chain, here = [], "bake"
    while here:
        chain.append(TEMPLATES[nodes[here]["template"]]["playbook"])
        nxt = nodes[here].get("success", [])
        assert len(nxt) <= 1
        here = nxt[0] if nxt else None
    assert chain == ["awx/bake.yml", "playbooks/test_image.yml", "playbooks/promote.yml", "playbooks/release.yml"]
    assert nodes["test"]["failure"] == ["revoke"]
    # What the nodes need and nobody asks: image and version come from the bake's artifacts (set_stats).
    bake_stats = load(os.path.join(AWX, "bake.yml"))[1]["tasks"][0]["ansible.builtin.set_stats"]["data"]
    given = set(bake_stats) | {q["variable"] for q in wf["survey"]}
    assert {"image", "version"} <= set(bake_stats)
    for q in wf["survey"]:
        assert any(q["variable"] in variables_read(os.path.join(TOP, TEMPLATES[n["template"]]["playbook"]))
                   for n in wf["nodes"]), q
    for key in nodes["revoke"].get("extra_data", {}):
        assert key in variables_read(os.path.join(TOP, TEMPLATES["immutable revoke"]["playbook"]))
    assert {"image", "version", "revoke_reason"} <= given | set(nodes["revoke"]["extra_data"])


def test_configure_renders_the_workflow_nodes_awx_expects(tmp_path):
    """The nodes template as awx.awx.workflow_job_template receives it (rendered by ansible, offline)."""
    play = [{"name": "Render", "hosts": "localhost", "gather_facts": False,
             "vars_files": [os.path.join(AWX, "job_templates.yml")], "vars": {"awx_organization": "Default"},
             "tasks": [{"name": "Render the nodes", "ansible.builtin.copy": {
                 "content": "{{ lookup('ansible.builtin.template', '%s/workflow_nodes.j2') | from_yaml | to_json }}" % AWX,
                 "dest": str(tmp_path / "nodes.json")}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run(["ansible-playbook", str(tmp_path / "play.yml")], cwd=TOP, env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nodes = {n["identifier"]: n for n in json.loads((tmp_path / "nodes.json").read_text())}
    assert nodes["bake"]["related"]["success_nodes"] == [{"identifier": "test"}]
    assert nodes["test"]["related"]["failure_nodes"] == [{"identifier": "revoke"}]
    wanted = {"name": "immutable release", "type": "job_template", "organization": {"name": "Default"}}
    assert nodes["release"]["unified_job_template"] == wanted
    assert nodes["revoke"]["extra_data"]["revoke_reason"]
