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


async def test_present_reads_which_of_the_given_users_are_online(backends):
    p1, p2 = backends
    await p1.join(Entry(ROOM, 1, "a"), 30, 100)
    await p2.join(Entry(ROOM, 2, "b"), 0.2, 100)  # expires
    await p2.join(Entry(ROOM + 1, 3, "c"), 30, 100)
    await asyncio.sleep(0.4)
    assert await p2.present({ROOM: [1, 2, 3], ROOM + 1: [3, 4]}) == {ROOM: {1}, ROOM + 1: {3}}


async def test_a_flush_sends_each_users_state_at_the_flush_not_the_event(layer):
    """Two processes' frames about one user can cross: a leave recorded on one, a join on
    another within one window. A frame carries the user's state when it is flushed, so the
    frame that arrives last is the truth. Here the leave is recorded after the user is back
    online (as a late frame of another process would be): it goes out as ``joined``."""
    from chat import events, presence

    state = presence._state()
    channel = await layer.new_channel()
    await layer.group_add(events.presence_group(ROOM), channel)
    await presence.ajoin(room_id=ROOM, user_id=5, connection_id="tab", limit=10)
    await presence.aflush(state)
    assert '"joined":[5],"left":[]' in (await asyncio.wait_for(layer.receive(channel), 2))["text"]
    presence._record(state, ROOM, left=[5, 6])  # 6 never joined: left it stays
    await presence.aflush(state)
    frame = await asyncio.wait_for(layer.receive(channel), 2)
    assert frame["users"] == [5, 6]
    assert '"joined":[5],"left":[6]' in frame["text"]
    await presence.aleave(room_id=ROOM, user_id=5, connection_id="tab")
    await presence.aclose()


@pytest.mark.processes
async def test_the_redis_backend_works_at_once_after_a_redis_restart(tmp_path):
    """After a restart every pooled connection is stale: the first command on each failed, and
    a subscribe acked ``presence: [self]`` that nothing corrects later (bench/chaos.py)."""
    from tests.support.rig import RedisServer

    server = RedisServer(tmp_path).start()
    backend = RedisBackend(server.url, "restart")
    try:
        entries = [Entry(ROOM, user, f"c{user}") for user in (1, 2, 3)]
        await asyncio.gather(*(backend.join(e, 30, 10) for e in entries))  # three connections
        server.stop()
        server.start()  # same port, empty
        assert await backend.join(entries[0], 30, 10) == (True, 1, [1])
        assert await backend.online(ROOM) == [1]
    finally:
        await backend.close()
        server.stop()


async def test_a_leave_and_a_join_within_one_window_are_announced(layer):
    """A socket that subscribed between the two read the user as offline: the window's frame
    must say ``joined`` (they used to cancel out, and its list stayed wrong; bench/chaos.py)."""
    from chat import events, presence

    state = presence._state()
    channel = await layer.new_channel()
    await layer.group_add(events.presence_group(ROOM), channel)
    await presence.ajoin(room_id=ROOM, user_id=5, connection_id="old", limit=10)
    await presence.aflush(state)
    await asyncio.wait_for(layer.receive(channel), 2)
    await presence.aleave(room_id=ROOM, user_id=5, connection_id="old")
    assert await presence.aonline(room_id=ROOM) == []  # a subscribe now reads: offline
    await presence.ajoin(room_id=ROOM, user_id=5, connection_id="new", limit=10)
    await presence.aflush(state)
    frame = await asyncio.wait_for(layer.receive(channel), 2)
    assert '"joined":[5],"left":[]' in frame["text"]
    await presence.aleave(room_id=ROOM, user_id=5, connection_id="new")
    await presence.aclose()
