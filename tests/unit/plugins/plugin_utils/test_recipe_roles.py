"""recipe_role_paths: the roles a recipe applies are inputs of its fingerprint,
so each one must be found, or the bake must stop and say which one."""
from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.immutable.infra.plugins.plugin_utils import _collection
from ansible_collections.immutable.infra.plugins.plugin_utils._collection import COLLECTION_ROOT, RoleNotFound, recipe_role_paths


def write(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)


def role(base, name, deps=None):
    path = os.path.join(base, name)
    write(os.path.join(path, "tasks", "main.yml"), [{"name": "Do it", "ansible.builtin.debug": {"msg": name}}])
    if deps is not None:
        write(os.path.join(path, "meta", "main.yml"), {"dependencies": deps})
    return path


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """A recipe directory, and a collection acme.tools on a fake collection path."""
    colls = tmp_path / "collections"
    monkeypatch.setattr(_collection, "collections_paths", lambda: [str(colls)])
    d = tmp_path / "recipe"
    d.mkdir()
    return str(d), os.path.join(str(colls), "ansible_collections", "acme", "tools", "roles")


def test_roles_from_plays_tasks_and_blocks(recipe):
    rdir, _coll = recipe
    paths = {n: role(os.path.join(rdir, "roles"), n) for n in ("a", "b", "c", "d", "e")}
    write(os.path.join(rdir, "playbook.yml"), [{
        "hosts": "all", "roles": ["a", {"role": "b"}],
        "pre_tasks": [{"ansible.builtin.import_role": {"name": "c"}}],
        "tasks": [{"block": [{"include_role": {"name": "d"}}], "rescue": [{"import_role": {"name": "e"}}]}],
    }])
    assert recipe_role_paths(rdir, roles_path=[]) == sorted(paths.values())


def test_roles_through_meta_dependencies_and_collections(recipe):
    rdir, coll = recipe
    top = role(os.path.join(rdir, "roles"), "top", deps=["mid", {"role": "acme.tools.base"}])
    mid = role(os.path.join(rdir, "roles"), "mid", deps=[])
    # A bare dependency inside a collection role means a role of that collection.
    base = role(coll, "base", deps=["helper"])
    helper = role(coll, "helper")
    write(os.path.join(rdir, "playbook.yml"), [{"hosts": "all", "roles": ["top"]}])
    assert recipe_role_paths(rdir, roles_path=[]) == sorted([top, mid, base, helper])


def test_shipped_collection_roles(recipe):
    rdir, _coll = recipe
    write(os.path.join(rdir, "playbook.yml"), [{"hosts": "all", "roles": ["immutable.infra.web"]}])
    assert recipe_role_paths(rdir, roles_path=[]) == [os.path.join(COLLECTION_ROOT, "roles", "web")]


def test_roles_path_is_searched(recipe, tmp_path):
    rdir, _coll = recipe
    shared = role(str(tmp_path / "shared-roles"), "common")
    write(os.path.join(rdir, "playbook.yml"), [{"hosts": "all", "roles": ["common"]}])
    assert recipe_role_paths(rdir, roles_path=[str(tmp_path / "shared-roles")]) == [shared]


@pytest.mark.parametrize("play,missing", [
    ({"hosts": "all", "roles": ["nosuchrole"]}, "nosuchrole"),
    ({"hosts": "all", "tasks": [{"block": [{"ansible.builtin.include_role": {"name": "acme.tools.nope"}}]}]},
     "acme.tools.nope"),
    ({"hosts": "all", "roles": ["immutable.infra.nosuch"]}, "immutable.infra.nosuch"),
    ({"hosts": "all", "roles": ["{{ chosen_role }}"]}, "{{ chosen_role }}"),
])
def test_unknown_role_in_a_playbook_is_an_error(recipe, play, missing):
    rdir, _coll = recipe
    write(os.path.join(rdir, "site.yml"), [play])
    with pytest.raises(RoleNotFound) as err:
        recipe_role_paths(rdir, roles_path=[])
    assert repr(missing) in err.value.message and os.path.join(rdir, "site.yml") in err.value.message


def test_unknown_dependency_is_an_error_naming_the_meta_file(recipe):
    rdir, _coll = recipe
    top = role(os.path.join(rdir, "roles"), "top", deps=["ghost"])
    write(os.path.join(rdir, "playbook.yml"), [{"hosts": "all", "roles": ["top"]}])
    with pytest.raises(RoleNotFound) as err:
        recipe_role_paths(rdir, roles_path=[])
    assert "'ghost'" in err.value.message and os.path.join(top, "meta", "main.yml") in err.value.message


def test_dependency_cycles_end(recipe):
    rdir, _coll = recipe
    a = role(os.path.join(rdir, "roles"), "a", deps=["b"])
    b = role(os.path.join(rdir, "roles"), "b", deps=["a"])
    write(os.path.join(rdir, "playbook.yml"), [{"hosts": "all", "roles": ["a"]}])
    assert recipe_role_paths(rdir, roles_path=[]) == sorted([a, b])
