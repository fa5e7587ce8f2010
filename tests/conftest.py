"""Shared fixtures: users, login sessions with their tokens, API clients, the ASGI app."""

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from accounts import services
from accounts.models import LoginSession
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Each test starts with an empty cache (login-session states, tickets)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    """``make_user(**fields)`` → a saved user (password ``"pw-" + username``)."""
    return UserFactory


@pytest.fixture
def alice(make_user: Callable[..., Any]) -> Any:
    return make_user(username="alice")


@pytest.fixture
def bob(make_user: Callable[..., Any]) -> Any:
    return make_user(username="bob")


@pytest.fixture
def sender(make_user: Callable[..., Any]) -> Any:
    """A service user holding ``notifications.send_notification``."""
    user = make_user(username="service")
    user.user_permissions.add(Permission.objects.get(codename="send_notification"))
    return user


@pytest.fixture
def login(db: Any) -> Callable[..., tuple[LoginSession, dict[str, str]]]:
    """``login(user)`` → ``(login session, {access, refresh})``, as ``POST /api/auth/token/``."""

    def _login(user: Any, kind: str = LoginSession.Kind.API) -> tuple[LoginSession, dict[str, str]]:
        session = services.login_session_create(user=user, kind=kind, user_agent="pytest")
        return session, services.token_pair_issue(session=session)

    return _login


@pytest.fixture
def api_client() -> Callable[..., APIClient]:
    """``api_client(access=None)`` → a DRF test client, bearer-authenticated when given a token."""

    def _client(access: str | None = None) -> APIClient:
        client = APIClient()
        if access:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        return client

    return _client


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private ``redis-server`` on a free port for this test session: its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/system-deps installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
