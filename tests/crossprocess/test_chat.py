"""Chat across processes: real daphne processes, a private redis-server, real clients.

Rooms are created over REST on the servers; users are created once, in the servers' database, by
a ``manage.py shell`` subprocess as the harness does. The presence test that kills a process with
SIGKILL starts two extra daphne processes with a short presence TTL (``victim``, ``observer``),
the same way the harness starts ``p1``/``p2``, so that the bound it checks is seconds, not the
production default of 40 s (TTL 30 + refresh 10).
"""

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.cluster import Cluster
from tests.support.rig import Server, User
from tests.support.ws import assert_silent, open_socket, recv_frame

pytestmark = pytest.mark.crossprocess

DELIVERY = 10.0  # s: generous wait for a frame on a loaded 2-core machine
QUIET = 1.5  # s: "nothing more arrives" (a frame in flight would arrive well within this)
PRESENCE_SETTLE = 0.5  # s: a presence window (0.2 s) and its flush, on a loaded machine
PRESENCE_TTL, PRESENCE_REFRESH = 3, 1  # s, for the victim/observer processes
CHAT_USERS = ["chat_a", "chat_b", "chat_c", "chat_d"]


@pytest.fixture(scope="module")
def chat_users(cluster: Cluster) -> dict[str, User]:
    """Users of this module, created in the servers' database."""
    cluster.create_users(CHAT_USERS)
    return {name: cluster.users[name] for name in CHAT_USERS}


@pytest.fixture(scope="module")
def short_ttl_servers(cluster: Cluster) -> Iterator[tuple[Server, Server]]:
    """Two more daphne processes of the deployment with presence TTL 3 s, refresh 1 s."""
    with contextlib.ExitStack() as stack:
        victim, observer = cluster.start_servers(
            ["victim", "observer"],
            stack,
            HERALD_PRESENCE_TTL=str(PRESENCE_TTL),
            HERALD_PRESENCE_REFRESH=str(PRESENCE_REFRESH),
        )
        yield victim, observer


class Member:
    """A logged-in user of ``chat_users``: REST calls and sockets on any server."""

    def __init__(self, user: User, access: str) -> None:
        self.user, self.access = user, access

    @property
    def id(self) -> int:
        return self.user.id

    async def call(self, server: Server, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(base_url=server.http, timeout=60) as http:
            return await http.request(
                method, path, json=body, headers={"Authorization": f"Bearer {self.access}"}
            )

    async def room(self, server: Server, *members: "Member") -> int:
        answer = await self.call(
            server, "POST", "/api/rooms/", {"name": "xproc", "members": [m.id for m in members]}
        )
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    async def post(self, server: Server, room: int, body: str) -> int:
        answer = await self.call(server, "POST", f"/api/rooms/{room}/messages/", {"body": body})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    async def socket(self, server: Server) -> ClientConnection:
        ws, hello = await open_socket(server.ws, how="header", access=self.access)
        assert hello["user"]["id"] == self.id
        return ws


async def login(server: Server, user: User) -> Member:
    async with httpx.AsyncClient(base_url=server.http, timeout=60) as http:
        answer = await http.post(
            "/api/auth/token/", json={"username": user.name, "password": user.password}
        )
    assert answer.status_code == 200, answer.text
    return Member(user, answer.json()["access"])


async def send(ws: ClientConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def expect(ws: ClientConnection, kind: str, timeout: float = DELIVERY) -> dict[str, Any]:
    frame = await recv_frame(ws, timeout)
    assert frame["type"] == kind, frame
    return frame


async def subscribe(ws: ClientConnection, room: int, since: int | None = None) -> list[int]:
    """``subscribe``; the ``ack``'s online user ids (the ``presence {online}`` frame checked)."""
    frame: dict[str, Any] = {"type": "subscribe", "room": room, "ref": "sub"}
    if since is not None:
        frame["since"] = since
    await send(ws, **frame)
    ack = await expect(ws, "ack")
    assert (ack["ref"], ack["room"]) == ("sub", room), ack
    online = await expect(ws, "presence")
    assert online == {
        "type": "presence",
        "room": room,
        "online": ack["presence"],
        "online_count": ack["online_count"],
    }
    # The join goes out with its process's next presence flush, a window later: wait for it,
    # so that the test's next steps come after it (docs/protocol.md, "Presence").
    await asyncio.sleep(PRESENCE_SETTLE)
    return list(ack["presence"])


async def say(ws: ClientConnection, room: int, body: str) -> dict[str, Any]:
    """``message.send`` and its ``ack``; the stored message."""
    await send(ws, type="message.send", room=room, body=body, client_id=str(uuid.uuid4()), ref=body)
    ack = await expect(ws, "ack")
    assert ack["ref"] == body, ack
    return dict(ack["message"])


async def drain(ws: ClientConnection, quiet: float = QUIET) -> list[dict[str, Any]]:
    """Every frame until none arrives for ``quiet`` seconds."""
    frames = []
    while True:
        try:
            frames.append(await recv_frame(ws, quiet))
        except TimeoutError:
            return frames


async def close_all(*sockets: ClientConnection) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def test_members_on_different_processes_exchange_messages(cluster, chat_users, metrics):
    p1, p2 = cluster.p1, cluster.p2
    a, b = await login(p1, chat_users["chat_a"]), await login(p2, chat_users["chat_b"])
    room = await a.room(p1, b)
    ws_a, ws_b = await a.socket(p1), await b.socket(p2)
    try:
        assert await subscribe(ws_a, room) == [a.id]
        assert sorted(await subscribe(ws_b, room)) == sorted([a.id, b.id])
        assert await expect(ws_a, "presence") == {
            "type": "presence",
            "room": room,
            "joined": [b.id],
            "left": [],
        }

        sent = time.perf_counter()
        message = await say(ws_a, room, "hello from p1")
        frame = await expect(ws_b, "message")
        metrics["chat message, p1 sender to p2 subscriber (ms)"] = round(
            (time.perf_counter() - sent) * 1000, 1
        )
        assert frame == {"type": "message", "room": room, "seq": message["seq"], "message": message}
        assert message["author"] == {"id": a.id, "username": "chat_a"}
        assert (await expect(ws_a, "message"))["message"]["id"] == message["id"]  # own copy

        reply = await say(ws_b, room, "hello from p2")
        assert (await expect(ws_a, "message"))["message"] == reply
        assert (await expect(ws_b, "message"))["message"] == reply
        await assert_silent(ws_a, QUIET)
    finally:
        await close_all(ws_a, ws_b)


async def test_a_non_member_cannot_subscribe_or_send(cluster, chat_users):
    p1, p2 = cluster.p1, cluster.p2
    a, c = await login(p1, chat_users["chat_a"]), await login(p2, chat_users["chat_c"])
    room = await a.room(p1)
    ws_a, ws_c = await a.socket(p1), await c.socket(p2)
    try:
        await subscribe(ws_a, room)
        await send(ws_c, type="subscribe", room=room, ref="peek")
        refused = await expect(ws_c, "error")
        assert (refused["code"], refused["ref"]) == ("forbidden", "peek")
        await send(ws_c, type="subscribe", room=room + 10_000, ref="peek")
        assert await expect(ws_c, "error") == refused  # same as a room that does not exist
        await send(
            ws_c, type="message.send", room=room, body="let me in", client_id=str(uuid.uuid4())
        )
        assert (await expect(ws_c, "error"))["code"] == "forbidden"
        history = await c.call(p2, "GET", f"/api/rooms/{room}/messages/")
        assert history.status_code == 404

        await say(ws_a, room, "members only")
        await assert_silent(ws_c, QUIET)
        await expect(ws_a, "message")
        await assert_silent(ws_a, QUIET)  # the refused send stored nothing
    finally:
        await close_all(ws_a, ws_c)


async def test_removal_stops_delivery_on_every_process(cluster, chat_users):
    p1, p2 = cluster.p1, cluster.p2
    a, b = await login(p1, chat_users["chat_a"]), await login(p2, chat_users["chat_b"])
    room = await a.room(p1, b)
    owner, b1, b2 = await a.socket(p1), await b.socket(p1), await b.socket(p2)
    try:
        await subscribe(b1, room)
        await subscribe(b2, room)
        await subscribe(owner, room)
        for ws in (b1, b2):
            assert (await expect(ws, "presence"))["joined"] == [a.id]

        removed = await a.call(p2, "DELETE", f"/api/rooms/{room}/members/{b.id}/")
        assert removed.status_code == 204
        for ws in (b1, b2):
            told = await expect(ws, "error")
            assert (told["code"], told["room"]) == ("forbidden", room)
            assert await expect(ws, "room.left") == {"type": "room.left", "room": room}
        assert (await expect(owner, "member.left"))["user"]["id"] == b.id
        assert await expect(owner, "presence") == {
            "type": "presence",
            "room": room,
            "joined": [],
            "left": [b.id],
        }

        # Published after the removal: it must reach neither of b's sockets.
        await say(owner, room, "after the removal")
        await a.post(p2, room, "after the removal, over REST")
        await asyncio.gather(assert_silent(b1, QUIET), assert_silent(b2, QUIET))
        await send(b2, type="subscribe", room=room, ref="again")
        assert (await expect(b2, "error"))["code"] == "forbidden"
    finally:
        await close_all(owner, b1, b2)


async def test_resume_on_the_other_process_replays_exactly_the_gap_then_goes_live(
    cluster, chat_users
):
    p1, p2 = cluster.p1, cluster.p2
    a, b = await login(p1, chat_users["chat_a"]), await login(p1, chat_users["chat_b"])
    room = await a.room(p1, b)
    ws = await b.socket(p1)
    await subscribe(ws, room)
    seen_id = await a.post(p2, room, "seen")
    frame = await expect(ws, "message")
    assert frame["message"]["id"] == seen_id
    seen = frame["seq"]
    await ws.close()

    missed = [await a.post((p1, p2)[i % 2], room, f"missed {i}") for i in range(50)]

    ws = await b.socket(p2)
    try:
        await subscribe(ws, room, since=seen)
        replayed = [(await expect(ws, "message"))["message"] for _ in range(50)]
        assert [m["id"] for m in replayed] == missed
        assert [m["body"] for m in replayed] == [f"missed {i}" for i in range(50)]
        await assert_silent(ws, QUIET)
        live = await a.post(p1, room, "live")
        assert (await expect(ws, "message"))["message"]["id"] == live
        await assert_silent(ws, QUIET)
    finally:
        await ws.close()


async def test_messages_sent_during_a_replay_are_neither_lost_nor_duplicated(cluster, chat_users):
    p1, p2 = cluster.p1, cluster.p2
    a, b = await login(p1, chat_users["chat_a"]), await login(p2, chat_users["chat_b"])
    room = await a.room(p1, b)
    history = [await a.post(p1, room, f"old {i}") for i in range(30)]
    since = 5  # the seq of history[4]: the room's first five changes are these messages
    ws = await b.socket(p2)
    posted: list[int] = []

    async def post_fifty() -> None:
        for i in range(50):
            posted.append(await a.post((p1, p2)[i % 2], room, f"new {i}"))

    poster = asyncio.create_task(post_fifty())
    try:
        while len(posted) < 5:  # the subscribe lands in the middle of the stream
            await asyncio.sleep(0.01)
        await subscribe(ws, room, since=since)
        await poster
        frames = await drain(ws)
    finally:
        poster.cancel()
        await ws.close()

    received = [f["message"]["id"] for f in frames if f["type"] == "message"]
    expected = sorted(history[5:] + posted)
    assert len(received) == len(set(received)), "a message arrived twice"
    assert sorted(received) == expected, "a message was lost"
    # Replay in id order; live ones from this one sequential poster in order too.
    assert received == expected


async def test_presence_counts_a_user_with_three_tabs_once(cluster, chat_users):
    p1, p2 = cluster.p1, cluster.p2
    a, b = await login(p2, chat_users["chat_a"]), await login(p1, chat_users["chat_b"])
    room = await a.room(p2, b)
    watcher = await a.socket(p2)
    tabs = [await b.socket(server) for server in (p1, p2, p1)]
    try:
        assert await subscribe(watcher, room) == [a.id]
        assert sorted(await subscribe(tabs[0], room)) == sorted([a.id, b.id])
        assert await expect(watcher, "presence") == {
            "type": "presence",
            "room": room,
            "joined": [b.id],
            "left": [],
        }
        for tab in tabs[1:]:
            assert sorted(await subscribe(tab, room)) == sorted([a.id, b.id])
        await assert_silent(watcher, QUIET)  # more tabs of an online user: no news

        await tabs[0].close()
        await send(tabs[1], type="unsubscribe", room=room, ref="u")
        await expect(tabs[1], "ack")
        await assert_silent(watcher, QUIET)  # the third tab still holds b online
        await tabs[2].close()
        assert await expect(watcher, "presence") == {
            "type": "presence",
            "room": room,
            "joined": [],
            "left": [b.id],
        }
    finally:
        await close_all(watcher, *tabs)


async def test_users_of_a_killed_process_drop_out_of_presence_in_bounded_time(
    cluster, chat_users, short_ttl_servers, metrics
):
    """SIGKILL: no ``disconnect()`` runs. Entries of the dead process's sockets stop being
    refreshed, expire after the TTL, and the observer's next sweep announces ``left``: within
    TTL + REFRESH (4 s here; 40 s with the defaults) plus scheduling slack."""
    victim, observer = short_ttl_servers
    a = await login(observer, chat_users["chat_a"])
    b = await login(observer, chat_users["chat_b"])
    d = await login(observer, chat_users["chat_d"])
    room = await a.room(observer, b, d)
    watcher = await a.socket(observer)
    doomed = await b.socket(victim)  # b's only tab
    d_tabs = [await d.socket(victim), await d.socket(observer)]  # d survives on observer
    try:
        await subscribe(watcher, room)
        await subscribe(doomed, room)
        for tab in d_tabs:
            await subscribe(tab, room)
        joined = {tuple((await expect(watcher, "presence"))["joined"]) for _ in range(2)}
        assert joined == {(b.id,), (d.id,)}
        await asyncio.sleep(PRESENCE_REFRESH * 2)  # the victim's entries were refreshed

        victim.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim.process.wait(30)
        left = await expect(watcher, "presence", timeout=PRESENCE_TTL + PRESENCE_REFRESH + 20)
        elapsed = time.monotonic() - killed
        metrics["presence: killed process's user dropped out after (s)"] = round(elapsed, 2)
        assert left == {"type": "presence", "room": room, "joined": [], "left": [b.id]}
        assert elapsed <= PRESENCE_TTL + PRESENCE_REFRESH + 5, elapsed  # + slack, 2 loaded cores
        await assert_silent(watcher, PRESENCE_TTL + PRESENCE_REFRESH)  # d stays online

        fresh = await a.socket(observer)
        try:
            assert sorted(await subscribe(fresh, room)) == sorted([a.id, d.id])
        finally:
            await fresh.close()
    finally:
        await close_all(watcher, doomed, *d_tabs)
        assert not victim.alive()
