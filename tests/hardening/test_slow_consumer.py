"""A client that stops reading while thousands of notifications are pushed.

daphne's ``send`` never blocks, so without a bound its write buffer for that socket would grow
with every push. ``fuzz`` runs with ``HERALD_WS_MAX_BACKLOG_BYTES`` 256 KiB and
``HERALD_WS_SEND_TIMEOUT`` 3 s: the stuck socket is logged, counted and closed with 4503, and the
same user's healthy socket on the same process receives every notification.
"""

import asyncio
import json
import time

import httpx
import pytest

from tests.support.hardening import FUZZ_SEND_TIMEOUT, Rig, traceback_free
from tests.support.ws import open_socket, raw_ws, recv_frame

pytestmark = pytest.mark.crossprocess

COUNT = 1000
BODY = 10_000  # characters: 1000 × ~10 KB = 10 MB, far more than the kernel's socket buffers

_PUSH = """
import os
from notifications.services import notification_create
uid = int(os.environ["SLOW_UID"])
for i in range(int(os.environ["SLOW_COUNT"])):
    notification_create(recipient_ids=[uid], title=f"slow {i}", body="b" * int(os.environ["SLOW_BODY"]))
print("PUSHED")
"""


async def test_a_client_that_stops_reading_is_closed_and_counted(rig: Rig) -> None:
    server = rig["fuzz"]
    tokens = await rig.login("slow", server)
    stuck, _ = raw_ws(server.port, tokens.access, rcvbuf=4096)  # never read from again
    healthy, _ = await open_socket(server.ws, access=tokens.access)
    seqs: list[int] = []

    async def read() -> None:
        while len(seqs) < COUNT:
            frame = await recv_frame(healthy, 60)
            if frame["type"] == "notification":
                seqs.append(frame["notification"]["seq"])

    try:
        reader = asyncio.ensure_future(read())
        started = time.monotonic()
        out = await asyncio.to_thread(
            rig.shell,
            _PUSH,
            REDIS_URL=rig.stable.url,
            SLOW_UID=str(rig.users["slow"].id),
            SLOW_COUNT=str(COUNT),
            SLOW_BODY=str(BODY),
        )
        assert "PUSHED" in out
        await asyncio.wait_for(reader, 60)
        assert seqs == list(range(seqs[0], seqs[0] + COUNT))  # all, in order, none twice

        deadline = started + 60
        while "slow consumer: closing with 4503" not in server.output():
            assert time.monotonic() < deadline, "the stuck socket was never closed"
            await asyncio.sleep(0.2)
        # The server dropped the stuck connection: reading it now ends (EOF or reset) instead
        # of blocking, after whatever the kernel had buffered.
        stuck.settimeout(FUZZ_SEND_TIMEOUT + 20)
        received = 0
        try:
            while chunk := stuck.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < COUNT * BODY  # it did not get everything: it must resume
        await healthy.send(json.dumps({"type": "ping", "ref": "ok"}))
        while (await recv_frame(healthy, 10)).get("ref") != "ok":
            pass
        async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
    finally:
        stuck.close()
        await healthy.close()
    traceback_free(server)
