"""Failures of Redis and of daphne processes (docs/reliability.md).

All on the rig's ``fragile`` redis-server and its processes ``f1``, ``f2``, ``victim``; the
tests run in file order (stop/start, then flush, then SIGKILL) and each leaves Redis up.
"""

import asyncio
import json
import time
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.hardening import Rig
from tests.support.ws import close_code, open_socket, recv_frame

pytestmark = pytest.mark.crossprocess

MEASURED: dict[str, float] = {}


async def _until_notification(ws, title: str, timeout: float = 10) -> dict:
    deadline, seen = time.monotonic() + timeout, []
    while True:
        try:
            frame = await recv_frame(ws, max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise AssertionError(f"no notification {title!r}; got {seen}") from None
        if frame["type"] == "notification" and frame["notification"]["title"] == title:
            return frame["notification"]
        seen.append(frame)


async def _pong(ws, ref: str = "p") -> None:
    await ws.send(json.dumps({"type": "ping", "ref": ref}))
    while (await recv_frame(ws, 5)) != {"type": "pong", "ref": ref}:
        pass


async def _handshake_outcome(url: str, access: str) -> tuple[str, float]:
    """("hello" | "close <code>" | "http <status>" | error name, seconds it took)."""
    started = time.perf_counter()
    try:
        ws, _ = await open_socket(url, access=access, timeout=15)
    except InvalidStatus as error:
        return f"http {error.response.status_code}", time.perf_counter() - started
    except ConnectionClosed as error:
        code = error.rcvd.code if error.rcvd else None
        return f"close {code}", time.perf_counter() - started
    await ws.close()
    return "hello", time.perf_counter() - started


async def test_redis_stopped_then_back(rig: Rig) -> None:
    f1, f2, redis = rig["f1"], rig["f2"], rig.fragile
    svc = await rig.login("svc", f1)
    a, b = await rig.login("down_a", f1), await rig.login("down_b", f2)
    ids = [rig.users["down_a"].id, rig.users["down_b"].id]
    old_a, _ = await open_socket(f1.ws, access=a.access)
    old_b, _ = await open_socket(f2.ws, access=b.access)
    assert (await rig.post_notification(svc, f1, ids, "before")).status_code == 201
    seq_a = (await _until_notification(old_a, "before"))["seq"]
    await _until_notification(old_b, "before")

    redis.stop()
    try:
        async with httpx.AsyncClient(base_url=f1.http, timeout=10) as http:
            started = time.perf_counter()
            ready = await http.get("/readyz")
            MEASURED["readyz 503 after Redis stopped (s)"] = time.perf_counter() - started
            assert ready.status_code == 503
            assert ready.json() == {"db": "ok", "channel_layer": "error"}
            assert MEASURED["readyz 503 after Redis stopped (s)"] < 2.5

        outcome, took = await _handshake_outcome(f2.ws, b.access)
        MEASURED["handshake refused while Redis down (s)"] = took
        assert outcome == "close 4503", outcome
        assert took < 3.5

        # REST writes still store; the live push is lost (logged), `resume` recovers it.
        answer = await rig.post_notification(svc, f1, ids, "during")
        assert answer.status_code == 201, answer.text
    finally:
        redis.start()
    back = time.perf_counter()

    # Every process recovers by itself: handshakes, then delivery through the layer.
    for server, tokens in ((f1, a), (f2, b)):
        while (await _handshake_outcome(server.ws, tokens.access))[0] != "hello":
            assert time.perf_counter() - back < 10, f"{server.name}: no handshake 10 s after"
            await asyncio.sleep(0.2)
    MEASURED["handshakes work again after Redis is back (s)"] = time.perf_counter() - back

    # redis-py re-subscribed the old subscriptions by itself (PubSub.on_connect): the /readyz
    # channel of each process is listed again before any new /readyz call subscribes it.
    channels = {c.decode() for c in redis.client().pubsub_channels("herald.readyz.*")}
    assert len(channels) >= 2, channels

    # Sockets open across the gap may have missed frames: closed with 4503, never left deaf.
    for ws in (old_a, old_b):
        assert await close_code(ws, 10) == 4503
    MEASURED["old sockets closed with 4503 after Redis is back (s)"] = time.perf_counter() - back

    new_a, _ = await open_socket(f1.ws, access=a.access)
    new_b, _ = await open_socket(f2.ws, access=b.access)
    try:
        await new_a.send(json.dumps({"type": "resume", "notifications_since": seq_a, "ref": "r"}))
        replayed = await _until_notification(new_a, "during")
        assert replayed["seq"] == seq_a + 1
        assert (await rig.post_notification(svc, f2, ids, "after")).status_code == 201
        await _until_notification(new_a, "after")
        await _until_notification(new_b, "after")
    finally:
        await new_a.close()
        await new_b.close()
    for name, value in MEASURED.items():
        print(f"{name}: {value:.2f}")


async def test_flushall_keeps_sockets_receiving_and_revocations_revoked(rig: Rig) -> None:
    f1, f2, redis = rig["f1"], rig["f2"], rig.fragile
    svc = await rig.login("svc", f1)
    a, b = await rig.login("flush_a", f1), await rig.login("flush_b", f2)
    ids = [rig.users["flush_a"].id, rig.users["flush_b"].id]
    revoked = await rig.login("flush_revoked", f1)
    async with httpx.AsyncClient(base_url=f1.http, timeout=10) as http:
        auth = {"Authorization": f"Bearer {revoked.access}"}
        assert (await http.post("/api/auth/logout/", json={}, headers=auth)).status_code == 204
        assert (await http.get("/api/me/", headers=auth)).status_code == 401  # cached "revoked"
        ticket = (
            await http.post("/api/auth/ws-ticket/", headers={"Authorization": f"Bearer {a.access}"})
        ).json()["ticket"]
    ws_a, _ = await open_socket(f1.ws, access=a.access)
    ws_b, _ = await open_socket(f2.ws, access=b.access)
    try:
        assert redis.client().flushall()
        assert redis.client().dbsize() == 0
        # Subscriptions are not keys: the groups of both sockets are still subscribed.
        channels = {c.decode() for c in redis.client().pubsub_channels("herald__group__*")}
        assert {f"herald__group__user.{i}" for i in ids} <= channels
        assert (await rig.post_notification(svc, f2, ids, "after-flush")).status_code == 201
        await _until_notification(ws_a, "after-flush", timeout=5)
        await _until_notification(ws_b, "after-flush", timeout=5)
        await _pong(ws_a)

        async with httpx.AsyncClient(base_url=f2.http, timeout=10) as http:
            # The session cache is empty now: a miss reads the database, which says revoked.
            auth = {"Authorization": f"Bearer {revoked.access}"}
            assert (await http.get("/api/me/", headers=auth)).status_code == 401
            ok = {"Authorization": f"Bearer {a.access}"}
            assert (await http.get("/api/me/", headers=ok)).status_code == 200
        assert (await _handshake_outcome(f2.ws, revoked.access))[0] == "close 4401"
        # A ticket lives only in the cache: flushed, it is refused (get a new one).
        assert (await _handshake_outcome(f1.ws + f"?ticket={ticket}", ""))[0] == "close 4401"
    finally:
        await ws_a.close()
        await ws_b.close()


async def test_sigkill_of_one_process(rig: Rig) -> None:
    f1, f2, victim = rig["f1"], rig["f2"], rig["victim"]
    svc = await rig.login("svc", f1)
    a, b = await rig.login("kill_a", f1), await rig.login("kill_b", victim)
    ida, idb = rig.users["kill_a"].id, rig.users["kill_b"].id
    async with httpx.AsyncClient(base_url=f1.http, timeout=10) as http:
        room = (
            await http.post(
                "/api/rooms/",
                json={"name": "kill", "members": [idb]},
                headers={"Authorization": f"Bearer {a.access}"},
            )
        ).json()["id"]
    ws_a, _ = await open_socket(f1.ws, access=a.access)
    ws_b, _ = await open_socket(victim.ws, access=b.access)
    for ws in (ws_a, ws_b):
        await ws.send(json.dumps({"type": "subscribe", "room": room, "ref": "s"}))
    assert (await rig.post_notification(svc, f1, [ida, idb], "alive")).status_code == 201
    seq_b = (await _until_notification(ws_b, "alive"))["seq"]
    await _until_notification(ws_a, "alive")

    victim.kill()
    await asyncio.wait_for(ws_b.wait_closed(), 10)  # dropped: 1006
    with pytest.raises(ConnectionClosed):
        await ws_b.recv()

    # Meanwhile: a notification and a room message for kill_b, whose socket is gone.
    assert (await rig.post_notification(svc, f1, [ida, idb], "while-dead")).status_code == 201
    await _until_notification(ws_a, "while-dead")  # the other process is unaffected
    client_id = str(uuid.uuid4())
    await ws_a.send(
        json.dumps(
            {"type": "message.send", "room": room, "body": "x", "client_id": client_id, "ref": "m"}
        )
    )
    while (frame := await recv_frame(ws_a, 10)).get("ref") != "m":
        pass
    message_id = frame["message"]["id"]
    await _pong(ws_a)

    # kill_b reconnects to a live process and recovers both through resume / subscribe since.
    again, _ = await open_socket(f2.ws, access=b.access)
    try:
        await again.send(json.dumps({"type": "resume", "notifications_since": seq_b}))
        assert (await _until_notification(again, "while-dead"))["seq"] == seq_b + 1
        await again.send(
            json.dumps({"type": "subscribe", "room": room, "since": message_id - 1, "ref": "s2"})
        )
        while (frame := await recv_frame(again, 10))["type"] != "message":
            pass
        assert frame["message"]["id"] == message_id
    finally:
        await again.close()
        await ws_a.close()


async def test_sockets_outlive_a_group_expiry(rig: Rig) -> None:
    """``strict`` hands the pub/sub layer ``group_expiry=1``: it has no such thing (groups are
    subscriptions, not keys with a TTL), so a socket held for 4 s still receives."""
    server = rig["strict"]
    svc = await rig.login("svc", server)
    tokens = await rig.login("aged", server)
    ws, _ = await open_socket(server.ws, access=tokens.access)
    try:
        keys = [k.decode() for k in rig.stable.client().keys("*")]
        assert not [k for k in keys if "group" in k], keys  # no membership stored as a key
        await asyncio.sleep(4)
        answer = await rig.post_notification(svc, server, [rig.users["aged"].id], "aged")
        assert answer.status_code == 201
        await _until_notification(ws, "aged", timeout=5)
    finally:
        await ws.close()
