"""Fixtures of the config suite: sockets through the full ASGI app, rooms."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import presence, services
from chat.models import Room
from tests.support.asgi import Socket, Sockets


@pytest.fixture
async def open_socket(layer: Any, login: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """``await open_socket(user)`` → a :class:`Socket` of a new login session of ``user``."""
    sockets = Sockets()

    async def _open(user: Any) -> Socket:
        _, tokens = await database_sync_to_async(login)(user)
        return await sockets.socket(tokens["access"])

    yield _open
    await sockets.close()
    await presence.aclose()


@pytest.fixture
def room(alice: Any, bob: Any) -> Room:
    """A group room of alice (owner) and bob."""
    return services.room_create(creator_id=alice.pk, name="general", member_ids=[bob.pk])
