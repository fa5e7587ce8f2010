"""Open-socket caps and REST rates across processes (docs/security.md, "Limits"): two daphne
processes on one Redis count together. Sockets over ``HERALD_WS_MAX_PER_USER`` (60 here) or
``HERALD_WS_MAX_PER_IP`` (100 here; every client is 127.0.0.1) are accepted only to be closed
with 4429, on whichever process they land; closing one frees a place on the other; a SIGKILLed
process's sockets stop counting within ``realtime.caps.STALE`` s. A REST rate counts requests
to both processes together, and a failed-login lockout on one holds on the other.
"""

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.caps import BEAT, STALE
from tests.support.cluster import Cluster
from tests.support.rig import Server
from tests.support.ws import open_socket

pytestmark = pytest.mark.crossprocess

PER_USER = 60
PER_IP = 100
USERS = ["caps_a", "caps_b", "caps_c", "caps_d", "caps_kill", "caps_rate", "caps_lock"]


@pytest.fixture(scope="module")
def capped(cluster: Cluster) -> Iterator[dict[str, Server]]:
    """``c1``, ``c2`` with the caps (and a message rate of 5/min); ``c0`` with no caps, to
    measure what a handshake pays for them."""
    cluster.create_users(USERS)
    with contextlib.ExitStack() as stack:
        c1, c2 = cluster.start_servers(
            ["c1", "c2"],
            stack,
            HERALD_WS_MAX_PER_USER=str(PER_USER),
            HERALD_WS_MAX_PER_IP=str(PER_IP),
            HERALD_THROTTLE_MESSAGES="5/m",
            # Counted apart from the cluster's own sockets (its probes are 127.0.0.1 too).
            HERALD_CHANNEL_PREFIX="capstest",
        )
        (c0,) = cluster.start_servers(
            ["c0"],
            stack,
            HERALD_WS_MAX_PER_USER="0",
            HERALD_WS_MAX_PER_IP="0",
            HERALD_CHANNEL_PREFIX="capstest",
        )
        yield {"c0": c0, "c1": c1, "c2": c2}


async def refused_with(server: Server, access: str) -> int | None:
    """Open a socket that should be refused: the handshake completes, then the close code."""
    async with connect(
        server.ws,
        additional_headers={"Authorization": f"Bearer {access}"},
        open_timeout=30,
        ping_interval=None,
    ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)  # no frame may come before the close
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code


async def open_many(server: Server, access: str, count: int) -> list[ClientConnection]:
    gate = asyncio.Semaphore(20)

    async def one() -> ClientConnection:
        async with gate:
            return (await open_socket(server.ws, access=access))[0]

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_all(sockets: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets))
    await asyncio.sleep(0.3)  # the places are given back in the background


async def test_the_user_cap_counts_both_processes(cluster, capped):
    c1, c2 = capped["c1"], capped["c2"]
    tokens = await cluster.login("caps_a", c1)
    first = await open_many(c1, tokens.access, PER_USER // 2)
    second = await open_many(c2, tokens.access, PER_USER // 2)
    try:
        assert await refused_with(c2, tokens.access) == 4429  # the 61st, on the other process
        assert await refused_with(c1, tokens.access) == 4429
        await first.pop().close()
        await asyncio.sleep(0.3)
        second.append((await open_socket(c2.ws, access=tokens.access))[0])  # the freed place
        assert await refused_with(c1, tokens.access) == 4429
        # Another user is not affected.
        other = await cluster.login("caps_b", c2)
        ws, _ = await open_socket(c1.ws, access=other.access)
        await ws.close()
    finally:
        await close_all(first + second)


async def test_the_ip_cap_counts_both_processes(cluster, capped):
    c1, c2 = capped["c1"], capped["c2"]
    b, c, d = [await cluster.login(name, c1) for name in ("caps_b", "caps_c", "caps_d")]
    held = await open_many(c1, b.access, PER_IP // 2)
    held += await open_many(c2, c.access, PER_IP // 2)
    try:
        assert await refused_with(c1, d.access) == 4429  # a third user, same address
        await held.pop().close()
        await asyncio.sleep(0.3)
        held.append((await open_socket(c1.ws, access=d.access))[0])
        assert await refused_with(c2, d.access) == 4429
    finally:
        await close_all(held)


async def test_the_handshake_cost_of_the_caps(cluster, capped, metrics):
    """Sequential handshakes on a process with caps (one more Redis round trip) and without."""
    tokens = await cluster.login("caps_b", capped["c1"])
    timings: dict[str, list[float]] = {"c0": [], "c1": []}
    for _ in range(3):  # interleaved rounds: the machine's load hits both alike
        for name in ("c0", "c1"):
            for _ in range(40):
                start = time.perf_counter()
                ws, _hello = await open_socket(capped[name].ws, access=tokens.access)
                timings[name].append(time.perf_counter() - start)
                await ws.close()
    without, with_caps = (statistics.median(timings[n]) * 1000 for n in ("c0", "c1"))
    metrics["socket caps: handshake to hello, median without / with caps (ms)"] = (
        f"{without:.2f} / {with_caps:.2f}"
    )
    print(f"handshake median: {without:.2f} ms without caps, {with_caps:.2f} ms with caps")
    assert with_caps < without + 5  # one round trip on loopback, not a second handshake


async def test_rest_rates_count_both_processes(cluster, capped):
    c1, c2 = capped["c1"], capped["c2"]
    tokens = await cluster.login("caps_rate", c1)
    headers = {"Authorization": f"Bearer {tokens.access}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        room = await http.post(f"{c1.http}/api/rooms/", json={"name": "rates"})
        assert room.status_code == 201, room.text
        path = f"/api/rooms/{room.json()['id']}/messages/"
        answers: list[Any] = []
        for n in range(7):  # 5/min, alternating between the processes
            server = (c1, c2)[n % 2]
            answers.append(await http.post(f"{server.http}{path}", json={"body": f"m{n}"}))
    assert [a.status_code for a in answers] == [201] * 5 + [429] * 2
    assert answers[-1].json()["code"] == "throttled"
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60


async def test_a_lockout_on_one_process_holds_on_the_other(cluster, capped):
    c1, c2 = capped["c1"], capped["c2"]
    user = cluster.users["caps_lock"]
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(5):  # HERALD_LOGIN_FAILURES, alternating between the processes
            server = (c1, c2)[n % 2]
            await http.post(
                f"{server.http}/api/auth/token/", json={"username": user.name, "password": f"x{n}"}
            )
        for server in (c1, c2):
            right = await http.post(
                f"{server.http}/api/auth/token/",
                json={"username": user.name, "password": user.password},
            )
            assert right.status_code == 429, right.text
            assert right.json()["code"] == "throttled"
            assert right.headers["Retry-After"] == "900"


async def test_a_killed_process_sockets_stop_counting(cluster, capped, metrics):
    c1, c2 = capped["c1"], capped["c2"]
    tokens = await cluster.login("caps_kill", c1)
    doomed = await open_many(c1, tokens.access, PER_USER)
    assert await refused_with(c2, tokens.access) == 4429
    c1.kill()  # SIGKILL: no socket of c1 gives its place back
    killed = time.monotonic()
    with contextlib.suppress(Exception):
        await asyncio.gather(*(ws.close() for ws in doomed))
    while True:
        code = await refused_with_or_open(c2, tokens.access)
        if code is None:
            break
        assert code == 4429
        assert time.monotonic() - killed < STALE + BEAT + 10, "the killed process still counts"
        await asyncio.sleep(1)
    metrics["socket caps: places of a SIGKILLed process free after (s)"] = round(
        time.monotonic() - killed, 1
    )


async def refused_with_or_open(server: Server, access: str) -> int | None:
    """``None`` if a socket opens (its ``hello`` arrives; it is closed again), else the close
    code it got."""
    async with connect(
        server.ws,
        additional_headers={"Authorization": f"Bearer {access}"},
        open_timeout=30,
        ping_interval=None,
    ) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None
