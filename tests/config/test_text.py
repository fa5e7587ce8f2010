"""No control characters in stored text (``realtime.text``; docs/protocol.md, "Errors and
limits"): over the socket an ``error invalid_message`` and the socket stays open; over REST a
400 ``invalid``; nothing stored either way. Run on PostgreSQL too
(``DATABASE_URL=postgres://…``), where a NUL that reached the database was a 500 or a dead
socket."""

import json
import sys
import unicodedata
import uuid

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, Room
from notifications.models import Notification
from realtime.text import check_text

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED = {"\t", "\n", "\r"}
REFUSED = ["\x00", "\x01", "\x07", "\x0b", "\x1b", "\x7f", "\x85", "\x9f"]


def _refusal(text: str) -> str | None:
    try:
        check_text(text)
    except ValueError as error:
        return str(error)
    return None


def test_the_rule_is_unicode_category_cc_without_tab_and_line_breaks():
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        refused = unicodedata.category(char) == "Cc" and char not in ALLOWED
        problem = _refusal(f"a{char}b")
        assert (problem is not None) is refused, repr(char)
        assert problem is None or f"U+{code:04X}" in problem


@pytest.mark.parametrize("char", REFUSED)
async def test_a_message_with_a_control_character_is_an_error_and_the_socket_lives(
    char, alice, room, open_socket
):
    socket = await open_socket(alice)
    await socket.send(
        type="message.send",
        room=room.pk,
        body=f"hello{char}world",
        client_id=str(uuid.uuid4()),
        ref="bad",
    )
    error = await socket.expect("error")
    assert (error["code"], error["ref"]) == ("invalid_message", "bad"), error
    assert "control characters" in error["detail"]
    await socket.send(type="ping", ref="p")
    assert await socket.expect("pong") == {"type": "pong", "ref": "p"}
    # Still a working socket: a clean message goes through, and only it is stored.
    await socket.subscribe(room)
    stored = await socket.say(room, "line one\n\tline two\r\n")
    assert stored["body"] == "line one\n\tline two"
    assert await database_sync_to_async(list)(Message.objects.values_list("body", flat=True)) == [
        stored["body"]
    ]


def test_rest_refuses_control_characters_in_every_stored_text(alice, sender, room, as_user):
    member, service = as_user(alice), as_user(sender)
    bad = [
        (member, f"/api/rooms/{room.pk}/messages/", {"body": "a\x00b"}),
        (member, f"/api/rooms/{room.pk}/messages/", {"body": "ring\x07"}),
        (member, "/api/rooms/", {"name": "ops\x1b[31m"}),
        (member, "/api/rooms/", {"name": "a\x00"}),
        (service, "/api/notifications/", {"recipients": [alice.pk], "title": "t\x00"}),
        (service, "/api/notifications/", {"recipients": [alice.pk], "title": "t", "body": "\x08"}),
    ]
    for client, url, body in bad:
        answer = client.post(url, body, format="json")
        assert answer.status_code == 400, (url, body, answer.content)
        assert answer.json()["code"] == "invalid", answer.json()
        assert "control characters" in json.dumps(answer.json()["errors"])
    assert not Message.objects.exists()
    assert list(Room.objects.values_list("name", flat=True)) == ["general"]
    assert not Notification.objects.exists()

    ok = service.post(
        "/api/notifications/",
        {"recipients": [alice.pk], "title": "deploy\tdone", "body": "line\r\nline"},
        format="json",
    )
    assert ok.status_code == 201, ok.content
    assert member.post("/api/rooms/", {"name": "ops"}, format="json").status_code == 201
