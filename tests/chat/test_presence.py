"""Presence backends (chat/presence.py): users not sockets, expiry, sweeps.

The Redis backend runs against a private ``redis-server`` on a free port, as two instances
(two "processes") sharing it; the in-memory backend must behave the same within one process.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chat.presence import Entry, MemoryBackend, RedisBackend

ROOM = 7


# "redis" asks for ``redis_url`` at run time, out of the collection hook's sight: it starts
# redis-server, so it carries the ``processes`` marker itself.
@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.processes)])
async def backends(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Any]]:
    """Two backends as two processes see them (the same one for memory: one process)."""
    if request.param == "memory":
        backend = MemoryBackend()
        yield backend, backend
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"t{time.monotonic_ns()}"  # a fresh key space per test
    first, second = RedisBackend(url, prefix), RedisBackend(url, prefix)
    yield first, second
    await first.close()
    await second.close()


async def test_a_user_is_online_while_any_socket_is(backends):
    p1, p2 = backends
    tabs = [Entry(ROOM, 1, f"tab{i}") for i in range(3)]
    assert await p1.join(tabs[0], 30, 100) == (True, 1, [1])
    assert await p2.join(tabs[1], 30, 100) == (False, 1, [1])
    assert await p1.join(tabs[2], 30, 100) == (False, 1, [1])
    assert await p2.join(Entry(ROOM, 2, "other"), 30, 100) == (True, 2, [1, 2])

    assert await p1.leave(tabs[0]) is False
    assert await p2.leave(tabs[1]) is False
    assert await p1.online(ROOM) == [1, 2]
    assert await p1.leave(tabs[2]) is True
    assert await p2.online(ROOM) == [2]
    assert await p2.leave(tabs[2]) is False  # leaving twice announces nothing twice


async def test_unrefreshed_entries_expire_and_are_swept_once(backends):
    p1, p2 = backends
    await p1.join(Entry(ROOM, 1, "killed"), 0.3, 100)  # its process dies: never refreshed
    await p2.join(Entry(ROOM, 2, "alive"), 30, 100)
    await asyncio.sleep(0.5)
    assert await p2.online(ROOM) == [2]
    assert await p2.sweep([ROOM, ROOM + 1]) == [(ROOM, 1)]
    assert await p1.sweep([ROOM]) == []


async def test_a_refreshed_entry_outlives_its_ttl(backends):
    p1, p2 = backends
    entry = Entry(ROOM, 1, "tab")
    await p1.join(entry, 0.4, 100)
    for _ in range(3):
        await asyncio.sleep(0.2)
        assert await p1.refresh([entry], 0.4) == [True]
    assert await p2.sweep([ROOM]) == []
    assert await p2.online(ROOM) == [1]


async def test_one_expired_tab_does_not_take_the_user_offline(backends):
    p1, p2 = backends
    await p1.join(Entry(ROOM, 1, "killed"), 0.3, 100)
    await p2.join(Entry(ROOM, 1, "alive"), 30, 100)
    await asyncio.sleep(0.5)
    assert await p2.sweep([ROOM]) == []
    assert await p1.online(ROOM) == [1]


async def test_a_swept_entry_is_not_revived_by_refresh_but_joins_again(backends):
    p1, p2 = backends
    entry = Entry(ROOM, 1, "stalled")
    await p1.join(entry, 0.2, 100)
    await asyncio.sleep(0.4)
    assert await p2.sweep([ROOM]) == [(ROOM, 1)]
    assert await p1.refresh([entry], 30) == [False]
    assert await p1.join(entry, 30, 100) == (True, 1, [1])  # announced again: left, then joined


async def test_a_join_counts_every_online_user_but_lists_at_most_limit(backends):
    """A large room's subscribe gets the count and a page, not every online member."""
    p1, p2 = backends
    for user in range(1, 8):
        await p1.join(Entry(ROOM, user, f"c{user}"), 30, 100)
    new, count, page = await p2.join(Entry(ROOM, 8, "c8"), 30, 3)
    assert (new, count, len(page)) == (True, 8, 3)
    assert set(page) <= set(range(1, 9))
    assert await p2.online(ROOM) == list(range(1, 9))
