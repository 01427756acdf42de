"""server_group's health wait against real HTTP servers on loopback: a
service still starting is probed again at once, answers count one interval
apart, and a failing service is not hammered."""
from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from ansible_collections.immutable.infra.plugins.module_utils._platforms._base import Platform as BasePlatform
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError
from ansible_collections.immutable.infra.plugins.module_utils._server_group import health_spec, wait_healthy


class Platform(BasePlatform):
    """The platform calls the wait makes: the instance is running; it has no logs; its
    port is reached where the base interface says (127.0.0.1 and its published port)."""

    def instance(self, name):
        return {"name": name, "state": "running"}

    def logs(self, name, lines):
        return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """An HTTP server answering `status`, started `delay` seconds from now; records when it answered."""

    def __init__(self, status, delay=0.0):
        self.port, self.answers, self.listening_at = free_port(), [], None
        answers, code = self.answers, status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                answers.append(time.monotonic())
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = None
        self.handler = Handler
        self.timer = threading.Timer(delay, self._start)
        self.timer.start()

    def _start(self):
        self.server = http.server.HTTPServer(("127.0.0.1", self.port), self.handler)
        self.listening_at = time.monotonic()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def instance(self):
        return {"name": "svc-%d" % self.port, "ports": {8080: self.port}}

    def close(self):
        self.timer.cancel()
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def services():
    made = []
    yield lambda *a, **kw: made.append(Service(*a, **kw)) or made[-1]
    for s in made:
        s.close()


def test_a_starting_service_counts_from_its_first_answer(services):
    svc = services(200, delay=0.3)
    hc = health_spec({"interval": 2.0, "healthy_threshold": 2}, 8080)
    assert wait_healthy(Platform(), [svc.instance()], hc, 30) == {svc.instance()["name"]: 200}
    first, second = svc.answers
    assert first - svc.listening_at < 1.0          # probed again at once, not a whole interval later
    assert second - first >= 2.0                   # consecutive answers one interval apart


def test_a_failing_service_is_probed_once_an_interval(services):
    svc = services(500)
    hc = health_spec({"interval": 0.5, "healthy_threshold": 2}, 8080)
    with pytest.raises(ImmutableInfraError, match="not healthy within 1.2s.*last answer: 500"):
        wait_healthy(Platform(), [svc.instance()], hc, 1.2)
    assert 2 <= len(svc.answers) <= 4
