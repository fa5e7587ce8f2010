"""``/metrics``: who may scrape it, and REST requests counted by route pattern (docs/protocol.md)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from config import metrics_dir
from tests.factories import UserFactory
from tests.support.metrics import scrape_value

pytestmark = pytest.mark.django_db
TOKEN = "scrape-token-for-tests-0123456789"


@pytest.fixture
def metrics_token(settings):
    settings.HERALD = {**settings.HERALD, "METRICS_TOKEN": TOKEN}
    return TOKEN


def test_anonymous_scrapes_get_401_with_the_error_shape(client, metrics_token):
    answer = client.get("/metrics")
    assert answer.status_code == 401
    assert answer.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_token_gets_401_and_a_signed_in_non_staff_user_403(client, metrics_token):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.force_login(UserFactory(username="plain"))
    answer = client.get("/metrics")
    assert answer.status_code == 403
    assert answer.json()["code"] == "permission_denied"


def test_without_a_configured_token_no_bearer_is_accepted(client, settings):
    settings.HERALD = {**settings.HERALD, "METRICS_TOKEN": ""}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_the_token_and_a_staff_session_may_scrape(client, admin_client, metrics_token):
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert "# TYPE herald_ws_open_sockets gauge" in answer.content.decode()
    assert admin_client.get("/metrics").status_code == 200


def test_rest_requests_are_counted_by_route_pattern_and_status(admin_client, metrics_token):
    def count(status: str) -> float:
        text = admin_client.get("/metrics").content.decode()
        return scrape_value(
            text,
            "herald_http_requests_total",
            method="GET",
            route="/api/rooms/<int:room_id>/",
            status=status,
        )

    before = count("404")
    for room in (9001, 9002, 9003):
        assert admin_client.get(f"/api/rooms/{room}/").status_code == 404
    text = admin_client.get("/metrics").content.decode()
    assert count("404") == before + 3
    assert "/api/rooms/9001/" not in text  # never the raw path


def test_a_dead_processs_open_sockets_stop_counting_but_its_counters_stay(tmp_path: Path):
    """Two processes write to one directory; the one that dies leaves its counters only."""
    script = (
        "from realtime import metrics;"
        "metrics.OPEN_SOCKETS.inc(2);"
        "metrics.HANDSHAKES.labels('accepted','none').inc(5)"
    )
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings.dev",
    )
    # A live process (sleeping), then one that writes and exits while the first runs.
    code = "import django;django.setup();" + script
    live = subprocess.Popen(
        [sys.executable, "-c", code + ";import time;print('ok',flush=True);time.sleep(60)"],
        env=env,
        stdout=subprocess.PIPE,
        cwd=Path.cwd(),
    )
    try:
        assert live.stdout is not None
        assert live.stdout.readline().strip() == b"ok"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=Path.cwd())
        metrics_dir.reap(tmp_path)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for m in registry.collect()
            for s in m.samples
        }
        assert values[("herald_ws_open_sockets", ())] == 2  # the live process's only
        key = ("herald_ws_handshakes_total", (("code", "none"), ("outcome", "accepted")))
        assert values[key] == 10  # both processes' counters
    finally:
        live.kill()
        live.wait()
    # Nobody of the deployment is alive: the next process to start empties the directory.
    assert list(tmp_path.glob("*.db"))
    saved = os.environ[metrics_dir.ENV]
    os.environ[metrics_dir.ENV] = str(tmp_path)
    try:
        metrics_dir.configure(Path.cwd())
    finally:
        os.environ[metrics_dir.ENV] = saved
    assert list(tmp_path.glob("*.db")) == []


def test_the_default_directory_is_per_deployment(tmp_path: Path):
    one = metrics_dir.default_dir(tmp_path, {"DATABASE_URL": "postgres://a/x", "REDIS_URL": "r"})
    same = metrics_dir.default_dir(tmp_path, {"DATABASE_URL": "postgres://a/x", "REDIS_URL": "r"})
    other = metrics_dir.default_dir(tmp_path, {"DATABASE_URL": "postgres://a/y", "REDIS_URL": "r"})
    assert one == same != other
    assert "postgres" not in str(one)  # a hash: no password in a path
