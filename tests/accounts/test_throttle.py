"""Per-user REST rates (DRF throttles, config/throttling.py; docs/security.md, "Limits"): over a
rate, ``429 {detail, code: "throttled"}`` with ``Retry-After``; reads are never throttled; each
user (each login session for the token refresh) has their own count.

The rates are set small here by editing the throttle's rate table (DRF reads it once, at import).
"""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from config.throttling import ScopedWriteThrottle
from tests.support.rig import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def rate(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """``rate(scope, "3/m")``: that scope's rate for this test."""
    return lambda scope, value: monkeypatch.setitem(
        ScopedWriteThrottle.THROTTLE_RATES, scope, value
    )


def assert_throttled(response: Any, period: int) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["code"] == "throttled"
    assert "throttled" in response.json()["detail"].lower()
    assert 1 <= int(response["Retry-After"]) <= period


def test_the_defaults_are_the_documented_ones():
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] == {
        "messages": "20/s",
        "rooms": "30/m",
        "ws_tickets": "60/m",
        "token_refresh": "30/m",
        "notifications": "20/s",
    }


def test_message_posts_over_the_rate_get_429_with_retry_after(alice, bob, as_user, rate):
    rate("messages", "5/m")
    client = as_user(alice)
    room = client.post("/api/rooms/", {"name": "rates"}, format="json").json()["id"]
    path = f"/api/rooms/{room}/messages/"
    answers = [
        client.post(path, {"body": f"m{n}", "client_id": str(uuid.uuid4())}, format="json")
        for n in range(7)
    ]
    assert [a.status_code for a in answers] == [201] * 5 + [429] * 2
    assert_throttled(answers[-1], 60)
    assert client.get(path).status_code == 200  # reading is not throttled
    assert len(client.get(path).json()["results"]) == 5  # nothing refused was stored
    # Another user's count is their own (bob is no member: 404, not 429).
    assert as_user(bob).post(path, {"body": "hi"}, format="json").status_code == 404


def test_room_creation_over_the_rate_gets_429(alice, bob, as_user, rate):
    rate("rooms", "3/m")
    client = as_user(alice)
    answers = [client.post("/api/rooms/", {"name": f"r{n}"}, format="json") for n in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert_throttled(answers[-1], 60)
    assert client.get("/api/rooms/").status_code == 200
    assert as_user(bob).post("/api/rooms/", {"name": "bobs"}, format="json").status_code == 201


def test_ws_tickets_over_the_rate_get_429_per_user_not_per_session(alice, as_user, rate):
    rate("ws_tickets", "4/m")
    tab1, tab2 = as_user(alice), as_user(alice)  # two login sessions of one user
    answers = [(tab1 if n % 2 else tab2).post("/api/auth/ws-ticket/") for n in range(5)]
    assert [a.status_code for a in answers] == [201] * 4 + [429]
    assert_throttled(answers[-1], 60)


def test_token_refresh_is_counted_per_login_session(alice, login, rate):
    rate("token_refresh", "3/m")
    _, pair = login(alice)
    _, other = login(alice)
    refresh = pair["refresh"]
    for _ in range(3):
        answer = APIClient().post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")
        assert answer.status_code == 200, answer.content
        refresh = answer.json()["refresh"]
    over = APIClient().post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert_throttled(over, 60)
    # The other session (another device) still refreshes.
    answer = APIClient().post(
        "/api/auth/token/refresh/", {"refresh": other["refresh"]}, format="json"
    )
    assert answer.status_code == 200


def test_notification_sends_over_the_rate_get_429(sender, alice, as_user, rate):
    rate("notifications", "2/m")
    client = as_user(sender)
    body = {"recipients": [alice.pk], "title": "t", "body": "b"}
    answers = [client.post("/api/notifications/", body, format="json") for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert_throttled(answers[-1], 60)
    assert as_user(alice).get("/api/notifications/").status_code == 200


def test_with_redis_unreachable_writes_and_logins_still_work(alice, as_user, rate):
    """The limits guard the stores, they are not one: with the cache down (a closed port)
    writes and logins go through uncounted, never a 500 (docs/reliability.md)."""
    rate("rooms", "1/m")
    port = free_port()  # nothing listens there
    down = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    client = as_user(alice)
    with override_settings(CACHES=down):
        for n in range(3):
            answer = client.post("/api/rooms/", {"name": f"r{n}"}, format="json")
            assert answer.status_code == 201, answer.content
        for _ in range(6):
            wrong = APIClient().post(
                "/api/auth/token/", {"username": "alice", "password": "x"}, format="json"
            )
            assert wrong.status_code == 401
        right = APIClient().post(
            "/api/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json"
        )
        assert right.status_code == 200
