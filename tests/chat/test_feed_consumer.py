"""The room feed over ``/ws/`` through the full ASGI app: edit, delete, reactions, replies and
mentions as commands; their frames live and replayed by ``subscribe since`` (rendered from the
current state, in seq order, no duplicates); the user's room list frames."""

import asyncio
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import services, ws_handlers
from chat.models import Room
from tests.support.data import send_as

pytestmark = pytest.mark.django_db(transaction=True)


async def command(ws: Any, **frame: Any) -> dict[str, Any]:
    """Send a command with ``ref`` "c"; its ``ack`` or ``error``."""
    await ws.send(**frame, ref="c")
    answer = await ws.recv()
    assert answer["ref"] == "c", answer
    return answer


async def test_edit_delete_and_reactions_reach_every_subscriber_with_the_next_seq(
    open_socket, make_room, alice, bob
):
    room = await database_sync_to_async(make_room)(alice, bob)
    author, watcher = await open_socket(bob), await open_socket(alice)
    await watcher.subscribe(room)
    message = await author.say(room, "first")
    assert (await watcher.expect("message"))["seq"] == 1

    edited = await command(
        author, type="message.edit", room=room.pk, message=message["id"], body=" second "
    )
    assert edited["type"] == "ack"
    assert (edited["message"]["body"], edited["message"]["seq"]) == ("second", 1)
    assert await watcher.expect("message.updated") == {
        "type": "message.updated",
        "room": room.pk,
        "seq": 2,
        "message": edited["message"],
    }
    reacted = await command(
        watcher, type="reaction.add", room=room.pk, message=message["id"], emoji="👍🏽"
    )
    assert reacted == {
        "type": "ack",
        "ref": "c",
        "message": message["id"],
        "reactions": [{"emoji": "👍🏽", "count": 1, "users": [alice.pk]}],
    }
    assert await watcher.expect("reaction") == {
        "type": "reaction",
        "room": room.pk,
        "seq": 3,
        "message": message["id"],
        "emoji": "👍🏽",
        "user": {"id": alice.pk, "username": "alice"},
        "action": "added",
        "reactions": reacted["reactions"],
    }
    removed = await command(
        watcher, type="reaction.remove", room=room.pk, message=message["id"], emoji="👍🏽"
    )
    assert removed["reactions"] == []
    assert (await watcher.expect("reaction"))["action"] == "removed"
    deleted = await command(author, type="message.delete", room=room.pk, message=message["id"])
    assert (deleted["message"]["deleted"], deleted["message"]["body"]) == (True, "")
    tombstone = await watcher.expect("message.deleted")
    assert (tombstone["seq"], tombstone["message"]) == (5, deleted["message"])
    await watcher.silent()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "message.edit", "body": "x"}, "forbidden"),  # another's message
        ({"type": "message.edit", "body": "  "}, "invalid_message"),
        ({"type": "message.edit", "body": "x", "message": 10**9}, "not_found"),
        ({"type": "message.delete"}, "forbidden"),  # another's, not an owner
        ({"type": "reaction.add", "emoji": "not one"}, "invalid_message"),
        ({"type": "reaction.add", "emoji": "👍👍"}, "invalid_message"),
        ({"type": "reaction.remove", "emoji": ""}, "invalid_message"),
        ({"type": "reaction.add", "emoji": "👍", "message": 10**9}, "not_found"),
        ({"type": "message.send", "body": "x", "reply_to": 10**9}, "invalid_message"),
        ({"type": "message.send", "body": "x", "reply_to": "1"}, "invalid_message"),
    ],
)
async def test_refused_commands_answer_an_error_and_the_socket_stays_open(
    open_socket, make_room, alice, bob, carol, frame, code
):
    room = await database_sync_to_async(make_room)(alice, bob, carol)
    other_message = await database_sync_to_async(send_as)(alice, room, "alice's")
    ws = await open_socket(bob)
    full = {"room": room.pk, "message": other_message, "client_id": str(uuid.uuid4()), **frame}
    answer = await command(ws, **full)
    assert (answer["type"], answer["code"]) == ("error", code), answer
    await ws.send(type="ping", ref="alive")
    assert await ws.expect("pong") == {"type": "pong", "ref": "alive"}
    assert await database_sync_to_async(lambda: Room.objects.get(pk=room.pk).seq)() == 1


@pytest.mark.parametrize("kind", ["message.edit", "message.delete", "reaction.add"])
async def test_non_members_get_what_a_send_to_a_missing_room_gets(
    open_socket, make_room, alice, carol, kind
):
    room = await database_sync_to_async(make_room)(alice)
    message = await database_sync_to_async(send_as)(alice, room, "members only")
    ws = await open_socket(carol)
    fields = {"body": "x", "emoji": "👍", "message": message}
    refused = await command(ws, type=kind, room=room.pk, **fields)
    missing = await command(ws, type=kind, room=room.pk + 1000, **fields)
    sent = await command(
        ws, type="message.send", room=room.pk + 1000, body="x", client_id=str(uuid.uuid4())
    )
    assert refused == missing == sent
    assert refused["code"] == "forbidden"


async def test_reply_and_mention_over_the_socket(open_socket, make_room, alice, bob):
    room = await database_sync_to_async(make_room)(alice, bob, name="general")
    original = await database_sync_to_async(send_as)(bob, room, "question")
    bobs_tab, ws = await open_socket(bob), await open_socket(alice)
    await ws.send(
        type="message.send",
        room=room.pk,
        body="answer @bob",
        client_id=str(uuid.uuid4()),
        reply_to=original,
        ref="r",
    )
    message = (await ws.expect("ack"))["message"]
    assert message["reply_to"] == {
        "id": original,
        "author": {"id": bob.pk, "username": "bob"},
        "excerpt": "question",
        "deleted": False,
    }
    assert message["mentions"] == [{"id": bob.pk, "username": "bob"}]
    note = await bobs_tab.expect("notification")
    assert note["notification"]["title"] == "alice mentioned you in general"
    assert note["notification"]["data"] == {
        "kind": "mention",
        "room": room.pk,
        "message": message["id"],
    }


async def test_replay_renders_every_change_from_the_current_state_in_seq_order(
    open_socket, make_room, alice, bob, carol, monkeypatch
):
    monkeypatch.setattr(ws_handlers, "_REPLAY_PAGE", 2)  # pages cut between the two kinds

    def history() -> list[int]:
        kept = send_as(bob, room, "kept")
        gone = send_as(bob, room, "gone")
        services.message_edit(room_id=room.pk, message_id=kept, user_id=bob.pk, body="kept, edited")
        services.reaction_set(
            room_id=room.pk, message_id=kept, user_id=alice.pk, emoji="🎉", add=True
        )
        services.message_delete(room_id=room.pk, message_id=gone, user_id=bob.pk)
        services.room_member_add(room_id=room.pk, actor_id=alice.pk, user_id=carol.pk)
        services.room_rename(room_id=room.pk, actor_id=alice.pk, name="renamed")
        return [kept, gone]

    room = await database_sync_to_async(make_room)(alice, bob)
    kept, gone = await database_sync_to_async(history)()
    ws = await open_socket(alice)
    ack = await ws.subscribe(room, since=0)
    assert ack["seq"] == 7
    frames = await ws.drain()
    assert [(f["type"], f["seq"]) for f in frames] == [
        ("message", 1),
        ("message", 2),
        ("message.updated", 3),
        ("reaction", 4),
        ("message.deleted", 5),
        ("member.joined", 6),
        ("room.renamed", 7),
    ]
    assert frames[0]["message"]["body"] == "kept, edited"  # the current body
    assert frames[0]["message"]["reactions"] == [{"emoji": "🎉", "count": 1, "users": [alice.pk]}]
    assert (frames[1]["message"]["body"], frames[1]["message"]["deleted"]) == ("", True)
    assert frames[5]["user"] == {"id": carol.pk, "username": "carol"}
    assert frames[6]["name"] == "renamed"

    await ws.send(type="unsubscribe", room=room.pk, ref="u")
    await ws.expect("ack")
    await ws.subscribe(room, since=5)
    assert [f["seq"] for f in await ws.drain()] == [6, 7]


async def test_changes_committed_during_a_replay_arrive_once_in_order(
    open_socket, make_room, alice, bob, monkeypatch
):
    """Edits and reactions (not only messages) commit while the replay is read: each seq
    arrives exactly once."""
    monkeypatch.setattr(ws_handlers, "_REPLAY_PAGE", 3)
    room = await database_sync_to_async(make_room)(alice, bob)
    target = await database_sync_to_async(send_as)(bob, room, "target")
    for i in range(8):
        await database_sync_to_async(send_as)(bob, room, f"old {i}")
    read_page = ws_handlers._change_page
    raced: list[int] = []

    def racing_page(room_id: int, since: int) -> list[tuple[int, str]]:
        if len(raced) < 4:
            raced.append(len(raced))
            services.message_edit(
                room_id=room.pk, message_id=target, user_id=bob.pk, body=f"v{len(raced)}"
            )
        return read_page(room_id, since)

    monkeypatch.setattr(ws_handlers, "_change_page", racing_page)
    ws = await open_socket(alice)
    await ws.subscribe(room, since=2)
    seqs = [f["seq"] for f in await ws.drain()]
    assert seqs == list(range(3, 9 + 4 + 1))


async def test_room_list_frames_reach_every_tab_of_the_user(
    open_socket, make_room, as_user, alice, bob, carol
):
    room = await database_sync_to_async(make_room)(alice, bob, name="team")
    await database_sync_to_async(send_as)(bob, room, "before carol")
    tabs = [await open_socket(carol), await open_socket(carol)]
    owner = await database_sync_to_async(as_user)(alice)
    added = await database_sync_to_async(
        lambda: owner.post(f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk}, format="json")
    )()
    assert added.status_code == 201
    shown = await database_sync_to_async(
        lambda: as_user(carol).get(f"/api/rooms/{room.pk}/").json()
    )()
    assert (shown["unread_count"], shown["last_message"]["body"]) == (1, "before carol")
    for tab in tabs:
        joined = await tab.expect("room.joined")
        assert joined["room"] == shown  # the room exactly as carol's GET shows it
    await tabs[0].subscribe(room)
    renamed = await database_sync_to_async(
        lambda: owner.patch(f"/api/rooms/{room.pk}/", {"name": "crew"}, format="json")
    )()
    assert renamed.status_code == 200
    assert (await tabs[0].expect("room.renamed"))["name"] == "crew"
    assert (await tabs[0].expect("room.updated"))["room"]["name"] == "crew"
    assert (await tabs[1].expect("room.updated"))["room"]["name"] == "crew"
    left = await database_sync_to_async(
        lambda: as_user(carol).delete(f"/api/rooms/{room.pk}/members/{carol.pk}/")
    )()
    assert left.status_code == 204
    assert (await tabs[0].expect("error"))["code"] == "forbidden"
    for tab in tabs:
        assert await tab.expect("room.left") == {"type": "room.left", "room": room.pk}
    await asyncio.gather(*(tab.silent() for tab in tabs))


async def test_a_since_beyond_the_feed_does_not_hold_back_live_changes(
    open_socket, make_room, alice, bob
):
    room = await database_sync_to_async(make_room)(alice, bob)
    ws = await open_socket(alice)
    ack = await ws.subscribe(room, since=10**6)
    assert ack["seq"] == 0
    await ws.silent()
    await database_sync_to_async(send_as)(bob, room, "live")
    assert (await ws.expect("message"))["seq"] == 1
