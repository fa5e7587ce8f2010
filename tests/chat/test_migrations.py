"""Rooms and messages survive the move of the chat models from ``notifications`` to ``chat``.

The database is migrated back to the layout before the move, filled through the historical
models of that layout, and migrated forward again: every row is still there, read through the
chat app's models, and a permission granted on the old content type still holds.
"""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat.models import Membership, Message, Room

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("notifications", "0002_chat"), ("chat", None)]


def _migrate(targets):
    """Migrate to ``targets``; the historical models of the state reached."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


def test_rooms_members_and_messages_survive_the_move():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old = _migrate(BEFORE)
    user_model = old.get_model("accounts", "User")
    room_model = old.get_model("notifications", "Room")
    content_types = old.get_model("contenttypes", "ContentType")
    alice = user_model.objects.create(username="alice")
    bob = user_model.objects.create(username="bob")
    room = room_model.objects.create(name="old general", kind="group", created_by_id=alice.pk)
    old.get_model("notifications", "Membership").objects.create(room=room, user=alice, role="owner")
    old.get_model("notifications", "Membership").objects.create(room=room, user=bob)
    message = old.get_model("notifications", "Message").objects.create(
        room=room,
        author=alice,
        body="from before",
        client_id="0b7e7dbe-4f8c-4a4b-a1d0-2f1c2c7b8e11",
    )
    room_type, _ = content_types.objects.get_or_create(app_label="notifications", model="room")
    moderate, _ = old.get_model("auth", "Permission").objects.get_or_create(
        content_type=room_type, codename="change_room", defaults={"name": "Can change room"}
    )
    bob.user_permissions.add(moderate)

    _migrate(latest)

    moved = Room.objects.get(pk=room.pk)
    assert moved.name == "old general"
    assert sorted(Membership.objects.filter(room=moved).values_list("user_id", "role")) == [
        (alice.pk, "owner"),
        (bob.pk, "member"),
    ]
    assert Message.objects.get(pk=message.pk).body == "from before"
    permission = Permission.objects.get(pk=moderate.pk)
    assert (permission.content_type.app_label, permission.content_type.model) == ("chat", "room")
    # The chat app's own code works on the moved rows: a new message gets the next id.
    assert (
        Message.objects.create(
            room=moved,
            author_id=bob.pk,
            body="after",
            client_id="1b7e7dbe-4f8c-4a4b-a1d0-2f1c2c7b8e11",
        ).pk
        > message.pk
    )
