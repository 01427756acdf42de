"""Role immutable.infra.web: what it installs, and that the service works when started."""

import json


def test_web_user_is_a_system_user(host):
    user = host.user("web")
    assert user.exists
    assert user.uid < 1000


def test_web_user_cannot_log_in(host):
    assert host.user("web").shell == "/usr/sbin/nologin"


def test_image_json_records_the_version(host):
    doc = json.loads(host.file("/opt/web/image.json").content_string)
    assert doc["version"] == "molecule"


def test_image_json_records_the_message(host):
    doc = json.loads(host.file("/opt/web/image.json").content_string)
    assert doc["message"] == "from molecule"


def test_service_is_root_owned_and_read_only_for_others(host):
    # The image runs it as `python3 /opt/web/web.py` (ENTRYPOINT): readable, not executable,
    # and never writable by the web user.
    service = host.file("/opt/web/web.py")
    assert service.user == "root"
    assert service.group == "root"
    assert service.mode == 0o644


def test_healthz_answers_ok(web_service, http_get):
    assert http_get("/healthz") == "ok\n"


def test_version_reports_the_image_version(version_doc):
    assert version_doc["version"] == "molecule"


def test_version_reports_the_message(version_doc):
    assert version_doc["message"] == "from molecule"


def test_version_reports_the_instance_id_from_the_environment(version_doc, instance_id):
    assert version_doc["instance"] == instance_id
