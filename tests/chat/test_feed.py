"""The room feed's services and REST routes: gap-free ``seq`` over every kind of change, edit,
delete (tombstone), reactions, replies, mentions, rename, moderators, room list events."""

import json
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import selectors, services
from chat.events import room_group
from chat.models import Message, Reaction, Room, RoomChange
from notifications.models import Notification
from realtime.groups import user_group

pytestmark = pytest.mark.django_db


def send(user: Any, room: Room, body: str, **extra: Any) -> Message:
    return services.room_message_send(room_id=room.pk, author_id=user.pk, body=body, **extra)


def moderator(make_user: Any, name: str = "mod") -> Any:
    user = make_user(username=name)
    user.groups.add(Group.objects.get(name="Moderators"))
    return user


def replay_kinds(room: Room, since: int = 0) -> list[tuple[int, str]]:
    page = selectors.room_changes_since(room_id=room.pk, since=since, limit=1000)
    return [(seq, "message" if isinstance(item, Message) else item.kind) for seq, item in page]


class TestSeq:
    def test_every_change_takes_the_next_seq_and_the_feed_is_gap_free(
        self, make_room, make_user, alice, bob, carol, django_capture_on_commit_callbacks
    ):
        room = make_room(alice, bob)
        with django_capture_on_commit_callbacks(execute=True):
            first = send(bob, room, "one")
            services.message_edit(room_id=room.pk, message_id=first.pk, user_id=bob.pk, body="1")
            services.reaction_set(
                room_id=room.pk, message_id=first.pk, user_id=alice.pk, emoji="👍", add=True
            )
            # the same reaction again, and removing one never given: no change, no seq
            services.reaction_set(
                room_id=room.pk, message_id=first.pk, user_id=alice.pk, emoji="👍", add=True
            )
            services.reaction_set(
                room_id=room.pk, message_id=first.pk, user_id=bob.pk, emoji="🎉", add=False
            )
            services.room_member_add(room_id=room.pk, actor_id=alice.pk, user_id=carol.pk)
            services.room_member_add(room_id=room.pk, actor_id=alice.pk, user_id=carol.pk)
            services.room_rename(room_id=room.pk, actor_id=alice.pk, name="renamed")
            services.room_rename(room_id=room.pk, actor_id=alice.pk, name="renamed")
            second = send(carol, room, "two")
            services.message_delete(room_id=room.pk, message_id=first.pk, user_id=bob.pk)
            services.room_member_remove(room_id=room.pk, actor_id=carol.pk, user_id=carol.pk)
            with pytest.raises(services.ChatError):  # refused: rolled back, its seq given back
                services.message_edit(
                    room_id=room.pk, message_id=second.pk, user_id=bob.pk, body="x"
                )
        assert replay_kinds(room) == [
            (1, "message"),
            (2, "message.updated"),
            (3, "reaction"),
            (4, "member.joined"),
            (5, "room.renamed"),
            (6, "message"),
            (7, "message.deleted"),
            (8, "member.left"),
        ]
        room.refresh_from_db()
        assert room.seq == 8
        assert replay_kinds(room, since=5) == [
            (6, "message"),
            (7, "message.deleted"),
            (8, "member.left"),
        ]
        assert selectors.room_get(room_id=room.pk, user_id=alice.pk).seq == 8

    def test_the_feed_is_published_in_seq_order_with_the_seq_beside_the_frame(
        self, make_room, listen, alice, bob, django_capture_on_commit_callbacks
    ):
        room = make_room(alice, bob)
        feed = listen(room_group(room.pk))
        with django_capture_on_commit_callbacks(execute=True):
            message = send(bob, room, "hi")
            services.message_edit(
                room_id=room.pk, message_id=message.pk, user_id=bob.pk, body="hey"
            )
        events = feed.events()
        assert [(e["seq"], json.loads(e["text"])["type"]) for e in events] == [
            (1, "message"),
            (2, "message.updated"),
        ]
        updated = json.loads(events[1]["text"])
        assert (updated["seq"], updated["message"]["body"]) == (2, "hey")
        assert updated["message"]["edited_at"].endswith("Z")

    def test_existing_messages_are_numbered_by_the_data_migration(self, make_room, alice, bob):
        """The migration's SQL, run again over messages stored without a seq."""
        from importlib import import_module

        room, other = make_room(alice, bob), make_room(bob, name="other")
        ids = [send(bob, room, str(i)).pk for i in range(3)] + [send(bob, other, "x").pk]
        Message.objects.update(seq=None)
        Room.objects.update(seq=0)
        migration = import_module("chat.migrations.0003_feed_data")
        migration.number_messages(None, SimpleNamespace(connection=connection))
        assert [Message.objects.get(pk=pk).seq for pk in ids] == [1, 2, 3, 1]
        assert dict(Room.objects.values_list("pk", "seq")) == {room.pk: 3, other.pk: 1}


class TestEditDelete:
    def test_only_the_author_edits_and_an_empty_body_is_invalid(self, make_room, alice, bob, carol):
        room = make_room(alice, bob)
        message = send(bob, room, "mine")
        with pytest.raises(services.ChatForbidden):
            services.message_edit(
                room_id=room.pk, message_id=message.pk, user_id=alice.pk, body="x"
            )
        with pytest.raises(services.ChatError) as empty:
            services.message_edit(room_id=room.pk, message_id=message.pk, user_id=bob.pk, body="  ")
        assert empty.value.code == "invalid_message"
        with pytest.raises(services.RoomNotFound):
            services.message_edit(
                room_id=room.pk, message_id=message.pk, user_id=carol.pk, body="x"
            )
        with pytest.raises(services.ChatNotFound):
            services.message_edit(
                room_id=room.pk, message_id=message.pk + 99, user_id=bob.pk, body="x"
            )
        assert Message.objects.get(pk=message.pk).body == "mine"

    def test_delete_leaves_a_tombstone_without_the_text(
        self, make_room, make_user, alice, bob, carol
    ):
        room = make_room(alice, bob, carol)
        message = send(bob, room, "secret @carol")
        reply = send(alice, room, "answer", reply_to=message.pk)
        services.reaction_set(
            room_id=room.pk, message_id=message.pk, user_id=alice.pk, emoji="👍", add=True
        )
        with pytest.raises(services.ChatForbidden):  # another plain member
            services.message_delete(room_id=room.pk, message_id=message.pk, user_id=carol.pk)
        tombstone = services.message_delete(
            room_id=room.pk, message_id=message.pk, user_id=alice.pk
        )
        assert (tombstone["body"], tombstone["deleted"], tombstone["mentions"]) == ("", True, [])
        assert tombstone["reactions"] == []
        stored = Message.objects.get(pk=message.pk)
        assert (stored.body, stored.deleted, stored.mentions) == ("", True, [])
        assert not Message.objects.filter(body__contains="secret").exists()
        shown = selectors.messages_rendered().get(pk=reply.pk)
        from chat.serializers import message_payload

        assert message_payload(shown)["reply_to"] == {
            "id": message.pk,
            "author": {"id": bob.pk, "username": "bob"},
            "excerpt": "",
            "deleted": True,
        }
        with pytest.raises(services.ChatNotFound):  # already deleted
            services.message_delete(room_id=room.pk, message_id=message.pk, user_id=bob.pk)

    def test_moderators_delete_anywhere_staff_alone_do_not(self, make_room, make_user, alice, bob):
        room = make_room(alice, bob)
        message = send(bob, room, "spam")
        staff = make_user(username="staff", is_staff=True)
        with pytest.raises(services.RoomNotFound):
            services.message_delete(room_id=room.pk, message_id=message.pk, user_id=staff.pk)
        mod = moderator(make_user)
        services.message_delete(room_id=room.pk, message_id=message.pk, user_id=mod.pk)
        assert Message.objects.get(pk=message.pk).deleted


class TestReactions:
    @pytest.mark.parametrize("emoji", ["👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️"])
    def test_one_emoji_of_any_form(self, make_room, alice, bob, emoji):
        room = make_room(alice, bob)
        message = send(bob, room, "hi")
        reactions = services.reaction_set(
            room_id=room.pk, message_id=message.pk, user_id=alice.pk, emoji=emoji, add=True
        )
        assert reactions == [{"emoji": emoji, "count": 1, "users": [alice.pk]}]

    @pytest.mark.parametrize("emoji", ["a", "👍👍", "👍 ", ":thumbsup:", "", "x" * 65])
    def test_anything_else_is_invalid(self, make_room, alice, emoji):
        room = make_room(alice)
        message = send(alice, room, "hi")
        with pytest.raises(services.ChatError) as refused:
            services.reaction_set(
                room_id=room.pk, message_id=message.pk, user_id=alice.pk, emoji=emoji, add=True
            )
        assert refused.value.code == "invalid_message"
        assert not Reaction.objects.exists()

    def test_counts_and_users_in_order_of_first_reaction(self, make_room, alice, bob, carol):
        room = make_room(alice, bob, carol)
        message = send(bob, room, "hi")
        for user, emoji in [(alice, "🎉"), (bob, "👍"), (carol, "🎉"), (alice, "👍")]:
            services.reaction_set(
                room_id=room.pk, message_id=message.pk, user_id=user.pk, emoji=emoji, add=True
            )
        after = services.reaction_set(
            room_id=room.pk, message_id=message.pk, user_id=bob.pk, emoji="👍", add=False
        )
        assert after == [
            {"emoji": "🎉", "count": 2, "users": [alice.pk, carol.pk]},
            {"emoji": "👍", "count": 1, "users": [alice.pk]},
        ]
        page = selectors.room_message_page(room_id=room.pk)
        from chat.serializers import message_payload

        assert message_payload(page.messages[0])["reactions"] == after


class TestRepliesAndMentions:
    def test_a_reply_carries_the_excerpt_and_must_be_in_the_same_room(self, make_room, alice, bob):
        room, other = make_room(alice, bob), make_room(alice, name="other")
        original = send(bob, room, "q" * 150)
        reply = send(alice, room, "a", reply_to=original.pk)
        payload = json.loads(reply.payload_text)
        assert payload["reply_to"] == {
            "id": original.pk,
            "author": {"id": bob.pk, "username": "bob"},
            "excerpt": "q" * 100,
            "deleted": False,
        }
        elsewhere = send(alice, other, "x")
        with pytest.raises(services.ChatError) as refused:
            send(alice, room, "a", reply_to=elsewhere.pk)
        assert refused.value.code == "invalid_message"
        assert Room.objects.get(pk=room.pk).seq == 2  # the refused send took no seq

    def test_mentions_of_members_notify_them_and_others_stay_text(
        self, make_room, make_user, alice, bob, carol, django_capture_on_commit_callbacks
    ):
        dave = make_user(username="dave")  # not a member
        room = make_room(alice, bob, carol, name="general")
        with django_capture_on_commit_callbacks(execute=True):
            message = send(alice, room, "hi @BOB, @carol. @dave @alice email@bob")
        assert message.mentions == [
            {"id": bob.pk, "username": "bob"},
            {"id": carol.pk, "username": "carol"},
        ]
        assert json.loads(message.payload_text)["mentions"] == message.mentions
        notes = Notification.objects.order_by("recipient_id")
        assert [(n.recipient_id, n.title) for n in notes] == [
            (bob.pk, "alice mentioned you in general"),
            (carol.pk, "alice mentioned you in general"),
        ]
        assert notes[0].data == {"kind": "mention", "room": room.pk, "message": message.pk}
        assert not Notification.objects.filter(recipient=dave).exists()

    def test_an_edit_notifies_only_the_newly_mentioned(self, make_room, alice, bob, carol):
        room = make_room(alice, bob, carol)
        message = send(alice, room, "@bob look")
        services.message_edit(
            room_id=room.pk, message_id=message.pk, user_id=alice.pk, body="@bob @carol look"
        )
        assert sorted(Notification.objects.values_list("recipient_id", flat=True)) == sorted(
            [bob.pk, carol.pk]
        )

    def test_a_member_who_muted_the_room_is_not_notified_of_a_mention(
        self, make_room, alice, bob, carol
    ):
        from notifications.preferences import room_mute_set

        room = make_room(alice, bob, carol)
        room_mute_set(user_id=carol.pk, room_id=room.pk, muted=True)
        message = send(alice, room, "@bob @carol look")
        assert [m["username"] for m in message.mentions] == ["bob", "carol"]  # still highlighted
        assert list(Notification.objects.values_list("recipient_id", flat=True)) == [bob.pk]

    def test_a_plain_send_without_at_sign_reads_nothing_more(self, make_room, alice, bob):
        room = make_room(alice, bob)
        send(alice, room, "warm")  # a process's first send may read the webhook flag
        with CaptureQueriesContext(connection) as queries:
            services.room_message_send(
                room_id=room.pk, author_id=bob.pk, body="plain", author_username="bob"
            )
        assert [q["sql"].split()[0] for q in queries if "SAVEPOINT" not in q["sql"]] == [
            "UPDATE",
            "INSERT",
        ]


class TestRoomList:
    def test_members_added_get_room_joined_and_removed_room_left(
        self, make_room, listen, alice, bob, carol, django_capture_on_commit_callbacks
    ):
        bobs, carols = listen(user_group(bob.pk)), listen(user_group(carol.pk))
        with django_capture_on_commit_callbacks(execute=True):
            room = make_room(alice, bob, name="team")
        [joined] = bobs.frames()
        assert joined["type"] == "room.joined"
        assert (joined["room"]["id"], joined["room"]["name"], joined["room"]["seq"]) == (
            room.pk,
            "team",
            0,
        )
        assert {m["id"] for m in joined["room"]["members"]} == {alice.pk, bob.pk}
        with django_capture_on_commit_callbacks(execute=True):
            services.room_member_add(room_id=room.pk, actor_id=alice.pk, user_id=carol.pk)
        [added] = carols.frames()
        assert (added["type"], added["room"]["id"], added["room"]["seq"]) == (
            "room.joined",
            room.pk,
            1,
        )
        with django_capture_on_commit_callbacks(execute=True):
            services.room_rename(room_id=room.pk, actor_id=alice.pk, name="crew")
        assert [(f["type"], f["room"]["name"]) for f in bobs.frames()] == [("room.updated", "crew")]
        with django_capture_on_commit_callbacks(execute=True):
            services.room_member_remove(room_id=room.pk, actor_id=carol.pk, user_id=carol.pk)
        assert [e["text"] for e in carols.events()][-1] == json.dumps(
            {"type": "room.left", "room": room.pk}, separators=(",", ":")
        )

    def test_a_new_direct_room_is_announced_to_both(
        self, listen, alice, bob, django_capture_on_commit_callbacks
    ):
        alices, bobs = listen(user_group(alice.pk)), listen(user_group(bob.pk))
        with django_capture_on_commit_callbacks(execute=True):
            room, _ = services.room_direct_get_or_create(user_id=alice.pk, other_id=bob.pk)
            services.room_direct_get_or_create(user_id=bob.pk, other_id=alice.pk)
        for listener in (alices, bobs):
            assert [(f["type"], f["room"]["id"]) for f in listener.frames()] == [
                ("room.joined", room.pk)
            ]

    def test_rename_needs_an_owner_or_a_moderator(self, make_room, make_user, alice, bob):
        room = make_room(alice, bob)
        with pytest.raises(services.ChatForbidden):
            services.room_rename(room_id=room.pk, actor_id=bob.pk, name="mine")
        services.room_rename(room_id=room.pk, actor_id=moderator(make_user).pk, name="moderated")
        assert Room.objects.get(pk=room.pk).name == "moderated"
        assert RoomChange.objects.get(room=room).data == {"name": "moderated"}


class TestRest:
    def test_rename_edit_delete_react_and_reply_over_rest(
        self, as_user, make_room, alice, bob, carol
    ):
        room = make_room(alice, bob)
        owner, member, outsider = as_user(alice), as_user(bob), as_user(carol)
        base = f"/api/rooms/{room.pk}/"
        assert outsider.patch(base, {"name": "x"}, format="json").status_code == 404
        assert (
            member.patch(base, {"name": "x"}, format="json").json()["code"] == "permission_denied"
        )
        renamed = owner.patch(base, {"name": " ops "}, format="json")
        assert (renamed.status_code, renamed.json()["name"], renamed.json()["seq"]) == (
            200,
            "ops",
            1,
        )
        assert owner.patch(base, {"name": ""}, format="json").status_code == 400

        posted = member.post(f"{base}messages/", {"body": "hello @alice"}, format="json").json()
        assert posted["mentions"] == [{"id": alice.pk, "username": "alice"}]
        mid = posted["id"]
        reply = owner.post(f"{base}messages/", {"body": "hi", "reply_to": mid}, format="json")
        assert reply.status_code == 201
        assert reply.json()["reply_to"]["id"] == mid
        other = make_room(alice, name="other")
        elsewhere = send(alice, other, "x").pk
        bad = owner.post(f"{base}messages/", {"body": "hi", "reply_to": elsewhere}, format="json")
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid")

        path = f"{base}messages/{mid}/"
        assert owner.patch(path, {"body": "x"}, format="json").status_code == 403
        assert outsider.patch(path, {"body": "x"}, format="json").status_code == 404
        assert member.patch(path, {"body": ""}, format="json").status_code == 400
        edited = member.patch(path, {"body": "hello all"}, format="json")
        assert (edited.status_code, edited.json()["body"]) == (200, "hello all")
        assert edited.json()["edited_at"] is not None
        assert (
            owner.patch(f"{base}messages/{mid + 99}/", {"body": "x"}, format="json").status_code
            == 404
        )

        reactions = f"{path}reactions/"
        added = owner.post(reactions, {"emoji": "👍"}, format="json")
        assert added.json() == {
            "message": mid,
            "reactions": [{"emoji": "👍", "count": 1, "users": [alice.pk]}],
        }
        assert owner.post(reactions, {"emoji": "nope"}, format="json").json()["code"] == "invalid"
        assert owner.post(reactions, ["👍"], format="json").status_code == 400
        assert outsider.post(reactions, {"emoji": "👍"}, format="json").status_code == 404
        removed = owner.delete(f"{reactions}?emoji=%F0%9F%91%8D")
        assert removed.json() == {"message": mid, "reactions": []}

        history = member.get(f"{base}messages/").json()["results"]
        assert history[1]["id"] == mid
        assert history[1]["edited_at"] is not None
        deleted = owner.delete(path)  # the room's owner
        assert (deleted.status_code, deleted.json()["deleted"], deleted.json()["body"]) == (
            200,
            True,
            "",
        )
        history = member.get(f"{base}messages/").json()["results"]
        assert history[0]["reply_to"] == {
            "id": mid,
            "author": {"id": bob.pk, "username": "bob"},
            "excerpt": "",
            "deleted": True,
        }

    def test_the_openapi_document_describes_the_new_routes(self, as_user, alice):
        schema = as_user(alice).get("/api/schema/?format=json").json()
        paths = schema["paths"]
        assert "patch" in paths["/api/rooms/{room_id}/"]
        assert {"patch", "delete"} <= set(paths["/api/rooms/{room_id}/messages/{message_id}/"])
        assert {"post", "delete"} <= set(
            paths["/api/rooms/{room_id}/messages/{message_id}/reactions/"]
        )
        message = schema["components"]["schemas"]["Message"]["properties"]
        assert {"seq", "edited_at", "deleted", "reactions", "reply_to", "mentions"} <= set(message)
