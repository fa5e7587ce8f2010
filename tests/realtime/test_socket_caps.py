"""Open-socket caps (realtime/caps.py; docs/security.md, "Limits"): over
``HERALD_WS_MAX_PER_USER`` / ``HERALD_WS_MAX_PER_IP`` a handshake is accepted only to be closed
with 4429, before any frame; closing a socket frees its place.

In one process (the in-memory counts) through the full ASGI application, and the Redis counts
against a real redis-server: two processes' counts add up, atomically, and a process that stops
beating (SIGKILLed) stops counting. ``tests/crossprocess/test_socket_caps.py`` runs it on two
daphne processes.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from realtime import caps
from tests.support.asgi import Sockets, closed_with

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def sockets() -> AsyncIterator[Sockets]:
    opened = Sockets()
    yield opened
    await opened.close()
    await caps.aclose()


def capped(settings: Any, *, user: int = 0, ip: int = 0) -> None:
    settings.HERALD = {**settings.HERALD, "WS_MAX_PER_USER": user, "WS_MAX_PER_IP": ip}


async def connect(sockets: Sockets, access: str, ip: str = "192.0.2.1") -> WebsocketCommunicator:
    """A communicator on ``/ws/?token=`` from client address ``ip``, connected (accepted)."""
    comm = sockets.open(f"/ws/?token={access}")
    comm.scope["client"] = [ip, 50000]  # what daphne reports as the peer
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm


async def hello(comm: WebsocketCommunicator) -> None:
    assert (await comm.receive_json_from(timeout=5))["type"] == "hello"


async def tokens(login: Callable[..., Any], user: Any) -> str:
    return (await database_sync_to_async(login)(user))[1]["access"]


async def test_the_socket_over_the_users_cap_closes_with_4429(settings, sockets, alice, login):
    capped(settings, user=3)
    access = await tokens(login, alice)
    first = [await connect(sockets, access) for _ in range(3)]
    for comm in first:
        await hello(comm)
    fourth = await connect(sockets, access)
    assert await fourth.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}

    await first[0].disconnect()
    await asyncio.sleep(0.05)
    await hello(await connect(sockets, access))  # the freed place is taken again
    again = await connect(sockets, access)
    assert await closed_with(again, 5) == 4429


async def test_the_users_cap_counts_every_login_session(settings, sockets, alice, bob, login):
    capped(settings, user=2)
    a1, a2, b = await tokens(login, alice), await tokens(login, alice), await tokens(login, bob)
    await hello(await connect(sockets, a1))
    await hello(await connect(sockets, a2))
    assert await closed_with(await connect(sockets, a1), 5) == 4429
    await hello(await connect(sockets, b))  # bob's count is his own


async def test_the_socket_over_the_ip_cap_closes_with_4429(settings, sockets, alice, bob, login):
    capped(settings, user=100, ip=3)
    a, b = await tokens(login, alice), await tokens(login, bob)
    for access in (a, b, b):
        await hello(await connect(sockets, access, ip="198.51.100.5"))
    assert await closed_with(await connect(sockets, a, ip="198.51.100.5"), 5) == 4429
    await hello(await connect(sockets, a, ip="198.51.100.6"))  # another address


async def test_a_refused_credential_takes_no_place(settings, sockets, alice, login):
    capped(settings, user=1, ip=1)
    for _ in range(3):  # from the same address
        assert await closed_with(await connect(sockets, "not-a-token"), 5) == 4401
    await hello(await connect(sockets, await tokens(login, alice)))


# Redis ---------------------------------------------------------------------------------------


@pytest.fixture
async def two_processes(redis_url: str) -> AsyncIterator[tuple[caps.RedisBackend, ...]]:
    """Two processes' backends on one Redis (each has its own process id)."""
    prefix = f"capstest{id(object())}"
    first, second = caps.RedisBackend(redis_url, prefix), caps.RedisBackend(redis_url, prefix)
    yield first, second
    await first.redis.aclose()
    await second.redis.aclose()


async def test_redis_counts_of_two_processes_add_up(two_processes):
    p1, p2 = two_processes
    key = [("u:1", 5)]
    assert [await p1.admit(key) for _ in range(3)] == [None] * 3
    assert [await p2.admit(key) for _ in range(3)] == [None, None, "u:1"]
    assert await p1.admit(key) == "u:1"
    await p1.release(("u:1",))
    assert await p2.admit(key) is None
    assert await p1.admit(key) == "u:1"


async def test_redis_admits_at_most_the_cap_when_racing(two_processes):
    p1, p2 = two_processes
    caps_ = [("u:race", 10), ("ip:race", 1000)]
    results = await asyncio.gather(*((p1 if n % 2 else p2).admit(caps_) for n in range(40)))
    assert results.count(None) == 10
    assert set(results) == {None, "u:race"}


async def test_redis_a_process_that_stops_beating_stops_counting(two_processes, monkeypatch):
    p1, p2 = two_processes
    monkeypatch.setattr(caps, "STALE", 1.0)
    key = [("u:dead", 4)]
    for _ in range(4):
        assert await p1.admit(key) is None  # p1 then dies without releasing (SIGKILL)
    assert await p2.admit(key) == "u:dead"
    await asyncio.sleep(1.3)
    assert [await p2.admit(key) for _ in range(5)] == [None] * 4 + ["u:dead"]


async def test_redis_a_beat_keeps_a_process_counting_and_repairs_its_counts(two_processes):
    p1, p2 = two_processes
    key = [("u:beat", 2)]
    assert await p1.admit(key) is None
    assert await p1.admit(key) is None
    # A release that never reached Redis: the next beat writes p1's own count (1).
    await p1.beat(caps.Counter({"u:beat": 1}), ["u:beat"])
    assert await p2.admit(key) is None
    assert await p2.admit(key) == "u:beat"


async def test_admit_over_redis_through_the_settings(settings, redis_url, sockets, alice, login):
    settings.REDIS_URL = redis_url
    settings.HERALD = {**settings.HERALD, "REDIS_PREFIX": f"capsadmit{id(object())}"}
    capped(settings, user=2, ip=0)
    held = [await caps.admit(user_id=alice.pk, ip="192.0.2.1") for _ in range(2)]
    assert all(held)
    assert await caps.admit(user_id=alice.pk, ip="192.0.2.1") is None
    caps.release(held[0])
    await asyncio.sleep(0.1)  # the release is written in the background
    assert await caps.admit(user_id=alice.pk, ip="192.0.2.1") is not None
