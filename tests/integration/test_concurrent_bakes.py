"""Two bakes of one recipe started together, as two real ansible-playbook runs:
different inputs get a version number each; the same inputs are baked once."""
from __future__ import annotations

import os
import threading
import uuid

from conftest import TOP, versions

BAKE = os.path.join(TOP, "playbooks", "bake.yml")


def together(ansible, *extra_vars):
    """Start the bakes at the same moment; return their runs."""
    runs = [None] * len(extra_vars)
    gate = threading.Barrier(len(extra_vars))

    def one(i):
        gate.wait()
        runs[i] = ansible.playbook(BAKE, extra_vars[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(extra_vars))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return runs


def bake_vars(registry, name, message):
    return {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": name,
            "recipe_variables": {"web_message": message}}


def test_different_inputs_take_distinct_numbers(ansible, registry, base):
    name = "conc%s" % uuid.uuid4().hex[:6]
    runs = together(ansible, bake_vars(registry, name, "first"), bake_vars(registry, name, "second"))
    assert [r.rc for r in runs] == [0, 0], [r.stderr for r in runs]
    images = [r.result("Bake the recipe")["image"] for r in runs]
    assert sorted(i["version"] for i in images) == ["1", "2"]
    assert images[0]["fingerprint"] != images[1]["fingerprint"] and images[0]["digest"] != images[1]["digest"]
    assert versions(registry, name) == ["1", "2"]


def test_the_same_inputs_are_baked_once(ansible, registry, base):
    name = "conc%s" % uuid.uuid4().hex[:6]
    runs = together(ansible, bake_vars(registry, name, "same"), bake_vars(registry, name, "same"))
    assert [r.rc for r in runs] == [0, 0], [r.stderr for r in runs]
    results = [r.result("Bake the recipe") for r in runs]
    assert sorted(r["changed"] for r in results) == [False, True]
    assert {r["image"]["digest"] for r in results} == {results[0]["image"]["digest"]}
    assert {r["image"]["version"] for r in results} == {"1"}
    assert versions(registry, name) == ["1"]
