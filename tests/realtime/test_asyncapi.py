"""The AsyncAPI document: served, well-formed, and true of every frame the server sends.

A real session through the full ASGI app makes the server send every kind of frame it can; each
one must validate against the document's schema for its ``type``, and every server message the
document lists must have been seen (so a new frame needs a line here, and a changed frame a
changed model).
"""

import json
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from jsonschema import Draft202012Validator
from rest_framework_simplejwt.tokens import AccessToken

from chat import presence
from chat import services as chat_services
from config.asgi import application
from notifications import services as notification_services
from realtime.asyncapi import document

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_document_is_public_and_every_reference_resolves(client):
    answer = client.get("/api/asyncapi.json")
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["socket"]["address"] == "/ws/"
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    for operation in doc["operations"].values():
        assert operation["channel"] == {"$ref": "#/channels/socket"}
        for ref in operation["messages"]:
            key = ref["$ref"].removeprefix("#/channels/socket/messages/")
            assert key in doc["channels"]["socket"]["messages"]
    for key, message in messages.items():
        assert key.split(".", 1)[1] == message["name"]
        assert message["payload"]["$ref"].removeprefix("#/components/schemas/") in schemas
    assert doc["x-close-codes"]["4401"] == "unauthenticated"
    assert "invalid_json" in doc["x-error-codes"]


def _validator(doc: dict[str, Any], kind: str) -> Draft202012Validator:
    payload = doc["components"]["messages"][f"server.{kind}"]["payload"]
    return Draft202012Validator({**doc, **payload})


class Recorder:
    """A socket that keeps every frame it receives."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm, self.frames = comm, []

    async def next(self, kind: str) -> dict[str, Any]:
        while True:
            frame = json.loads(await self.comm.receive_from(timeout=5))
            self.frames.append(frame)
            if frame["type"] == kind:
                return frame

    async def send(self, **frame: Any) -> None:
        await self.comm.send_json_to(frame)


async def _open(session: Any, lifetime: float = 300) -> Recorder:
    token = AccessToken.for_user(session.user)
    token["sid"] = str(session.pk)
    token.set_exp(lifetime=timedelta(seconds=lifetime))
    comm = WebsocketCommunicator(application, f"/ws/?token={token}")
    connected, _ = await comm.connect(timeout=5)
    assert connected
    socket = Recorder(comm)
    await socket.next("hello")
    return socket


async def test_every_frame_the_server_sends_matches_the_document(alice, bob, login, make_user):
    doc = document()
    alice_session, _ = await database_sync_to_async(login)(alice)
    bob_session, _ = await database_sync_to_async(login)(bob)
    room = await database_sync_to_async(chat_services.room_create)(
        creator_id=alice.pk, name="general", member_ids=[bob.pk]
    )
    a = await _open(alice_session, lifetime=4)  # auth.expiring after half of it
    b = await _open(bob_session)

    await a.send(type="ping", ref=1)
    await a.next("pong")
    await a.send(type="subscribe", room=room.pk, ref="s")
    await a.next("presence")
    await b.send(type="subscribe", room=room.pk, since=0, ref="s")
    await b.next("presence")
    await presence.aflush()  # the window's joins go out now, not a window later
    await a.next("presence")  # bob joined
    await b.send(
        type="message.send",
        room=room.pk,
        body="hi",
        client_id="0b7e7dbe-4f8c-4a4b-a1d0-2f1c2c7b8e11",
        ref="m",
    )
    await a.next("message")
    message_id = (await b.next("ack"))["message"]["id"]
    await b.send(type="typing", room=room.pk)
    await a.next("typing")
    await b.send(type="room.read", room=room.pk, message_id=message_id, ref="r")
    await a.next("room.read")
    await b.send(
        type="message.send",
        room=room.pk,
        body="re @alice",
        client_id="1b7e7dbe-4f8c-4a4b-a1d0-2f1c2c7b8e11",
        reply_to=message_id,
        ref="m2",
    )
    reply = await a.next("message")
    assert reply["message"]["reply_to"]["id"] == message_id
    assert reply["message"]["mentions"] == [{"id": alice.pk, "username": "alice"}]
    await b.send(type="message.edit", room=room.pk, message=message_id, body="edited", ref="e")
    await a.next("message.updated")
    await a.send(type="reaction.add", room=room.pk, message=message_id, emoji="👍", ref="x")
    await a.next("reaction")
    await b.send(type="message.delete", room=room.pk, message=message_id, ref="d")
    await a.next("message.deleted")
    carol = await database_sync_to_async(make_user)(username="carol")
    await database_sync_to_async(chat_services.room_member_add)(
        room_id=room.pk, actor_id=alice.pk, user_id=carol.pk
    )
    await a.next("member.joined")
    await database_sync_to_async(chat_services.room_rename)(
        room_id=room.pk, actor_id=alice.pk, name="renamed"
    )
    await a.next("room.renamed")
    await a.next("room.updated")
    await database_sync_to_async(chat_services.room_direct_get_or_create)(
        user_id=alice.pk, other_id=bob.pk
    )
    await a.next("room.joined")
    await database_sync_to_async(notification_services.notification_create)(
        recipient_ids=[alice.pk], title="t", body="b", data={"k": [1]}
    )
    created = await a.next("notification")
    await a.send(type="notification.read", ids=[created["notification"]["id"]], ref="n")
    await a.next("notification.read")
    await a.send(type="resume", notifications_since=0, ref="r")
    await a.next("ack")
    await a.send(type="nonsense")
    await a.next("error")
    await database_sync_to_async(chat_services.room_member_remove)(
        room_id=room.pk, actor_id=alice.pk, user_id=bob.pk
    )
    removed = await b.next("error")
    assert removed["room"] == room.pk
    assert (await b.next("room.left"))["room"] == room.pk
    await a.next("member.left")
    await presence.aflush()
    await a.next("presence")  # bob left
    await a.next("auth.expiring")

    seen: set[str] = set()
    for frame in a.frames + b.frames:
        errors = list(_validator(doc, frame["type"]).iter_errors(frame))
        assert not errors, (frame, [e.message for e in errors])
        seen.add(frame["type"])
    messages = doc["components"]["messages"]
    documented = {key.removeprefix("server.") for key in messages if key.startswith("server.")}
    assert seen == documented
    await a.comm.disconnect()
    await b.comm.disconnect()


async def test_a_frame_that_breaks_its_schema_is_caught():
    """The check above can fail: a ``message`` frame without its author is refused."""
    frame = {
        "type": "message",
        "room": 1,
        "message": {"id": 1, "room": 1, "body": "x", "created_at": "2025-01-01T00:00:00Z"},
    }
    assert list(_validator(document(), "message").iter_errors(frame))
