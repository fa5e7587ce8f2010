"""Fixtures of the auth suites."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from accounts.models import LoginSession
from config.asgi import application

from .helpers import Headers


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
    opened: list[WebsocketCommunicator] = []

    def _open(
        path: str = "/ws/", *, headers: Headers | None = None, subprotocols: list[str] | None = None
    ) -> WebsocketCommunicator:
        comm = WebsocketCommunicator(
            application, path, headers=list(headers or []), subprotocols=subprotocols
        )
        opened.append(comm)
        return comm

    yield _open
    for comm in opened:
        future = comm._future
        if future is not None and future.cancelled():
            continue  # a timed-out receive_output already cancelled it
        await comm.disconnect()
