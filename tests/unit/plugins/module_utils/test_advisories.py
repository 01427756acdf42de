"""Advisory loading (OSV directory/zip/file/URL, the Debian security tracker's
JSON), exact Debian version ordering and matching by source package, on small
crafted feeds in tests/unit/fixtures/advisories (the real image's packages are
matched in the integration tests of image_scan)."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import threading
import zipfile

import pytest

from ansible_collections.immutable.infra.plugins.module_utils import _advisories as adv
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "advisories")
OSV_DIR = os.path.join(FIXTURES, "osv")
TRACKER = os.path.join(FIXTURES, "tracker.json")
BOOKWORM = {"id": "debian", "version_id": "12", "codename": "bookworm"}


def deb(name, version, source=None, source_version=None):
    return {"type": "deb", "name": name, "version": version, "arch": "amd64", "source": source or name,
            "source_version": source_version or version, "purl": "pkg:deb/debian/%s@%s" % (name, version)}


@pytest.fixture(scope="module")
def index():
    return adv.load_advisories([{"path": OSV_DIR}, {"path": TRACKER}])


def found(components, index, os_info=None):
    return {(f["id"], f["package"]): f for f in adv.match(os_info or BOOKWORM, components, index)}


# ------------------------------------------------------------------ ordering
@pytest.mark.parametrize("a, b, expected", [
    ("1:1.0", "2.0", 1),                       # an epoch beats any upstream version
    ("1.0~rc1", "1.0", -1),                    # '~' sorts before everything, even the end
    ("1.0~~", "1.0~", -1),
    ("1.0-1", "1.0-1+deb12u1", -1),            # a stable update sorts after its revision
    ("2.36-9+deb12u4", "2.36-9+deb12u10", -1),  # numerically, not as strings
    ("3.0.11-1~deb12u2", "3.0.11-1", -1),      # a backport-style ~ revision is below the plain one
    ("0:1.0", "1.0", 0),
    ("1.0", "1.0", 0),
    ("1.0-10", "1.0-9", 1),
    ("1.2.13.dfsg-1", "1:1.2.13.dfsg-1", -1),
])
def test_compare_versions_is_dpkg_ordering(a, b, expected):
    assert adv.compare_versions(a, b) == expected
    assert adv.compare_versions(b, a) == -expected  # pylint: disable=arguments-out-of-order


def test_compare_versions_rejects_a_non_version():
    with pytest.raises(ImmutableInfraError, match="cannot compare Debian versions"):
        adv.compare_versions("not a version!", "1.0")


def test_ranges_with_several_introduced_fixed_pairs_in_any_order():
    entry = ["X", [], "", [], None, None,
             [[["f", "1.0-7"], ["i", "1.0-5"], ["f", "1.0-2"], ["i", "0"]]], []]
    cases = {"0.9-1": (True, "1.0-2"), "1.0-1": (True, "1.0-2"), "1.0-2": (False, None), "1.0-3": (False, None),
             "1.0-5": (True, "1.0-7"), "1.0-6~bpo1": (True, "1.0-7"), "1.0-7": (False, None), "1:0.1": (False, None)}
    assert {v: adv.affects(v, entry, adv.compare_versions) for v in cases} == cases


# ------------------------------------------------------------------ matching
def test_installed_version_below_fix_is_found_by_source_package(index):
    got = found([deb("libssl3", "3.0.11-1~deb12u1", "openssl"), deb("openssl", "3.0.11-1~deb12u1")], index)
    for package in ("libssl3", "openssl"):
        finding = got[("CVE-2023-5678", package)]
        assert finding["source"] == "openssl" and finding["type"] == "deb"
        assert finding["installed"] == "3.0.11-1~deb12u1"
        assert finding["fixed"] == "3.0.11-1~deb12u2" and finding["fix_available"] is True
    assert ("CVE-2023-0001", "libssl3") not in got  # fixed in 3.0.9-1, below what is installed


def test_fixed_or_newer_version_is_not_found(index):
    assert not any(i == "CVE-2023-5678" for i, _p in found([deb("libssl3", "3.0.11-1~deb12u2", "openssl")], index))
    assert not any(i == "CVE-2023-5678" for i, _p in found([deb("libssl3", "3.0.13-1~deb12u1", "openssl")], index))


def test_binary_name_alone_does_not_match(index):
    """A binary called like an advisory's source package, built from another source, is not that package."""
    assert found([deb("openssl", "1.0-1", "not-openssl")], index) == {}


def test_source_version_is_compared_not_the_binnmu_version(index):
    # bash's binary 5.2.15-2+b2 is built from source 5.2.15-2, listed as affected
    got = found([deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2")], index)
    finding = got[("DEBIAN-CVE-2024-0002", "bash")]
    assert finding["installed"] == "5.2.15-2+b2" and finding["fixed"] is None and not finding["fix_available"]
    assert finding["severity"] == "medium"  # database_specific MODERATE
    assert found([deb("bash", "5.2.15-3")], index) == {}
    # DEBIAN-CVE-2020-0003 is withdrawn: never reported
    assert "DEBIAN-CVE-2020-0003" not in {i for i, _p in got}


def test_last_affected_is_inclusive(index):
    zlib = functools.partial(deb, "zlib1g", source="zlib")
    assert ("CVE-2024-0001", "zlib1g") in found([zlib("1:1.2.13.dfsg-1")], index)
    assert found([zlib("1:1.2.13.dfsg-1+b1", source_version="1:1.2.13.dfsg-2")], index) == {}
    assert found([zlib("1.2.13.dfsg-1")], index) == {}  # no epoch: below the introduced version


def test_tracker_open_and_resolved(index):
    libc = functools.partial(deb, "libc6", source="glibc")
    got = found([libc("2.36-9+deb12u4")], index)
    assert got[("CVE-2024-2961", "libc6")]["fixed"] == "2.36-9+deb12u7"
    assert got[("CVE-2024-2961", "libc6")]["severity"] == "high"
    open_one = got[("CVE-2010-4756", "libc6")]
    assert open_one["fixed"] is None and not open_one["fix_available"]
    assert (open_one["severity"], open_one["urgency"]) == ("negligible", "unimportant")
    assert ("CVE-2099-0001", "libc6") not in got  # fixed_version 0: never affected
    later = found([libc("2.36-9+deb12u10")], index)  # u10 > u7: fixed
    assert set(later) == {("CVE-2010-4756", "libc6")}
    perl = found([deb("perl-base", "5.36.0-7", "perl")], index)[("TEMP-0000000-ABCDEF", "perl-base")]
    assert (perl["severity"], perl["fix_available"]) == ("negligible", False)  # undetermined, end-of-life


def test_release_mapping(index):
    bullseye = {"id": "debian", "version_id": "11", "codename": "bullseye"}
    got = found([deb("libssl3", "1.1.1n-0+deb11u5", "openssl"), deb("libc6", "2.31-13", "glibc")], index, bullseye)
    assert set(got) == {("CVE-2023-5678", "libssl3")}  # the Debian:11 range only; no bookworm tracker entries
    finding = got[("CVE-2023-5678", "libssl3")]
    assert (finding["aliases"], finding["fixed"], finding["feeds"]) == (["DSA-5555-1"], "1.1.1w-0+deb11u1", [OSV_DIR])
    assert found([deb("libc6", "2.36-9", "glibc")], index, {"id": "ubuntu", "version_id": "22.04"}) == {}


def test_aliases_merge_feeds_into_one_finding(index):
    got = adv.match(BOOKWORM, [deb("libssl3", "3.0.11-1~deb12u1", "openssl")], index)
    assert [f["id"] for f in got] == ["CVE-2023-5678"]
    finding = got[0]
    assert finding["aliases"] == ["DSA-5555-1"]
    assert finding["feeds"] == sorted([OSV_DIR, TRACKER])
    assert finding["severity"] == "high"  # the CVSS vector (7.5) beats the tracker's "not yet assigned"
    assert finding["urgency"] == "not yet assigned"
    assert set(finding) == {"id", "aliases", "package", "source", "type", "installed", "fixed", "fix_available",
                            "severity", "urgency", "summary", "feeds"}


def test_an_advisory_fixing_several_cves_counts_in_each(tmp_path):
    """A DSA fixing two CVEs, one of them also in the tracker, and a GHSA linked to a CVE only through a PYSEC id."""
    records = [
        {"id": "DSA-6000-1", "modified": "2024-03-01T00:00:00Z", "aliases": ["CVE-2024-1111", "CVE-2024-2222"],
         "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.14-1~deb12u1"}]}]}]},
        {"id": "PYSEC-2024-9", "modified": "2024-03-01T00:00:00Z", "aliases": ["CVE-2024-3333"],
         "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"}, "versions": ["3.1.2"]}]},
        {"id": "GHSA-aaaa-bbbb-cccc", "modified": "2024-03-01T00:00:00Z", "aliases": ["PYSEC-2024-9"],
         "affected": [{"package": {"ecosystem": "PyPI", "name": "Jinja2"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.3"}]}]}]}]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    tracker = {"openssl": {"CVE-2024-1111": {"description": "from the tracker", "releases": {
        "bookworm": {"status": "resolved", "fixed_version": "3.0.13-1~deb12u1", "urgency": "medium"}}}}}
    tracker_path = tmp_path / "tracker.json"
    tracker_path.write_text(json.dumps(tracker))
    index = adv.load_advisories([{"path": str(path)}, {"path": str(tracker_path)}])
    comps = [deb("libssl3", "3.0.11-1~deb12u2", "openssl"), {"type": "pypi", "name": "jinja2", "version": "3.1.2"}]
    got = {f["id"]: f for f in adv.match(BOOKWORM, comps, index)}
    assert sorted(got) == ["CVE-2024-1111", "CVE-2024-2222", "CVE-2024-3333"]
    assert got["CVE-2024-1111"]["aliases"] == ["DSA-6000-1"] and got["CVE-2024-2222"]["aliases"] == ["DSA-6000-1"]
    assert got["CVE-2024-1111"]["fixed"] == "3.0.14-1~deb12u1"  # the later of the two feeds' fixes
    assert got["CVE-2024-1111"]["summary"] == "from the tracker" and len(got["CVE-2024-1111"]["feeds"]) == 2
    assert got["CVE-2024-2222"]["feeds"] == [str(path)]
    assert got["CVE-2024-3333"]["aliases"] == ["GHSA-aaaa-bbbb-cccc", "PYSEC-2024-9"]
    assert got["CVE-2024-3333"]["fixed"] == "3.1.3" and got["CVE-2024-3333"]["package"] == "jinja2"


def test_pypi_and_sorting(index):
    comps = [{"type": "pypi", "name": "requests", "version": "2.31.0", "purl": "pkg:pypi/requests@2.31.0"},
             deb("libc6", "2.36-9+deb12u4", "glibc"), deb("zlib1g", "1:1.2.13.dfsg-1", "zlib")]
    got = adv.match(BOOKWORM, comps, index)
    assert [(f["id"], f["package"]) for f in got] == sorted((f["id"], f["package"]) for f in got)
    pypi = [f for f in got if f["type"] == "pypi"]
    assert [(f["id"], f["aliases"], f["fixed"], f["severity"]) for f in pypi] == [
        ("GHSA-xxxx-yyyy-zzzz", ["PYSEC-2024-1"], "2.32.0", "high")]
    assert not adv.match(BOOKWORM, [dict(comps[0], version="2.32.0")], index)


def test_severity_order_of_sources():
    entry = ["X", [], "", [["CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"]], "LOW", "low", [], []]
    assert adv.severity(entry) == "critical"
    assert adv.severity(entry[:3] + [[], "Moderate", "high"] + entry[6:]) == "medium"
    for urgency, expected in (("high", "high"), ("medium**", "medium"), ("unimportant", "negligible"),
                              ("not yet assigned", "unknown"), (None, "unknown")):
        assert adv.severity(entry[:3] + [[], None, urgency] + entry[6:]) == expected


# ------------------------------------------------------------ loading, digest
def _records():
    out = []
    for top, _dirs, files in sorted(os.walk(OSV_DIR)):
        for name in sorted(files):
            with open(os.path.join(top, name)) as f:
                doc = json.load(f)
            out.extend(doc if isinstance(doc, list) else [doc])
    return out


def test_digest_ignores_file_order_and_layout(index, tmp_path):
    records = _records()
    one = tmp_path / "one"
    one.mkdir()
    for n, record in enumerate(reversed(records)):
        (one / ("%02d.json" % n)).write_text(json.dumps(record))
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for record in records:
            z.writestr("%s.json" % record["id"], json.dumps(record, indent=1))
    digests = {adv.load_advisories([{"path": str(p)}, {"path": TRACKER}]).digest for p in (one, archive)}
    assert digests == {index.digest}
    assert index.digest.startswith("sha256:") and len(index.digest) == 71
    assert adv.load_advisories([{"path": TRACKER}, {"path": str(archive)}]).digest == index.digest
    dsa = next(r for r in records if r["id"] == "DSA-5555-1")
    dsa["affected"][0]["ranges"][0]["events"][1]["fixed"] = "3.0.11-1~deb12u3"
    (one / "00.json").write_text(json.dumps(records))
    assert adv.load_advisories([{"path": str(one)}, {"path": TRACKER}]).digest != index.digest


def test_counts_per_source(index):
    # OSV: 4 records kept (the npm-only and the withdrawn ones are not); tracker: 5 (package, id) pairs
    assert index.sources == [{"source": OSV_DIR, "count": 4}, {"source": TRACKER, "count": 5}]
    assert index.count == 9


def test_cache_hit_after_first_load(tmp_path):
    osv = tmp_path / "osv"
    shutil.copytree(OSV_DIR, osv)
    cache = tmp_path / "cache"
    sources = [{"path": str(osv)}, {"path": TRACKER}]
    first = adv.load_advisories(sources, cache_dir=str(cache))
    second = adv.load_advisories(sources, cache_dir=str(cache))
    assert (first.cached, second.cached) == (0, 2)
    assert second.digest == first.digest and second.sources == first.sources
    comps = [deb("libssl3", "3.0.11-1~deb12u1", "openssl"), deb("libc6", "2.36-9+deb12u4", "glibc")]
    assert adv.match(BOOKWORM, comps, second) == adv.match(BOOKWORM, comps, first)
    # a changed file is a miss for its source only
    record = json.loads((osv / "DSA-5555-1.json").read_text())
    record["affected"][0]["ranges"][0]["events"][1]["fixed"] = "3.0.11-1~deb12u9"
    (osv / "DSA-5555-1.json").write_text(json.dumps(record))
    third = adv.load_advisories(sources, cache_dir=str(cache))
    assert third.cached == 1 and third.digest != first.digest
    assert found(comps, third)[("CVE-2023-5678", "libssl3")]["fixed"] == "3.0.11-1~deb12u9"
    # a damaged cache file is rebuilt, not trusted
    for name in os.listdir(cache):
        (cache / name).write_bytes(b"{garbage")
    assert adv.load_advisories(sources, cache_dir=str(cache)).cached == 0


def test_changed_feed_reuses_its_unchanged_parts(tmp_path, monkeypatch):
    """A new all.zip / tracker.json with one changed record: only that part is validated and normalised again."""
    records = _records()
    archive, tracker = tmp_path / "all.zip", tmp_path / "tracker.json"

    def write(fixed):
        next(r for r in records if r["id"] == "DSA-5555-1")["affected"][0]["ranges"][0]["events"][1]["fixed"] = fixed
        with zipfile.ZipFile(archive, "w") as z:
            for record in records:
                z.writestr("%s.json" % record["id"], json.dumps(record))
        with open(TRACKER) as f:
            doc = json.load(f)
        doc["openssl"]["CVE-2023-5678"]["releases"]["bookworm"]["fixed_version"] = fixed
        tracker.write_text(json.dumps(doc))

    calls = []
    for module, name in ((adv._osv, "normalise"), (adv._advisory_feeds._debian_tracker, "normalise_package")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, functools.partial(lambda real, *a: calls.append(a[0].get("id") if isinstance(a[0], dict) else a[0])
                                                            or real(*a), real))
    sources, cache = [{"path": str(archive)}, {"path": str(tracker)}], str(tmp_path / "cache")
    write("3.0.11-1~deb12u2")
    first = adv.load_advisories(sources, cache_dir=cache)
    assert len(calls) == len(records) + 3  # every record, every tracker package
    del calls[:]
    write("3.0.11-1~deb12u5")
    second = adv.load_advisories(sources, cache_dir=cache)
    assert second.cached == 0 and second.digest != first.digest
    assert sorted(calls) == ["DSA-5555-1", "openssl"]
    assert found([deb("libssl3", "3.0.11-1~deb12u4", "openssl")], second)[("CVE-2023-5678", "libssl3")]["fixed"] == \
        "3.0.11-1~deb12u5"
    fresh = adv.load_advisories(sources)  # no cache at all: the same index
    assert fresh.digest == second.digest and fresh.sources == second.sources


# -------------------------------------------------------------------- errors
def _error(tmp_path, sources):
    cache = tmp_path / "cache-err"
    with pytest.raises(ImmutableInfraError) as exc:
        adv.load_advisories(sources, cache_dir=str(cache))
    assert not cache.exists() or not os.listdir(cache)  # nothing stored
    return exc.value.msg


def test_malformed_json_names_the_file(tmp_path):
    bad = tmp_path / "osv" / "sub"
    bad.mkdir(parents=True)
    (bad / "broken.json").write_text('{"id": "X", ')
    msg = _error(tmp_path, [{"path": str(tmp_path / "osv")}])
    assert str(bad / "broken.json") in msg and "not valid JSON" in msg


def test_schema_violation_names_file_record_and_field(tmp_path):
    records = _records()
    records[1]["affected"][0]["ranges"] = [{"type": "ECOSYSTEM", "events": [{"introduced": 0}]}]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(records))
    msg = _error(tmp_path, [{"path": str(path), "format": "osv"}])
    assert "%s[1] (record %s)" % (path, records[1]["id"]) in msg
    assert "affected[0].ranges[0].events[0].introduced" in msg and "not of type 'string'" in msg
    path.write_text(json.dumps([{"id": "NO-MODIFIED"}]))
    assert "'modified' is a required property" in _error(tmp_path, [{"path": str(path)}])


def test_tracker_schema_violation_names_package_and_id(tmp_path):
    with open(TRACKER) as f:
        doc = json.load(f)
    doc["glibc"]["CVE-2024-2961"]["releases"]["bookworm"]["status"] = "fixed"
    path = tmp_path / "tracker.json"
    path.write_text(json.dumps(doc))
    msg = _error(tmp_path, [{"path": str(path)}])
    assert "%s: glibc CVE-2024-2961" % path in msg and "releases.bookworm.status" in msg


def test_zip_with_a_bad_member(tmp_path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("GOOD-1.json", json.dumps(_records()[0]))
        z.writestr("BAD-2.json", "not json")
    msg = _error(tmp_path, [{"path": str(archive)}])
    assert "%s!BAD-2.json" % archive in msg and "not valid JSON" in msg
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(archive.read_bytes()[:40])
    assert "not a readable zip archive" in _error(tmp_path, [{"path": str(truncated)}])


def test_unknown_layout_and_bad_sources(tmp_path):
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"hello": "world"}))
    assert "set format" in _error(tmp_path, [{"path": str(odd)}])
    assert "does not exist" in _error(tmp_path, [{"path": str(tmp_path / "missing.zip")}])
    (tmp_path / "empty").mkdir()
    assert "no OSV records" in _error(tmp_path, [{"path": str(tmp_path / "empty")}])
    assert "exactly one of path or url" in _error(tmp_path, [{"path": TRACKER, "url": "http://127.0.0.1/x"}])
    assert "format 'csv'" in _error(tmp_path, [{"path": TRACKER, "format": "csv"}])
    assert "non-empty list" in _error(tmp_path, [])


def test_unreachable_url(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    msg = _error(tmp_path, [{"url": "http://127.0.0.1:%d/tracker.json" % port}])
    assert "http://127.0.0.1:%d/tracker.json is unreachable" % port in msg and "refused" in msg.lower()


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_urls_over_http_and_file(index, http_root, tmp_path):
    root, base = http_root
    shutil.copy(TRACKER, root / "tracker.json")
    with zipfile.ZipFile(root / "all.zip", "w") as z:
        for record in _records():
            z.writestr("%s.json" % record["id"], json.dumps(record))
    loaded = adv.load_advisories([{"url": base + "/all.zip"}, {"url": "file://" + os.path.abspath(TRACKER)}])
    assert loaded.digest == index.digest
    assert [s["source"] for s in loaded.sources] == [base + "/all.zip", "file://" + os.path.abspath(TRACKER)]
    msg = _error(tmp_path, [{"url": base + "/missing.json"}])
    assert "answered HTTP 404" in msg and base + "/missing.json" in msg
    assert "only http://, https:// and file://" in _error(tmp_path, [{"url": "ftp://127.0.0.1/x"}])
