"""Chat over ``/ws/`` through the full ASGI app: subscribe, send, replay, typing, read, presence.

The frames of docs/protocol.md (``subscribe``, ``unsubscribe``, ``message.send``, ``typing``,
``room.read``) and its gap-free resume (stored first; replay without gaps or duplicates). One process, in-memory channel layer; the
same behaviour across processes is in ``tests/crossprocess/test_chat.py``.
"""

import asyncio
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import presence, ws_handlers
from chat.models import Membership, Message
from tests.support.data import send_as

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def stored_ids(room: Any, above: int = 0) -> list[int]:
    return list(
        Message.objects.filter(room=room, pk__gt=above).order_by("pk").values_list("pk", flat=True)
    )


def seq_of(message_id: int) -> int:
    return int(Message.objects.values_list("seq", flat=True).get(pk=message_id))


async def test_subscribe_acks_with_presence(open_socket, make_room, alice, bob):
    room = await database_sync_to_async(make_room)(alice, bob)
    ws = await open_socket(alice)
    ack = await ws.subscribe(room)
    assert ack == {
        "type": "ack",
        "ref": "sub",
        "room": room.pk,
        "seq": 0,
        "presence": [alice.pk],
        "online_count": 1,
    }
    await ws.silent()


async def test_non_member_gets_forbidden_exactly_as_for_a_missing_room(
    open_socket, make_room, alice, bob, carol
):
    room = await database_sync_to_async(make_room)(alice, bob)
    intruder = await open_socket(carol)
    await intruder.send(type="subscribe", room=room.pk, ref=1)
    refused = await intruder.expect("error")
    await intruder.send(type="subscribe", room=room.pk + 1000, ref=1)
    missing = await intruder.expect("error")
    assert refused == missing
    assert refused["code"] == "forbidden"
    assert refused["ref"] == 1

    owner = await open_socket(alice)
    await owner.subscribe(room)
    await owner.say(room, "members only")
    await intruder.silent()


async def test_send_acks_the_sender_and_reaches_every_subscriber(
    open_socket, make_room, alice, bob, carol
):
    room = await database_sync_to_async(make_room)(alice, bob)
    sender, receiver, outsider = (
        await open_socket(alice),
        await open_socket(bob),
        await open_socket(carol),
    )
    await sender.subscribe(room)
    await receiver.subscribe(room)
    await sender.expect("presence")  # bob joined
    client_id = str(uuid.uuid4())

    message = await sender.say(room, "  hello, bob  ", client_id)

    assert message == {
        "id": message["id"],
        "room": room.pk,
        "author": {"id": alice.pk, "username": "alice"},
        "body": "hello, bob",
        "created_at": message["created_at"],
        "client_id": client_id,
        "seq": 1,
        "edited_at": None,
        "deleted": False,
        "reactions": [],
        "reply_to": None,
        "mentions": [],
    }
    assert message["created_at"].endswith("Z")
    assert await receiver.expect("message") == {
        "type": "message",
        "room": room.pk,
        "seq": 1,
        "message": message,
    }
    # The sender's own subscribed socket gets the frame too; clients dedupe by seq.
    assert (await sender.expect("message"))["message"] == message
    await outsider.silent()
    await receiver.silent()


async def test_same_client_id_twice_stores_once(open_socket, make_room, alice, bob):
    room = await database_sync_to_async(make_room)(alice, bob)
    sender, receiver = await open_socket(alice), await open_socket(bob)
    await receiver.subscribe(room)
    client_id = str(uuid.uuid4())

    first = await sender.say(room, "once", client_id)
    again = await sender.say(room, "once, retried", client_id)

    assert again == first
    assert await stored_ids(room) == [first["id"]]
    assert (await receiver.messages(1)) == [first]
    await receiver.silent()


@pytest.mark.parametrize(
    ("frame", "where"),
    [
        ({"body": ""}, "body"),
        ({"body": " \n\t "}, "body"),
        ({"body": "x" * 4001}, "body"),
        ({"client_id": "not-a-uuid"}, "client_id"),
        ({"client_id": None}, "client_id"),
        ({"room": "1"}, "room"),
    ],
)
async def test_invalid_send_is_an_error_and_the_socket_stays_open(
    open_socket, make_room, alice, frame, where
):
    room = await database_sync_to_async(make_room)(alice)
    ws = await open_socket(alice)
    command = {
        "type": "message.send",
        "room": room.pk,
        "body": "hi",
        "client_id": str(uuid.uuid4()),
    }
    await ws.send(**{**command, **frame, "ref": "bad"})
    error = await ws.expect("error")
    assert error["code"] == "invalid_message"
    assert error["ref"] == "bad"
    assert error["detail"].startswith(where)
    await ws.send(type="ping", ref="alive")
    assert await ws.expect("pong") == {"type": "pong", "ref": "alive"}
    assert await stored_ids(room) == []


async def test_the_longest_body_is_4000_characters_after_trimming(open_socket, make_room, alice):
    room = await database_sync_to_async(make_room)(alice)
    ws = await open_socket(alice)
    message = await ws.say(room, " " + "é" * 4000 + " ")
    assert message["body"] == "é" * 4000


async def test_non_member_cannot_send(open_socket, make_room, alice, carol):
    room = await database_sync_to_async(make_room)(alice)
    ws = await open_socket(carol)
    await ws.send(
        type="message.send", room=room.pk, body="let me in", client_id=str(uuid.uuid4()), ref=7
    )
    error = await ws.expect("error")
    assert (error["code"], error["ref"]) == ("forbidden", 7)
    assert await stored_ids(room) == []


async def test_subscribe_since_replays_the_gap_in_order_then_goes_live(
    open_socket, make_room, alice, bob
):
    room = await database_sync_to_async(make_room)(alice, bob)
    ids = [await database_sync_to_async(send_as)(bob, room, f"m{i}") for i in range(6)]
    ws = await open_socket(alice)

    await ws.subscribe(room, since=await database_sync_to_async(seq_of)(ids[1]))
    replayed = await ws.messages(4)
    assert [m["id"] for m in replayed] == ids[2:]
    assert [m["body"] for m in replayed] == ["m2", "m3", "m4", "m5"]
    await ws.silent()

    live = await database_sync_to_async(send_as)(bob, room, "live")
    assert [m["id"] for m in await ws.messages(1)] == [live]


async def test_subscribe_without_since_replays_nothing(open_socket, make_room, alice, bob):
    room = await database_sync_to_async(make_room)(alice, bob)
    await database_sync_to_async(send_as)(bob, room, "old")
    ws = await open_socket(alice)
    await ws.subscribe(room)
    await ws.silent()


async def test_replay_runs_over_several_pages(open_socket, make_room, alice, bob, monkeypatch):
    monkeypatch.setattr(ws_handlers, "_REPLAY_PAGE", 4)
    room = await database_sync_to_async(make_room)(alice, bob)
    ids = [await database_sync_to_async(send_as)(bob, room, f"m{i}") for i in range(13)]
    ws = await open_socket(alice)
    await ws.subscribe(room, since=0)
    assert [m["id"] for m in await ws.messages(13)] == ids
    await ws.silent()


async def test_a_message_committed_in_the_race_window_arrives_once(
    open_socket, make_room, alice, bob, monkeypatch
):
    """Deterministic race: before every replay page is read, another member's message commits
    (after the socket joined the room's group), so it is both replayed and queued live."""
    monkeypatch.setattr(ws_handlers, "_REPLAY_PAGE", 3)
    room = await database_sync_to_async(make_room)(alice, bob)
    before = [await database_sync_to_async(send_as)(bob, room, f"old {i}") for i in range(7)]
    read_page = ws_handlers._change_page
    raced: list[int] = []

    def racing_page(room_id: int, since: int) -> list[tuple[int, str]]:
        if len(raced) < 5:
            raced.append(send_as(bob, room, f"raced {len(raced)}"))
        return read_page(room_id, since)

    monkeypatch.setattr(ws_handlers, "_change_page", racing_page)
    ws = await open_socket(alice)
    await ws.subscribe(room, since=await database_sync_to_async(seq_of)(before[0]))
    frames = await ws.drain()

    assert {f["type"] for f in frames} == {"message"}
    received = [f["message"]["id"] for f in frames]
    assert received == await stored_ids(room, above=before[0])
    assert len(raced) >= 3
    assert set(raced) <= set(received)


async def test_messages_sent_during_the_replay_are_neither_lost_nor_duplicated(
    open_socket, make_room, alice, bob, monkeypatch
):
    """50 messages are sent by another member while alice subscribes with ``since``."""
    monkeypatch.setattr(ws_handlers, "_REPLAY_PAGE", 5)
    room = await database_sync_to_async(make_room)(alice, bob)
    history = [await database_sync_to_async(send_as)(bob, room, f"old {i}") for i in range(40)]
    since = history[9]
    ws = await open_socket(alice)
    started = asyncio.Event()
    since_seq = await database_sync_to_async(seq_of)(since)

    async def post_fifty() -> None:
        for i in range(50):
            await database_sync_to_async(send_as)(bob, room, f"new {i}")
            started.set()
            await asyncio.sleep(0)

    poster = asyncio.ensure_future(post_fifty())
    await started.wait()
    await ws.subscribe(room, since=since_seq)
    received = [m["id"] for m in await ws.messages(30 + 50, timeout=10)]
    await poster
    await ws.silent(0.5)

    expected = await stored_ids(room, above=since)
    assert len(expected) == 80
    assert received == expected


async def test_unsubscribe_stops_the_room(open_socket, make_room, alice, bob):
    room = await database_sync_to_async(make_room)(alice, bob)
    ws = await open_socket(alice)
    await ws.subscribe(room)
    await ws.send(type="unsubscribe", room=room.pk, ref="u")
    assert await ws.expect("ack") == {"type": "ack", "ref": "u", "room": room.pk}
    await database_sync_to_async(send_as)(bob, room, "gone")
    await ws.silent()


async def test_typing_reaches_other_users_at_most_every_two_seconds(
    open_socket, make_room, alice, bob, carol
):
    room = await database_sync_to_async(make_room)(alice, bob)
    tab1, tab2, other = await open_socket(alice), await open_socket(alice), await open_socket(bob)
    await other.subscribe(room)
    await tab1.subscribe(room)
    await other.expect("presence")  # alice joined
    await tab2.subscribe(room)

    await tab1.send(type="typing", room=room.pk)
    assert await other.expect("typing") == {
        "type": "typing",
        "room": room.pk,
        "user": {"id": alice.pk, "username": "alice"},
    }
    await tab1.send(type="typing", room=room.pk)
    await tab2.send(type="typing", room=room.pk)  # same user and room: throttled too
    await other.silent(0.5)
    await tab1.silent(0.05)  # never echoed to the typist, in any tab
    await tab2.silent(0.05)

    await other.send(type="typing", room=room.pk)  # another user is throttled separately
    assert (await tab1.expect("typing"))["user"]["id"] == bob.pk
    assert (await tab2.expect("typing"))["user"]["id"] == bob.pk

    await asyncio.sleep(2.1)
    await tab2.send(type="typing", room=room.pk)
    assert (await other.expect("typing"))["user"]["id"] == alice.pk

    outsider = await open_socket(carol)
    await outsider.send(type="typing", room=room.pk, ref="t")
    assert (await outsider.expect("error"))["code"] == "forbidden"


async def test_room_read_is_stored_moves_only_forward_and_is_broadcast(
    open_socket, make_room, as_user, alice, bob
):
    room = await database_sync_to_async(make_room)(alice, bob)
    other_room = await database_sync_to_async(make_room)(alice, name="other")
    ids = [await database_sync_to_async(send_as)(bob, room, f"m{i}") for i in range(3)]
    foreign = await database_sync_to_async(send_as)(alice, other_room, "elsewhere")
    reader, watcher = await open_socket(alice), await open_socket(bob)
    await watcher.subscribe(room)
    await reader.subscribe(room)
    await watcher.expect("presence")

    await reader.send(type="room.read", room=room.pk, message_id=ids[1], ref="r")
    assert await reader.expect("ack") == {
        "type": "ack",
        "ref": "r",
        "room": room.pk,
        "message_id": ids[1],
    }
    read = {
        "type": "room.read",
        "room": room.pk,
        "user": {"id": alice.pk, "username": "alice"},
        "message_id": ids[1],
    }
    assert await watcher.expect("room.read") == read
    assert await reader.expect("room.read") == read  # every subscriber, the reader's socket too

    await reader.send(type="room.read", room=room.pk, message_id=ids[0], ref="back")
    assert (await reader.expect("ack"))["message_id"] == ids[1]  # kept: only moves forward
    await watcher.silent()

    await reader.send(type="room.read", room=room.pk, message_id=foreign, ref="x")
    assert (await reader.expect("error"))["code"] == "not_found"

    stored = await database_sync_to_async(
        lambda: Membership.objects.get(room=room, user=alice).last_read_message_id
    )()
    assert stored == ids[1]
    rooms = (await database_sync_to_async(lambda: as_user(alice).get("/api/rooms/"))()).json()
    assert {r["id"]: r["unread_count"] for r in rooms} == {room.pk: 1, other_room.pk: 0}


async def test_removed_member_stops_receiving_at_once(open_socket, make_room, as_user, alice, bob):
    room = await database_sync_to_async(make_room)(alice, bob)
    owner, tab1, tab2 = await open_socket(alice), await open_socket(bob), await open_socket(bob)
    await tab1.subscribe(room)
    await tab2.subscribe(room)
    await owner.subscribe(room)
    for tab in (tab1, tab2):
        assert (await tab.expect("presence"))["joined"] == [alice.pk]

    answer = await database_sync_to_async(
        lambda: as_user(alice).delete(f"/api/rooms/{room.pk}/members/{bob.pk}/")
    )()
    assert answer.status_code == 204
    for tab in (tab1, tab2):
        told = await tab.expect("error")
        assert (told["code"], told["room"], told["ref"]) == ("forbidden", room.pk, None)
        assert await tab.expect("room.left") == {"type": "room.left", "room": room.pk}
    assert await owner.expect("member.left") == {
        "type": "member.left",
        "room": room.pk,
        "seq": 1,
        "user": {"id": bob.pk, "username": "bob"},
    }
    await presence.aflush()
    assert await owner.expect("presence") == {
        "type": "presence",
        "room": room.pk,
        "joined": [],
        "left": [bob.pk],
    }

    await owner.say(room, "bob is gone")
    await tab1.silent()
    await tab2.silent()
    await tab1.send(type="subscribe", room=room.pk, ref="again")
    assert (await tab1.expect("error"))["code"] == "forbidden"


async def test_presence_counts_users_not_sockets(open_socket, make_room, alice, bob):
    room = await database_sync_to_async(make_room)(alice, bob)
    watcher = await open_socket(bob)
    assert (await watcher.subscribe(room))["presence"] == [bob.pk]
    tabs = [await open_socket(alice) for _ in range(3)]

    assert (await tabs[0].subscribe(room))["presence"] == [alice.pk, bob.pk]
    assert await watcher.expect("presence") == {
        "type": "presence",
        "room": room.pk,
        "joined": [alice.pk],
        "left": [],
    }
    for tab in tabs[1:]:
        assert (await tab.subscribe(room))["presence"] == [alice.pk, bob.pk]
    await watcher.silent()  # more tabs of an online user change nothing
    await tabs[0].silent(0.05)  # a socket is not told of its own join

    await tabs[0].send(type="unsubscribe", room=room.pk, ref="u")
    await tabs[0].expect("ack")
    await tabs[1].ws.disconnect()
    await watcher.silent()  # one tab is still open
    await tabs[2].ws.disconnect()
    await presence.aflush()
    assert await watcher.expect("presence") == {
        "type": "presence",
        "room": room.pk,
        "joined": [],
        "left": [alice.pk],
    }


async def test_a_socket_that_stops_refreshing_drops_out_of_presence(
    open_socket, make_room, settings, alice, bob
):
    """A process killed without ``disconnect()`` leaves entries nobody refreshes: they expire
    and the refresh loop of a process with subscribers there announces ``left``."""
    settings.HERALD = {**settings.HERALD, "PRESENCE_TTL": 0.6, "PRESENCE_REFRESH": 0.2}
    room = await database_sync_to_async(make_room)(alice, bob)
    watcher = await open_socket(bob)
    await watcher.subscribe(room)
    # alice's socket on a "dead process": an entry written once and never refreshed.
    backend = presence._state().backend
    await backend.join(presence.Entry(room.pk, alice.pk, "dead-connection"), 0.6, 100)
    assert await presence.aonline(room_id=room.pk) == [alice.pk, bob.pk]

    left = await watcher.expect("presence", timeout=3)
    assert left == {"type": "presence", "room": room.pk, "joined": [], "left": [alice.pk]}
    await asyncio.sleep(0.5)  # bob's own entry outlives its TTL: it is refreshed
    assert await presence.aonline(room_id=room.pk) == [bob.pk]


async def test_joins_within_a_window_reach_a_subscriber_as_one_frame(
    open_socket, make_room, make_user, alice
):
    """Filling a room costs each subscriber one frame per window, not one per member."""
    others = [await database_sync_to_async(make_user)(username=f"m{i}") for i in range(5)]
    room = await database_sync_to_async(make_room)(alice, *others)
    watcher = await open_socket(alice)
    await watcher.subscribe(room)
    sockets = [await open_socket(user) for user in others]
    for socket in sockets:  # all within one window: no flush in between
        await socket.send(type="subscribe", room=room.pk, ref="s")
        await socket.expect("ack")
        await socket.expect("presence")
    diff = await watcher.expect("presence", timeout=2)  # the window's flush, on its own
    assert diff == {
        "type": "presence",
        "room": room.pk,
        "joined": sorted(u.pk for u in others),
        "left": [],
    }
    await watcher.silent(0.4)


async def test_a_large_room_sends_presence_diffs_only_to_watchers(
    open_socket, make_room, settings, alice, bob, carol
):
    settings.HERALD = {**settings.HERALD, "PRESENCE_FULL_LIMIT": 2, "PRESENCE_PAGE": 1}
    room = await database_sync_to_async(make_room)(alice, bob, carol)  # 3 members: large
    lurker, watcher = await open_socket(alice), await open_socket(bob)
    await lurker.subscribe(room)
    ack = await watcher.subscribe(room)
    assert ack["online_count"] == 2
    assert len(ack["presence"]) == 1  # a page, not everyone
    await lurker.silent(0.3)  # no diffs without presence.watch

    await watcher.send(type="presence.watch", room=room.pk, ref="w")
    watching = await watcher.expect("ack")
    assert (watching["online"], watching["online_count"]) == (sorted([alice.pk, bob.pk]), 2)
    newcomer = await open_socket(carol)
    await newcomer.subscribe(room)
    assert await watcher.expect("presence") == {
        "type": "presence",
        "room": room.pk,
        "joined": [carol.pk],
        "left": [],
    }
    await lurker.silent(0.3)

    await newcomer.send(type="presence.watch", room=room.pk + 1000, ref="x")
    assert (await newcomer.expect("error"))["code"] == "forbidden"
