"""Fixtures of the chat suite: rooms, sockets through the full ASGI app, channel-layer listeners."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import presence, services
from chat.models import Room
from tests.support.asgi import Listener, Socket, Sockets


@pytest.fixture
async def open_socket(layer: Any, login: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """``await open_socket(user)`` → a :class:`Socket` of a new login session of ``user``.

    Every socket is disconnected at teardown, then this loop's presence state is closed.
    """
    sockets = Sockets()

    async def _open(user: Any) -> Socket:
        _, tokens = await database_sync_to_async(login)(user)
        return await sockets.socket(tokens["access"])

    yield _open
    await sockets.close()
    await presence.aclose()


@pytest.fixture
def make_room(db: Any) -> Callable[..., Room]:
    """``make_room(owner, *members, name="general")`` → a group room owned by ``owner``."""

    def _make(owner: Any, *members: Any, name: str = "general") -> Room:
        return services.room_create(
            creator_id=owner.pk, name=name, member_ids=[m.pk for m in members]
        )

    return _make


@pytest.fixture
def carol(make_user: Callable[..., Any]) -> Any:
    return make_user(username="carol")


@pytest.fixture
def listen(layer: Any) -> Callable[[str], Listener]:
    """``listen(group)`` → a :class:`Listener` on that channel-layer group."""
    return lambda group: Listener(layer, group)
