"""Fixtures of the notifications suite: channel-layer listeners, sockets, threads' database."""

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection

from config.asgi import application
from realtime import groups
from notifications.models import Notification, NotificationCounter


@pytest.fixture
def layer() -> Iterator[Any]:
    """The configured channel layer (in-memory under test), empty before and after the test."""
    channel_layer = get_channel_layer()
    async_to_sync(channel_layer.flush)()
    yield channel_layer
    async_to_sync(channel_layer.flush)()


class Listener:
    """A channel in one group, as a socket's consumer would be; drains what reached it."""

    def __init__(self, channel_layer: Any, group: str) -> None:
        self.layer, self.group = channel_layer, group
        self.channel = async_to_sync(channel_layer.new_channel)()
        async_to_sync(channel_layer.group_add)(group, self.channel)

    async def _drain(self) -> list[dict[str, Any]]:
        received = []
        while True:
            try:
                event = await asyncio.wait_for(self.layer.receive(self.channel), 0.02)
                event.pop("published_at", None)  # the publisher's latency stamp (config.metrics)
                received.append(event)
            except TimeoutError:
                return received

    def events(self) -> list[dict[str, Any]]:
        """Every event published to the group since the last call, in order."""
        return async_to_sync(self._drain)()

    def frames(self) -> list[dict[str, Any]]:
        """The client frames those events carry (``text``), decoded."""
        return [json.loads(event["text"]) for event in self.events()]


@pytest.fixture
def listen(layer: Any) -> Callable[[Any], Listener]:
    """``listen(user)`` → a :class:`Listener` on ``user.<id>``, the group of the user's sockets."""
    return lambda user: Listener(layer, groups.user_group(user.pk))


@pytest.fixture
async def connect(layer: Any) -> AsyncIterator[Callable[..., Any]]:
    """``await connect(access)`` → a connected ``WebsocketCommunicator`` on ``/ws/?token=``.

    Runs the full ASGI application (auth middleware included). The hello frame is left
    unread. Every socket is disconnected at teardown.
    """
    opened: list[WebsocketCommunicator] = []

    async def _connect(access: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, f"/ws/?token={access}")
        connected, _ = await communicator.connect()
        assert connected
        opened.append(communicator)
        return communicator

    yield _connect
    for communicator in opened:
        await communicator.disconnect()


def notifications_bulk(user: Any, count: int, *, start: int = 1) -> list[Notification]:
    """Store ``count`` notifications of ``user`` with seqs ``start..`` (test data set-up only)."""
    rows = Notification.objects.bulk_create(
        Notification(recipient=user, seq=seq, title=f"n{seq}")
        for seq in range(start, start + count)
    )
    NotificationCounter.objects.update_or_create(
        user=user, defaults={"last_seq": start + count - 1}
    )
    return rows


@pytest.fixture
def threads_database(transactional_db: None, tmp_path: Any) -> Iterator[None]:
    """Give threads a database that allows concurrent writers, as production has.

    PostgreSQL: nothing to do. SQLite: pytest-django's test database is an in-memory database
    with a shared cache, where a second writer fails at once with "database table is locked"
    (shared-cache locks ignore the busy timeout; sqlite.org/sharedcache.html §2.2), whereas
    Herald's SQLite is a file whose IMMEDIATE transactions queue on the timeout
    (config/settings/base.py). So for this test every connection, the main thread's included,
    opens a file copy of the test database, with the production connection options.
    """
    if connection.vendor != "sqlite":
        yield
        return
    settings_dict = connection.settings_dict  # shared by every thread's connection
    memory_name = settings_dict["NAME"]
    connection.ensure_connection()
    # Keeps the shared in-memory database alive while no Django connection points at it.
    keeper = sqlite3.connect(memory_name, uri=True)
    path = tmp_path / "threads.sqlite3"
    copy = sqlite3.connect(path)
    keeper.backup(copy)
    copy.close()
    # Django's close() leaves in-memory connections open; this one must point at the file.
    raw, connection.connection = connection.connection, None
    raw.close()
    settings_dict["NAME"] = str(path)
    try:
        yield
    finally:
        connection.close()
        settings_dict["NAME"] = memory_name
        connection.ensure_connection()  # before the keeper goes, or the memory database would
        keeper.close()
