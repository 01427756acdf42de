from __future__ import annotations

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _catalog as catalog
from ansible_collections.immutable.infra.plugins.module_utils._bake import plan
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("ref,expected", [
    ("web", {"registry": "r:5000", "name": "web", "tag": None, "digest": None}),
    ("immutable/base:3", {"registry": "r:5000", "name": "immutable/base", "tag": "3", "digest": None}),
    ("127.0.0.1:5000/web@" + D, {"registry": "127.0.0.1:5000", "name": "web", "tag": None, "digest": D}),
    ("localhost/web:1@" + D, {"registry": "localhost", "name": "web", "tag": "1", "digest": D}),
    ("quay.example.com/a/b:v1.2", {"registry": "quay.example.com", "name": "a/b", "tag": "v1.2", "digest": None}),
])
def test_parse_reference(ref, expected):
    assert catalog.parse_reference(ref, default_registry="r:5000") == expected


@pytest.mark.parametrize("ref", ["", "Web", "web@sha256:abc", "web:bad tag", " web", "web:", "a//b"])
def test_parse_reference_rejects_junk(ref):
    with pytest.raises(ImmutableInfraError, match="invalid"):
        catalog.parse_reference(ref, default_registry="r:5000")


def test_parse_reference_needs_a_registry():
    with pytest.raises(ImmutableInfraError, match="names no registry"):
        catalog.parse_reference("web")


@pytest.mark.parametrize("registry,loop", [
    ("127.0.0.1:5000", True), ("localhost:5000", True), ("127.1.2.3", True), ("[::1]:5000", True),
    ("registry.example.com", False), ("10.0.0.1:5000", False),
])
def test_loopback_registries_default_to_plain_http(registry, loop):
    assert catalog.is_loopback(registry) is loop
    assert catalog.Catalog(registry).validate_certs is (not loop)
    assert catalog.Catalog(registry, validate_certs=True).validate_certs is True


def test_next_version_counts_up_from_the_highest_number():
    assert catalog.next_version([]) == "1"
    assert catalog.next_version(["1", "2", "10", "latest", "2024.06.1"]) == "11"
    assert catalog.next_version(["latest"]) == "1"


def test_versions_sort_numerically_then_by_name():
    assert sorted(["10", "2", "b", "1", "a"], key=catalog.version_key) == ["1", "2", "10", "a", "b"]


@pytest.mark.parametrize("bad", ["", ".1", "-x", "a b", "x" * 129, "v/1"])
def test_validate_version_rejects_bad_tags(bad):
    with pytest.raises(ImmutableInfraError, match="invalid version"):
        catalog.validate_version(bad)


def test_version_facts_from_labels():
    facts = catalog.version_facts("r/web", "2", {"Digest": D, "Created": "t0", "Labels": {
        catalog.LABEL_VERSION: "2", catalog.LABEL_FINGERPRINT: "sha256:f", catalog.LABEL_BASE_DIGEST: D}})
    assert facts["reference"] == "r/web@" + D
    assert facts["fingerprint"] == "sha256:f" and facts["parent_digest"] == D
    assert facts["created"] == "t0"


class FixedCatalog(catalog.Catalog):
    """A catalog whose registry content is given: plan()'s decisions and the
    newest-first search are under test, not skopeo. Records what was inspected."""

    def __init__(self, versions):
        super().__init__("r:5000")
        self.inspected = []
        self._by_tag = {t: catalog.version_facts("r:5000/web", t, {"Digest": D, "Labels": {
            catalog.LABEL_VERSION: t, catalog.LABEL_FINGERPRINT: fp}}) for t, fp in versions}

    def list_tags(self, name):
        return list(self._by_tag)

    def inspect(self, name, tag_or_digest):
        self.inspected.append(tag_or_digest)
        return self._by_tag.get(tag_or_digest)


def test_no_op_lookup_reads_only_the_newest_version():
    cat = FixedCatalog([(str(n), "f%d" % n) for n in range(1, 41)])
    assert cat.find_fingerprint("web", "f40")["version"] == "40"
    assert cat.inspected == ["40"]


def test_lookup_then_goes_a_batch_at_a_time():
    cat = FixedCatalog([(str(n), "f%d" % n) for n in range(1, 41)])
    assert cat.find_fingerprint("web", "f35")["version"] == "35"
    assert sorted(cat.inspected, key=int) == [str(n) for n in range(32, 41)]


def test_newest_inspects_one_version_and_skips_a_deleted_tag():
    cat = FixedCatalog([(str(n), "f%d" % n) for n in range(1, 11)] + [("rc1", "fx")])
    assert cat.resolve("web")["version"] == "rc1"          # named tags sort after numbers
    assert cat.inspected == ["rc1"]
    cat = FixedCatalog([(str(n), "f%d" % n) for n in range(1, 11)])
    cat.list_tags = lambda name: [str(n) for n in range(1, 12)]  # 11 is listed but gone
    assert cat.resolve("web")["version"] == "10"
    assert cat.inspected == ["11", "10"]


def test_fingerprint_search_reaches_old_versions():
    cat = FixedCatalog([(str(n), "f%d" % n) for n in range(1, 41)])
    assert cat.find_fingerprint("web", "f2")["version"] == "2"
    assert cat.find_fingerprint("web", "nope") is None


def test_plan_returns_the_existing_version_for_a_known_fingerprint():
    action, what = plan(FixedCatalog([("1", "fa"), ("2", "fb")]), "web", "fa")
    assert action == "exists" and what["version"] == "1"


def test_plan_bakes_the_next_number_for_new_inputs():
    assert plan(FixedCatalog([("1", "fa"), ("2", "fb")]), "web", "fc") == ("bake", "3")


def test_plan_force_rebakes_known_inputs():
    assert plan(FixedCatalog([("1", "fa")]), "web", "fa", force=True) == ("bake", "2")


def test_plan_refuses_to_overwrite_a_named_version():
    with pytest.raises(ImmutableInfraError, match="already exists with other inputs"):
        plan(FixedCatalog([("1", "fa")]), "web", "fb", version="1")


def test_plan_named_version_with_same_inputs_is_a_no_op():
    action, what = plan(FixedCatalog([("1", "fa")]), "web", "fa", version="1")
    assert action == "exists" and what["tag"] == "1"


def test_plan_takes_a_new_named_version():
    assert plan(FixedCatalog([("1", "fa")]), "web", "fb", version="2024.06.1") == ("bake", "2024.06.1")


def test_plan_force_does_not_overwrite_a_named_version_with_the_same_inputs():
    with pytest.raises(ImmutableInfraError, match="already exists with the same inputs"):
        plan(FixedCatalog([("1", "fa")]), "web", "fa", version="1", force=True)


def _image(labels=None):
    return {"reference": "r/app@" + D, "labels": labels or {}}


def _config(*ports):
    return {"config": {"ExposedPorts": {p: {} for p in ports}}}


@pytest.mark.parametrize("image,config,expected", [
    (_image(), _config("9000/tcp"), (9000, "expose")),
    (_image(), _config("9000"), (9000, "expose")),
    (_image(), _config("9000/tcp", "53/udp"), (9000, "expose")),
    (_image({catalog.LABEL_PORT: "9001"}), _config("9000/tcp", "9001/tcp"), (9001, "label")),
    (_image({catalog.LABEL_PORT: "7000"}), None, (7000, "label")),
])
def test_declared_port(image, config, expected):
    port, source, warning = catalog.declared_port(image, config)
    assert (port, source) == expected and warning is None


def test_declared_port_falls_back_to_8080_with_a_warning():
    port, source, warning = catalog.declared_port(_image(), {"config": {}})
    assert (port, source) == (8080, "default") and "declares no service port" in warning and "r/app@" in warning


def test_several_exposed_ports_without_a_label_are_an_error():
    with pytest.raises(ImmutableInfraError, match=r"exposes several ports \(80, 9000\).*`port`"):
        catalog.declared_port(_image(), _config("9000/tcp", "80/tcp"))


@pytest.mark.parametrize("value", ["http", "0", "70000", "9000/tcp"])
def test_bad_port_label_is_an_error_naming_it(value):
    with pytest.raises(ImmutableInfraError, match="not a port number: %r" % value):
        catalog.declared_port(_image({catalog.LABEL_PORT: value}))


class PublishCatalog(catalog.Catalog):
    """publish() against canned registry answers; no command runs."""

    def __init__(self, answers):
        super().__init__("127.0.0.1:5000")
        self.answers = list(answers)

    def inspect(self, name, tag_or_digest):
        return self.answers.pop(0)


def test_publish_refuses_an_existing_version(monkeypatch):
    ran = []
    monkeypatch.setattr(catalog, "run", lambda argv, **kw: ran.append(argv) or (0, "", ""))
    with pytest.raises(ImmutableInfraError, match="already exists"):
        PublishCatalog([{"bake_id": "other"}]).publish("img", "web", "3", "mine")
    assert ran == []


def test_publish_reports_a_version_pushed_by_another_bake_at_once(monkeypatch):
    monkeypatch.setattr(catalog, "run", lambda argv, **kw: (0, "", ""))
    with pytest.raises(ImmutableInfraError, match="pushed by another bake .bake id theirs, not ours mine"):
        PublishCatalog([None, {"bake_id": "theirs"}]).publish("img", "web", "3", "mine")
    assert PublishCatalog([None, {"bake_id": "mine"}]).publish("img", "web", "3", "mine") == {"bake_id": "mine"}


@pytest.mark.parametrize("labels, fmt", [({}, "container"), ({"infra.immutable.format": "vm"}, "vm"),
                                         ({"infra.immutable.format": "container"}, "container")])
def test_version_facts_carry_the_format(labels, fmt):
    facts = catalog.version_facts("r/web", "1", {"Digest": "sha256:" + "0" * 64, "Labels": labels})
    assert facts["format"] == fmt
