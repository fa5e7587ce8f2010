"""Revoking a login session on one process closes its sockets on another (docs/security.md)."""

import asyncio
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.ws import assert_silent, open_socket

pytestmark = pytest.mark.crossprocess

CLOSE_WITHIN = 1.0  # s: a revoked session's sockets close within this (docs/security.md)


async def test_logout_on_one_process_closes_the_sessions_socket_on_another(cluster, metrics):
    p1, p2 = cluster.p1, cluster.p2
    session = await cluster.login("revoke", p1)
    other_session = await cluster.login("revoke", p1)
    ws, hello = await open_socket(p2.ws, how="header", access=session.access)
    other, _ = await open_socket(p2.ws, how="header", access=other_session.access)
    assert hello["session_id"] == session.session_id
    try:
        closed_at: list[float] = []
        closed = asyncio.create_task(ws.wait_closed())
        closed.add_done_callback(lambda _: closed_at.append(time.perf_counter()))
        start = time.perf_counter()
        async with httpx.AsyncClient(base_url=p1.http, timeout=60) as http:
            answer = await http.post("/api/auth/logout/", json={"refresh": session.refresh})
        assert answer.status_code == 204, answer.text
        await asyncio.wait_for(closed, 10)
        latency = closed_at[0] - start
        metrics["logout on p1 to close of the session's socket on p2 (ms)"] = round(
            latency * 1000, 1
        )
        assert ws.close_code == 4401
        assert latency < CLOSE_WITHIN, f"closed after {latency:.3f} s"

        # The user's other login session is untouched.
        await assert_silent(other, 1.0)
        assert other.close_code is None

        # The revoked session's access token opens no socket on either process.
        for server in (p1, p2):
            async with connect(
                server.ws,
                additional_headers={"Authorization": f"Bearer {session.access}"},
                open_timeout=30,
                ping_interval=None,
            ) as rejected:
                with pytest.raises(ConnectionClosed) as exc_info:
                    await asyncio.wait_for(rejected.recv(), 10)
                assert exc_info.value.rcvd is not None
                assert exc_info.value.rcvd.code == 4401
    finally:
        await asyncio.gather(ws.close(), other.close())
