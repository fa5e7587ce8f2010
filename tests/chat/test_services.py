"""Chat services: sync, asserting what is published after commit."""

import json
import uuid

import pytest
from django.contrib.auth import get_user_model

from chat import services
from chat.events import room_group
from chat.models import Membership, Message, Room, RoomChange
from realtime.groups import user_group

pytestmark = pytest.mark.django_db


def frames(events: list[dict]) -> list[dict]:
    return [json.loads(event["text"]) for event in events]


class TestMessageSend:
    def test_stored_then_published_to_the_room_after_commit(
        self, make_room, listen, alice, bob, django_capture_on_commit_callbacks
    ):
        room = make_room(alice, bob)
        subscribers = listen(room_group(room.pk))
        with django_capture_on_commit_callbacks() as callbacks:
            message = services.room_message_send(room_id=room.pk, author_id=bob.pk, body=" hi ")
            assert subscribers.events() == []  # nothing before commit
        for callback in callbacks:
            callback()
        [event] = subscribers.events()
        assert (event["type"], event["room"], event["seq"]) == ("room.message", room.pk, 1)
        assert json.loads(event["text"]) == {
            "type": "message",
            "room": room.pk,
            "seq": 1,
            "message": {
                "id": message.pk,
                "room": room.pk,
                "author": {"id": bob.pk, "username": "bob"},
                "body": "hi",
                "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
                "client_id": str(message.client_id),
                "seq": 1,
                "edited_at": None,
                "deleted": False,
                "reactions": [],
                "reply_to": None,
                "mentions": [],
            },
        }

    def test_same_client_id_stores_and_publishes_once(
        self, make_room, listen, alice, django_capture_on_commit_callbacks
    ):
        room = make_room(alice)
        subscribers = listen(room_group(room.pk))
        client_id = uuid.uuid4()
        with django_capture_on_commit_callbacks(execute=True):
            first = services.room_message_send(
                room_id=room.pk, author_id=alice.pk, body="a", client_id=client_id
            )
            again = services.room_message_send(
                room_id=room.pk, author_id=alice.pk, body="b", client_id=client_id
            )
        assert again.pk == first.pk
        assert again.body == "a"
        assert Message.objects.count() == 1
        assert len(subscribers.events()) == 1

    @pytest.mark.parametrize("room_id", [0, 10**6, 2**63 - 1, 2**64])
    def test_non_member_or_missing_room(self, make_room, alice, carol, room_id):
        make_room(alice)
        with pytest.raises(services.RoomNotFound):
            services.room_message_send(room_id=room_id, author_id=alice.pk, body="hi")

    def test_non_member(self, make_room, alice, carol):
        room = make_room(alice)
        with pytest.raises(services.RoomNotFound):
            services.room_message_send(room_id=room.pk, author_id=carol.pk, body="hi")
        assert Message.objects.count() == 0

    @pytest.mark.parametrize("body", ["", "  \n ", "x" * 4001])
    def test_body_rules(self, make_room, alice, body):
        room = make_room(alice)
        with pytest.raises(services.ChatError) as refused:
            services.room_message_send(room_id=room.pk, author_id=alice.pk, body=body)
        assert refused.value.code == "invalid_message"


class TestReadPosition:
    def test_moves_forward_only_and_publishes_each_move(
        self, make_room, listen, alice, bob, django_capture_on_commit_callbacks
    ):
        room = make_room(alice, bob)
        ids = [
            services.room_message_send(room_id=room.pk, author_id=bob.pk, body=str(i)).pk
            for i in range(3)
        ]
        subscribers = listen(room_group(room.pk))
        with django_capture_on_commit_callbacks(execute=True):
            assert (
                services.room_read(room_id=room.pk, user_id=alice.pk, message_id=ids[1]) == ids[1]
            )
            assert (
                services.room_read(room_id=room.pk, user_id=alice.pk, message_id=ids[0]) == ids[1]
            )
            assert (
                services.room_read(room_id=room.pk, user_id=alice.pk, message_id=ids[1]) == ids[1]
            )
        assert frames(subscribers.events()) == [
            {
                "type": "room.read",
                "room": room.pk,
                "user": {"id": alice.pk, "username": "alice"},
                "message_id": ids[1],
            }
        ]
        assert Membership.objects.get(room=room, user=alice).last_read_message_id == ids[1]

    def test_message_of_another_room(self, make_room, alice):
        room, other = make_room(alice), make_room(alice, name="other")
        elsewhere = services.room_message_send(room_id=other.pk, author_id=alice.pk, body="x")
        with pytest.raises(services.ChatNotFound):
            services.room_read(room_id=room.pk, user_id=alice.pk, message_id=elsewhere.pk)


class TestMembership:
    def test_removal_tells_the_removed_users_sockets(
        self, make_room, listen, alice, bob, django_capture_on_commit_callbacks
    ):
        room = make_room(alice, bob)
        bobs_sockets = listen(user_group(bob.pk))
        with django_capture_on_commit_callbacks(execute=True):
            services.room_member_remove(room_id=room.pk, actor_id=alice.pk, user_id=bob.pk)
        assert bobs_sockets.events() == [
            {
                "type": "room.removed",
                "room": room.pk,
                "text": f'{{"type":"room.left","room":{room.pk}}}',
            }
        ]

    def test_admin_deletions_tell_the_sockets_too(
        self, make_room, listen, alice, bob, carol, django_capture_on_commit_callbacks
    ):
        room = make_room(alice, bob, carol)
        bobs, carols = listen(user_group(bob.pk)), listen(user_group(carol.pk))
        with django_capture_on_commit_callbacks(execute=True):
            services.memberships_delete(memberships=[room.memberships.get(user=bob)])
        left = f'{{"type":"room.left","room":{room.pk}}}'
        assert bobs.events() == [{"type": "room.removed", "room": room.pk, "text": left}]
        room_id = room.pk
        with django_capture_on_commit_callbacks(execute=True):
            services.rooms_delete(rooms=[room])
        assert carols.events() == [{"type": "room.removed", "room": room_id, "text": left}]
        assert not Room.objects.exists()

    def test_direct_room_with_oneself_is_refused(self, alice):
        with pytest.raises(services.ChatError):
            services.room_direct_get_or_create(user_id=alice.pk, other_id=alice.pk)

    def test_direct_room_is_found_from_either_side(self, alice, bob):
        room, created = services.room_direct_get_or_create(user_id=alice.pk, other_id=bob.pk)
        same, again = services.room_direct_get_or_create(user_id=bob.pk, other_id=alice.pk)
        assert (created, again, same.pk) == (True, False, room.pk)


def test_admin_pages(client, make_room, alice, bob):
    admin = get_user_model().objects.create_superuser("root", password="pw-root-Long-1")
    client.force_login(admin)
    room = make_room(alice, bob)
    services.room_message_send(room_id=room.pk, author_id=bob.pk, body="hello")
    for path in (
        "/admin/chat/room/",
        "/admin/chat/room/?q=bob",
        f"/admin/chat/room/{room.pk}/change/",
        "/admin/chat/message/",
        "/admin/chat/message/?q=hello",
    ):
        assert client.get(path).status_code == 200, path


def test_the_hand_built_message_payload_is_the_documented_shape(make_room, alice, bob):
    """``message_payload`` skips DRF on the hot path; it gives the fields the serializer
    documents (OpenAPI), and the send path's payload (built without a query) is the stored
    message's."""
    from chat.serializers import MessageSerializer, message_payload

    room = make_room(alice, bob)
    sent = services.room_message_send(room_id=room.pk, author_id=bob.pk, body="héllo ✓")
    message = Message.objects.select_related("author").get(pk=sent.pk)
    assert list(message_payload(message)) == MessageSerializer.Meta.fields
    assert json.loads(sent.payload_text) == message_payload(message)


def test_a_socket_send_costs_two_statements(make_room, alice, bob):
    """Take the room's next seq (locking the row, membership checked in the same statement),
    insert: nothing else, the author's name coming from the socket. (Savepoints are the
    test's own transaction.)"""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    room = make_room(alice, bob)
    # The first send of a process may read whether any webhook endpoint exists (cached for
    # the whole deployment afterwards: notifications.webhooks); measure the steady state.
    services.room_message_send(room_id=room.pk, author_id=bob.pk, body="warm")
    with CaptureQueriesContext(connection) as queries:
        services.room_message_send(
            room_id=room.pk, author_id=bob.pk, body="fast", author_username="bob"
        )
    statements = [q["sql"].split()[0] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert statements == ["UPDATE", "INSERT"]


def test_admin_edits_are_changes_of_the_feed(
    client, make_room, make_user, alice, bob, django_capture_on_commit_callbacks
):
    """Renaming a room, adding a member and deleting a message in the admin number each change
    like the API does, so a resuming client learns of them; a deleted message stays a
    tombstone."""
    from chat import selectors

    admin = get_user_model().objects.create_superuser("root", password="pw-root-Long-1")
    client.force_login(admin)
    carol = make_user(username="carol")
    room = make_room(alice, bob, name="old")
    message = services.room_message_send(room_id=room.pk, author_id=bob.pk, body="oops")
    form = {
        "name": "new name",
        "kind": "group",
        "created_by": "",
        "memberships-TOTAL_FORMS": "3",
        "memberships-INITIAL_FORMS": "2",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, membership in enumerate(room.memberships.order_by("joined_at", "pk")):
        form |= {
            f"memberships-{i}-id": str(membership.pk),
            f"memberships-{i}-room": str(room.pk),
            f"memberships-{i}-user": str(membership.user_id),
            f"memberships-{i}-role": membership.role,
            f"memberships-{i}-last_read_message": "",
        }
    form |= {
        "memberships-2-room": str(room.pk),
        "memberships-2-user": str(carol.pk),
        "memberships-2-role": "member",
        "memberships-2-last_read_message": "",
    }
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/admin/chat/room/{room.pk}/change/", form)
    assert answer.status_code == 302, answer.content[:2000]
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/admin/chat/message/{message.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    feed = selectors.room_changes_since(room_id=room.pk, since=0, limit=100)
    assert [
        (seq, "message" if isinstance(change, Message) else change.kind) for seq, change in feed
    ] == [
        (1, "message"),
        (2, RoomChange.Kind.ROOM_RENAMED),
        (3, RoomChange.Kind.MEMBER_JOINED),
        (4, RoomChange.Kind.MESSAGE_DELETED),
    ]
    tombstone = Message.objects.get(pk=message.pk)
    assert tombstone.deleted
    assert tombstone.body == ""
    assert Room.objects.get(pk=room.pk).name == "new name"
    assert room.memberships.filter(user=carol).exists()
