"""Fixtures of the notifications suite: channel-layer listeners, sockets, threads' database."""

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from realtime import groups
from tests.support.asgi import Listener, Sockets


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
    sockets = Sockets()
    yield sockets.connect
    await sockets.close()


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
