"""Shared fixtures: users, login sessions with their tokens, API clients, the channel layer, a
private redis-server; and the ``processes`` marker on every test that starts a process."""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from accounts import services
from accounts.models import LoginSession
from tests.factories import UserFactory
from tests.support import asgi
from tests.support.rig import RedisServer

# Every test of these folders starts processes (daphne, redis-server, chromium).
PROCESS_TIERS = ("crossprocess", "hardening", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``processes`` every test that starts a process: the tests of ``PROCESS_TIERS`` and
    every test using ``redis_url`` (``make test-fast`` runs ``-m "not processes"``). A fixture
    that asks for ``redis_url`` at run time (``request.getfixturevalue``) marks its parameter
    itself."""
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.path))
        tier = path.relative_to(here).parts[0] if here in path.parents else ""
        if tier in PROCESS_TIERS or "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.processes)


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
    return asgi.api_client


@pytest.fixture
def as_user(login: Callable[..., Any]) -> Callable[[Any], APIClient]:
    """``as_user(user)`` → an API client bearing the access token of a new login of ``user``."""
    return lambda user: asgi.api_client(login(user)[1]["access"])


@pytest.fixture
def roomy(settings: Any) -> None:
    """A rate limit high enough to send many frames in a row without tripping it."""
    settings.HERALD = {**settings.HERALD, "WS_RATE": 1000.0, "WS_BURST": 1000}


@pytest.fixture
def layer() -> Iterator[Any]:
    """The configured channel layer (in-memory under test), empty before and after the test."""
    channel_layer = get_channel_layer()
    async_to_sync(channel_layer.flush)()
    yield channel_layer
    async_to_sync(channel_layer.flush)()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private ``redis-server`` on a free port for this test session: its URL."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/system-deps installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()
