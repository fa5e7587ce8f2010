"""Bad input against live daphne processes (docs/protocol.md, docs/reliability.md).

The in-process tests (``tests/notifications/test_consumer.py``, ``test_frames.py``) check the
parser and the consumer frame by frame; these check what a real server process does with the
same input arriving over TCP: the close codes daphne actually sends, that other sockets of the
process are not slowed down, and that nothing reaches the log as a traceback.
"""

import asyncio
import json
import random
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.hardening import Rig, traceback_free
from tests.support.ws import close_code, open_socket, recv_frame

pytestmark = pytest.mark.crossprocess


async def _ping_latency(ws, ref: str) -> float:
    started = time.perf_counter()
    await ws.send(json.dumps({"type": "ping", "ref": ref}))
    while True:
        frame = await recv_frame(ws, 5)
        if frame == {"type": "pong", "ref": ref}:
            return time.perf_counter() - started


async def _frames_until_closed(ws) -> list[dict]:
    frames = []
    try:
        while True:
            frames.append(await recv_frame(ws, 10))
    except ConnectionClosed:
        return frames


async def test_rate_limit_then_4429_and_other_users_unaffected(rig: Rig) -> None:
    server = rig["strict"]  # HERALD_WS_RATE 10/s, HERALD_WS_BURST 20 (the defaults)
    flooder, _ = await open_socket(server.ws, access=(await rig.login("rate_a", server)).access)
    other, _ = await open_socket(server.ws, access=(await rig.login("rate_b", server)).access)
    try:
        for i in range(60):
            await flooder.send(json.dumps({"type": "ping", "ref": i}))
        latencies = [await _ping_latency(other, f"o{i}") for i in range(5)]
        frames = await _frames_until_closed(flooder)
        assert flooder.close_code == 4429
        pongs = [f for f in frames if f["type"] == "pong"]
        limited = [f for f in frames if f.get("code") == "rate_limited"]
        assert 20 <= len(pongs) <= 22  # the burst (plus what refilled meanwhile)
        assert len(limited) == 20  # then 20 refusals; the 21st in a row closes
        assert all(f["type"] == "error" for f in limited)
        assert max(latencies) < 0.5, latencies
        assert await _ping_latency(other, "after") < 0.5  # still open, still prompt
    finally:
        await flooder.close()
        await other.close()
    traceback_free(server)


async def test_frame_over_the_limit_closes_4413_and_the_process_stays_healthy(rig: Rig) -> None:
    server = rig["strict"]  # HERALD_WS_MAX_MESSAGE_BYTES 65536
    big, _ = await open_socket(server.ws, access=(await rig.login("big_a", server)).access)
    other, _ = await open_socket(server.ws, access=(await rig.login("big_b", server)).access)
    try:
        await big.send(json.dumps({"type": "ping", "pad": "x" * 65_536}))
        assert await close_code(big, 10) == 4413
        assert await _ping_latency(other, "still-here") < 0.5
        async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
        again, _ = await open_socket(server.ws, access=(await rig.login("big_a", server)).access)
        await again.close()
    finally:
        await other.close()
    traceback_free(server)


# (frame sent, error code expected); each carries a ref where it can.
BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json at all", "invalid_json"),
    ('{"type": "ping", "ref": "x"', "invalid_json"),
    (b"\x00\x01binary\xff", "invalid_message"),
    ("[1, 2, 3]", "invalid_message"),
    ('"a string"', "invalid_message"),
    ('{"ref": "no-type"}', "invalid_message"),
    ('{"type": "launch.missiles", "ref": "unknown"}', "invalid_message"),
    ('{"type": 7, "ref": "typed-type"}', "invalid_message"),
    ('{"type": "subscribe", "ref": "missing"}', "invalid_message"),
    ('{"type": "subscribe", "room": "seven", "ref": "mistyped"}', "invalid_message"),
    ('{"type": "subscribe", "room": [1], "ref": "list"}', "invalid_message"),
    ('{"type": "resume", "notifications_since": 1e400, "ref": "inf"}', "invalid_message"),
    (
        '{"type": "resume", "notifications_since": ' + "9" * 40 + ', "ref": "big"}',
        "invalid_message",
    ),
    ('{"type": "resume", "notifications_since": ' + "9" * 5000 + "}", "invalid_json"),
    ('{"type": "resume", "notifications_since": -1, "ref": "neg"}', "invalid_message"),
    ('{"type": "notification.read", "ids": "all", "ref": "ids"}', "invalid_message"),
    (
        '{"type": "message.send", "room": 1, "body": "hi", "client_id": "nope", "ref": "uuid"}',
        "invalid_message",
    ),
    ('{"type": "auth.refresh", "token": "garbage", "ref": "tok"}', "invalid_message"),
    ("[" * 10_000 + "]" * 10_000, "invalid_json"),
    ('{"type": "ping", "ref": "deep", "x": ' + "[" * 20_000 + "]" * 20_000 + "}", "invalid_json"),
    ('{"type": "message.send", "room": 1, "body": "\\ud800", "client_id": 5}', "invalid_message"),
]


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(rig: Rig) -> None:
    server = rig["strict"]
    ws, _ = await open_socket(server.ws, access=(await rig.login("junk", server)).access)
    try:
        for i, (payload, code) in enumerate(BAD_FRAMES):
            if i and i % 15 == 0:
                await asyncio.sleep(1.6)  # stay inside the rate limit (burst 20, 10/s)
            await ws.send(payload)
            frame = await recv_frame(ws, 10)
            assert frame["type"] == "error", (payload[:80], frame)
            assert frame["code"] == code, (payload[:80], frame)
            assert set(frame) >= {"code", "detail", "ref"}
        assert await _ping_latency(ws, "alive") < 1
    finally:
        await ws.close()
    traceback_free(server)


def _fuzz_frames(seed: int, count: int) -> list[str | bytes]:
    """JSON-ish and garbage frames: valid types with wrong fields, wrong types with plausible
    fields, random scalars and containers, truncated JSON, control characters, deep nesting."""
    rnd = random.Random(seed)
    types = [
        "ping",
        "resume",
        "subscribe",
        "unsubscribe",
        "message.send",
        "message.edit",
        "message.delete",
        "reaction.add",
        "reaction.remove",
        "typing",
        "room.read",
        "notification.read",
        "auth.refresh",
        "hello",
        "",
        "PING",
        "ping ",
        "__class__",
        "on_ping",
    ]
    fields = ["room", "since", "body", "client_id", "ids", "all", "ref", "token", "message_id"]
    fields += ["message", "emoji", "reply_to"]
    fields += ["notifications_since", "type", "__proto__", ""]

    def scalar() -> object:
        return rnd.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                1,
                2**31,
                2**63,
                2**64,
                -(2**63) - 1,
                10**30,
                1.5,
                1e308,
                -0.0,
                "",
                "x" * rnd.randint(1, 5000),
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                "\u0000\u202e\ufeff",
                "😀" * 10,
                str(rnd.random()),
            ]
        )

    def value(depth: int = 0) -> object:
        roll = rnd.random()
        if depth > 4 or roll < 0.6:
            return scalar()
        if roll < 0.8:
            return [value(depth + 1) for _ in range(rnd.randint(0, 4))]
        return {rnd.choice(fields): value(depth + 1) for _ in range(rnd.randint(0, 4))}

    frames: list[str | bytes] = []
    for _ in range(count):
        roll = rnd.random()
        if roll < 0.55:
            frame = {"type": rnd.choice(types)}
            for _ in range(rnd.randint(0, 5)):
                frame[rnd.choice(fields)] = value()
            text = json.dumps(frame)
        elif roll < 0.7:
            text = json.dumps(value())
        elif roll < 0.8:
            text = json.dumps({"type": rnd.choice(types), "ref": "t"})[: rnd.randint(0, 20)]
        elif roll < 0.87:
            depth = rnd.randint(100, 3000)
            text = '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"
        elif roll < 0.95:
            alphabet = '{}[]":,0123456789eE+-.truefalsn \\u\t\n\x00\x7f'
            text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 200)))
        else:
            frames.append(rnd.randbytes(rnd.randint(0, 300)))
            continue
        frames.append(text)
    return frames


async def test_fuzz_thousands_of_random_frames_against_a_live_server(rig: Rig) -> None:
    """3000 random frames (seeded: a failure replays): never a close, never ``server_error``,
    the socket still answers ``ping``, and no traceback in the log."""
    server = rig["fuzz"]  # rate limit raised so that every frame reaches the parser
    ws, _ = await open_socket(server.ws, access=(await rig.login("fuzzer", server)).access)
    frames = _fuzz_frames(seed=20261122, count=3000)
    received: list[dict] = []

    async def reader() -> None:
        while True:
            received.append(json.loads(await ws.recv()))

    task = asyncio.ensure_future(reader())
    try:
        for frame in frames:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "ping", "ref": "fuzz-done"}))
        deadline = time.monotonic() + 60
        while {"type": "pong", "ref": "fuzz-done"} not in received:
            assert not task.done(), f"socket closed: {ws.close_code} after {len(received)}"
            assert time.monotonic() < deadline, "no pong after the fuzz"
            await asyncio.sleep(0.05)
        errors = [f for f in received if f["type"] == "error"]
        assert not [f for f in errors if f["code"] in ("server_error", "rate_limited")], errors
        assert {f["code"] for f in errors} <= {
            "invalid_json",
            "invalid_message",
            "forbidden",
            "not_found",
        }
        assert len(errors) > 2000  # most random frames are refused, each with a frame
    finally:
        task.cancel()
        await ws.close()
    traceback_free(server)
