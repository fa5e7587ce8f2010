"""Readiness that follows recovery, and quiet shutdowns (docs/reliability.md, "Redis stopped,
and back"; "Logs at shutdown").

Own deployment (this module stops Redis, which the session's cluster must never see): a
redis-server, a private database and two daphne processes, ``r1`` and ``r2``, logging JSON.

- Redis stopped: ``/readyz`` of both processes answers 503 naming ``channel_layer``.
- Redis back: each process's ``/readyz`` answers 200 within 1 s of that process delivering
  again, measured from the first notification a fresh socket on it receives.
- SIGTERM while sockets are open: the process exits without an ERROR line or a traceback.
"""

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.rig import (
    Deployment,
    RedisServer,
    Server,
    create_database,
    create_users,
    server_env,
    start_redis,
    start_servers,
    temp_dir,
    user_spec,
)
from tests.support.ws import close_code, open_socket, raw_ws, recv_frame

pytestmark = pytest.mark.crossprocess

PASSWORD = "readyz-Pw-7d1f-xproc"
READY_LAG = 1.0  # s: /readyz is 200 at most this long after the process delivers again
RECOVERY_BOUND = 15.0  # s: each process must deliver again within this after Redis is back
OUTAGE = float(os.environ.get("HERALD_TEST_OUTAGE", "5"))  # s Redis stays down, polled
MEASURED: dict[str, float] = {}


@dataclass
class Pair(Deployment):
    redis: RedisServer
    r1: Server
    r2: Server


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with contextlib.ExitStack() as stack:
        tmp = temp_dir(stack, "herald-readyz-")
        redis = start_redis(tmp, stack)
        database_url = create_database(tmp, stack)
        env = server_env(DATABASE_URL=database_url, REDIS_URL=redis.url, HERALD_LOG_FORMAT="json")
        specs = [user_spec("svc", PASSWORD, can_send=True)] + [
            user_spec(name, PASSWORD) for name in ("rx1", "rx2", "term")
        ]
        users = create_users(env, tmp, specs, migrate=True)
        r1, r2 = start_servers(["r1", "r2"], env, tmp, stack)
        yield Pair(tmp, database_url, redis.url, users, redis, r1, r2)


async def _ready(http: httpx.AsyncClient, server: Server) -> int:
    try:
        return (await http.get(f"{server.http}/readyz", timeout=5)).status_code
    except httpx.HTTPError:
        return 0


async def _delivers(pair: Pair, server: Server, svc: str, access: str, user_id: int) -> bool:
    """Whether a fresh socket on ``server`` receives a notification posted to that process."""
    try:
        ws, _ = await open_socket(server.ws, access=access, timeout=5)
    except (InvalidStatus, ConnectionClosed, OSError, TimeoutError):
        return False
    try:
        title = f"probe {time.monotonic()}"
        async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
            answer = await http.post(
                "/api/notifications/",
                json={"recipients": [user_id], "title": title, "body": ""},
                headers={"Authorization": f"Bearer {svc}"},
            )
        assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 0.5
        while (left := deadline - time.monotonic()) > 0:
            frame = await recv_frame(ws, left)
            if frame["type"] == "notification" and frame["notification"]["title"] == title:
                return True
        return False
    except (TimeoutError, ConnectionClosed):
        return False
    finally:
        await ws.close()


async def _watch(
    pair: Pair, server: Server, svc: str, access: str, user: str, since: float
) -> dict:
    """Poll ``/readyz`` every 50 ms and probe delivery, from ``since`` (Redis back), until both
    are seen; the time (s after ``since``) of the first 200 and of the first delivery, and
    every readiness answer after which delivery still failed."""
    user_id = pair.users[user].id
    first_ready = first_delivery = None
    async with httpx.AsyncClient() as http:

        async def poll_ready() -> None:
            nonlocal first_ready
            while first_ready is None:
                if await _ready(http, server) == 200:
                    first_ready = time.perf_counter() - since
                await asyncio.sleep(0.05)

        async def probe_delivery() -> None:
            nonlocal first_delivery
            while first_delivery is None:
                if await _delivers(pair, server, svc, access, user_id):
                    first_delivery = time.perf_counter() - since
                else:
                    await asyncio.sleep(0.05)

        await asyncio.wait_for(asyncio.gather(poll_ready(), probe_delivery()), RECOVERY_BOUND)
    return {"ready": first_ready, "delivery": first_delivery}


async def test_readyz_is_503_while_redis_is_down_and_200_within_1_s_of_delivering(pair):
    svc = (await pair.login("svc", pair.r1)).access
    rx1, rx2 = (await pair.login("rx1", pair.r1)).access, (await pair.login("rx2", pair.r2)).access
    # Sockets open across the outage, as in production: the reconnect closes them (4503).
    old = [(await open_socket(s.ws, access=a))[0] for s, a in ((pair.r1, rx1), (pair.r2, rx2))]
    async with httpx.AsyncClient() as http:
        for server in (pair.r1, pair.r2):
            assert await _ready(http, server) == 200

        pair.redis.stop()
        try:
            for server in (pair.r1, pair.r2):
                answer = await http.get(f"{server.http}/readyz", timeout=10)
                assert answer.status_code == 503, answer.text
                assert answer.json() == {"db": "ok", "channel_layer": "error"}
            # Polled as a load balancer would, for a while: 503 every time.
            until = time.monotonic() + OUTAGE
            while time.monotonic() < until:
                for server in (pair.r1, pair.r2):
                    assert await _ready(http, server) == 503
                await asyncio.sleep(0.1)
        finally:
            pair.redis.start()
    back = time.perf_counter()

    results = await asyncio.gather(
        _watch(pair, pair.r1, svc, rx1, "rx1", back), _watch(pair, pair.r2, svc, rx2, "rx2", back)
    )
    for server, seen in zip((pair.r1, pair.r2), results, strict=True):
        MEASURED[f"{server.name}: first delivery after Redis back (s)"] = seen["delivery"]
        MEASURED[f"{server.name}: first /readyz 200 after Redis back (s)"] = seen["ready"]
        MEASURED[f"{server.name}: /readyz lag behind delivery (s)"] = (
            seen["ready"] - seen["delivery"]
        )
    print("\n".join(f"{k}: {v:.2f}" for k, v in MEASURED.items()))
    for server, seen in zip((pair.r1, pair.r2), results, strict=True):
        assert seen["ready"] <= seen["delivery"] + READY_LAG, (server.name, seen)

    for ws in old:
        assert await close_code(ws, 10) == 4503
    # Every /readyz that gave up cancelled its receive; none of those logged an ERROR.
    for server in (pair.r1, pair.r2):
        assert "cleaning-up channel" not in server.output()

    # Ready means delivering: right after the 200s, every process delivers.
    for server, user in ((pair.r1, "rx1"), (pair.r2, "rx2")):
        access = (await pair.login(user, server)).access
        assert await _delivers(pair, server, svc, access, pair.users[user].id), server.name


def _error_lines(output: str) -> list[str]:
    bad = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "ERROR" in line:
                bad.append(line)
            continue
        if isinstance(record, dict) and (
            record.get("level") in ("error", "critical") or "exception" in record
        ):
            bad.append(line)
    return bad


async def test_sigterm_with_open_sockets_logs_no_error(pair):
    server = pair.r2
    term = await pair.login("term", server)
    sockets = [(await open_socket(server.ws, access=term.access))[0] for _ in range(5)]
    for ws in sockets:
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        assert (await recv_frame(ws, 10))["type"] == "pong"
    # And clients that never answer the 1001 close: daphne cancels their consumers at exit.
    silent = [raw_ws(server.port, term.access)[0] for _ in range(5)]
    start = len(server.output())
    server.process.terminate()
    await asyncio.to_thread(server.process.wait, 30)
    codes = []
    for ws in sockets:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 10)
        codes.append(ws.close_code)
    assert codes == [1001] * len(sockets), codes
    for sock in silent:
        sock.close()
    output = server.output()[start:]
    assert _error_lines(output) == [], output[-4000:]
    assert "Traceback" not in output, output[-4000:]


async def test_sigterm_with_redis_down_logs_no_cancellation_error(pair):
    """Consumers cancelled at shutdown while Redis is unreachable: the clean-up of each
    cancelled channel receive fails, which is expected and a warning, not an ERROR with a
    traceback. (channels-redis's receive loop does log the outage itself as an error, once a
    second; those lines are not about a cancellation and are left out.)"""
    server = pair.r1
    term = await pair.login("term", server)
    sockets = [(await open_socket(server.ws, access=term.access))[0] for _ in range(3)]
    silent = [raw_ws(server.port, term.access)[0] for _ in range(5)]
    pair.redis.stop()
    try:
        start = len(server.output())
        server.process.terminate()
        await asyncio.to_thread(server.process.wait, 30)
    finally:
        pair.redis.start()
        for ws in sockets:
            await ws.close()
        for sock in silent:
            sock.close()
    output = server.output()[start:]
    lines = [
        line
        for line in _error_lines(output)
        if '"event": "Unexpected exception in receive task"' not in line
    ]
    assert lines == [], "\n".join(lines)[-4000:]
    assert "cleaning-up channel" not in output
