"""A burst of WebSocket handshakes against one process (the redis-py 8 connection-pool trap).

redis-py 8's asyncio pool holds at most 100 connections unless told otherwise; a channel layer
left at that default answers a burst of handshakes with HTTP 500 "Too many connections".
"""

import asyncio
import time

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.ws import open_socket, recv_frame

pytestmark = pytest.mark.crossprocess

HANDSHAKES = 1000
IN_FLIGHT = 100


async def test_1000_handshakes_100_in_flight_on_one_process_all_get_hello(cluster, metrics):
    p1, p2 = cluster.p1, cluster.p2
    user = cluster.users["burst"]
    tokens = await cluster.login("burst", p1)
    gate = asyncio.Semaphore(IN_FLIGHT)
    sockets: list[ClientConnection] = []

    async def handshake() -> None:
        async with gate:
            ws, hello = await open_socket(p1.ws, how="header", access=tokens.access, timeout=120)
            sockets.append(ws)
            assert hello["user"]["id"] == user.id

    try:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(handshake() for _ in range(HANDSHAKES)), return_exceptions=True
        )
        elapsed = time.perf_counter() - start
        failures = [r for r in results if isinstance(r, BaseException)]
        rate = (HANDSHAKES - len(failures)) / elapsed
        metrics[f"burst: {HANDSHAKES} handshakes, {IN_FLIGHT} in flight, one process"] = (
            f"{elapsed:.2f} s, {rate:.0f} handshakes/s"
        )
        print(f"burst: {HANDSHAKES} handshakes in {elapsed:.2f} s = {rate:.0f} handshakes/s")
        assert not failures, f"{len(failures)} of {HANDSHAKES} failed, e.g. {failures[:3]!r}"

        # Every one of them is subscribed: one notification, posted to the other process,
        # reaches all of them.
        service = await cluster.login("service", p2)
        sent = time.perf_counter()
        answer = await cluster.notify(service, p2, [user.id], "to every burst socket")
        frames = await asyncio.gather(*(recv_frame(ws, 60) for ws in sockets))
        metrics[f"burst: one notification to all {HANDSHAKES} sockets (s)"] = round(
            time.perf_counter() - sent, 2
        )
        assert all(f["type"] == "notification" for f in frames)
        assert {f["notification"]["id"] for f in frames} == set(answer["ids"])
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    async with httpx.AsyncClient(timeout=60) as http:
        assert (await http.get(f"{p1.http}/readyz")).status_code == 200
