"""Notifications across processes: per-user fan-out and resume on another process (docs/protocol.md)."""

import asyncio
import json
import time

import pytest

from tests.support.ws import assert_silent, open_socket, recv_frame, recv_timed

pytestmark = pytest.mark.crossprocess

DELIVERY = 1.0  # s: a notification reaches every socket of its user within this


async def test_a_notification_reaches_every_socket_of_its_user_on_every_process(cluster, metrics):
    p1, p2 = cluster.p1, cluster.p2
    b, c = cluster.users["fan_b"], cluster.users["fan_c"]
    service = await cluster.login("service", p1)
    laptop, phone = await cluster.login("fan_b", p1), await cluster.login("fan_b", p2)
    c_tokens = await cluster.login("fan_c", p2)
    # Two tabs of one browser login on different processes, and a second device.
    b_sockets = [
        await open_socket(p1.ws, how="query", access=laptop.access),
        await open_socket(p2.ws, how="subprotocol", access=laptop.access),
        await open_socket(p2.ws, how="header", access=phone.access),
    ]
    c_sockets = [
        await open_socket(p1.ws, how="header", access=c_tokens.access),
        await open_socket(p2.ws, how="query", access=c_tokens.access),
    ]
    try:
        for _, hello in b_sockets:
            assert hello["user"] == {"id": b.id, "username": b.name}
        for _, hello in c_sockets:
            assert hello["user"]["id"] == c.id

        receivers = [asyncio.create_task(recv_timed(ws, 10 * DELIVERY)) for ws, _ in b_sockets]
        silences = [asyncio.create_task(assert_silent(ws, DELIVERY)) for ws, _ in c_sockets]
        sent = time.perf_counter()
        answer = await cluster.notify(service, p1, [b.id], "fan-out")
        arrivals = await asyncio.gather(*receivers)
        await asyncio.gather(*silences)

        latencies = [round((at - sent) * 1000, 1) for _, at in arrivals]
        metrics["fan-out latency, POST on p1 to each of 3 sockets on p1/p2 (ms)"] = latencies
        print(f"fan-out latencies (ms): {latencies}")
        for frame, _ in arrivals:
            assert frame["type"] == "notification"
            assert frame["notification"]["id"] == answer["ids"][0]
            assert frame["notification"]["title"] == "fan-out"
        assert max(latencies) < DELIVERY * 1000, latencies
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in b_sockets + c_sockets))


async def test_resume_on_the_other_process_replays_exactly_the_missed_notifications(cluster):
    p1, p2 = cluster.p1, cluster.p2
    b = cluster.users["resume_b"]
    service = await cluster.login("service", p2)
    tokens = await cluster.login("resume_b", p1)

    ws, _ = await open_socket(p1.ws, how="header", access=tokens.access)
    await cluster.notify(service, p2, [b.id], "seen")
    seen = await recv_frame(ws, 10)
    assert seen["type"] == "notification"
    last_seq = seen["notification"]["seq"]
    await ws.close()

    missed = []
    for i in range(5):
        answer = await cluster.notify(service, (p1, p2)[i % 2], [b.id], f"missed {i}")
        missed.extend(answer["ids"])

    ws, _ = await open_socket(p2.ws, how="query", access=tokens.access)
    try:
        await ws.send(
            json.dumps({"type": "resume", "notifications_since": last_seq, "ref": "resume-1"})
        )
        frames = [await recv_frame(ws, 10) for _ in range(6)]
        assert [f["type"] for f in frames] == ["notification"] * 5 + ["ack"], frames
        replayed = [f["notification"] for f in frames[:5]]
        assert [n["id"] for n in replayed] == missed
        assert [n["seq"] for n in replayed] == list(range(last_seq + 1, last_seq + 6))
        assert [n["title"] for n in replayed] == [f"missed {i}" for i in range(5)]
        assert frames[5]["ref"] == "resume-1"
        await assert_silent(ws, 1.0)  # no duplicate, nothing live on top
    finally:
        await ws.close()
