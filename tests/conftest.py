"""Shared fixtures: users, login sessions with their tokens, API clients, the ASGI app."""

from collections.abc import Callable
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
