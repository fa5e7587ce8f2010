"""Fixtures of the auth suites."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from accounts.models import LoginSession
from tests.support.asgi import Sockets


@pytest.fixture
def alice_api(alice: Any, login: Callable[..., Any]) -> tuple[LoginSession, dict[str, str]]:
    """One ``api`` login session of alice and its ``{access, refresh}``."""
    return login(alice)


@pytest.fixture
def alice_other(alice: Any, login: Callable[..., Any]) -> tuple[LoginSession, dict[str, str]]:
    """A second, independent login session of alice (another device)."""
    return login(alice)


@pytest.fixture
async def open_ws() -> AsyncIterator[Callable[..., WebsocketCommunicator]]:
    """``open_ws(path="/ws/", headers=..., subprotocols=...)`` → a communicator on the full
    ASGI application (``config.asgi.application``: the auth middleware included). Every one is
    disconnected at teardown, which also re-raises any exception the application raised."""
    sockets = Sockets()
    yield sockets.open
    await sockets.close()
