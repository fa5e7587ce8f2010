"""The one shape of a room and a message, shared by REST and the WebSocket, and the bodies of
the REST calls that change them."""

from typing import Any

from rest_framework import serializers

from realtime.events import iso
from realtime.text import validate_text

from .models import MESSAGE_MAX_LENGTH, Membership, Message, Room

MAX_ROOM_MEMBERS = 1000  # members given at once in ``POST /api/rooms/``


class UserRefSerializer(serializers.Serializer):
    """``{id, username}``: how a user appears inside chat frames."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)


class MessageSerializer(serializers.ModelSerializer):
    """``{id, room, author {id, username}, body, created_at, client_id}``
    (docs/protocol.md, "Shapes")."""

    room = serializers.IntegerField(source="room_id", read_only=True)
    author = UserRefSerializer(read_only=True)

    class Meta:
        model = Message
        fields = ["id", "room", "author", "body", "created_at", "client_id"]
        read_only_fields = fields


def message_payload(message: Message) -> dict[str, Any]:
    """One message (its ``author`` loaded) as primitives: what ``MessageSerializer`` gives, built
    by hand because it runs for every message sent and replayed (a serializer instance costs
    more than the rest of the payload; ``tests/chat/test_services.py`` checks they agree)."""
    return {
        "id": message.pk,
        "room": message.room_id,
        "author": {"id": message.author_id, "username": message.author.username},
        "body": message.body,
        "created_at": iso(message.created_at),
        "client_id": str(message.client_id),
    }


class MemberSerializer(serializers.ModelSerializer):
    """A room member: ``{id, username, role, joined_at}`` (``id`` is the user's)."""

    id = serializers.IntegerField(source="user_id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "joined_at"]
        read_only_fields = fields


class RoomSerializer(serializers.ModelSerializer):
    """A room as its member sees it (docs/protocol.md, "Shapes").

    ``{id, name, kind, created_by, created_at, members, unread_count, last_message,
    last_read_message_id}``; the last four are per caller and come from
    ``selectors.room_list`` / ``room_get`` (annotations), never from a query per room.
    """

    created_by = serializers.IntegerField(source="created_by_id", read_only=True)
    members = MemberSerializer(source="memberships", many=True, read_only=True)
    unread_count = serializers.IntegerField(read_only=True)
    last_message = MessageSerializer(read_only=True, allow_null=True)
    last_read_message_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Room
        fields = [
            "id",
            "name",
            "kind",
            "created_by",
            "created_at",
            "members",
            "unread_count",
            "last_message",
            "last_read_message_id",
        ]
        read_only_fields = fields


class RoomCreateSerializer(serializers.Serializer):
    """Body of ``POST /api/rooms/``: ``{name, members?: [user id]}`` or ``{direct_with: id}``."""

    name = serializers.CharField(max_length=100, required=False, validators=[validate_text])
    members = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=MAX_ROOM_MEMBERS,
    )
    direct_with = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)

    def validate_members(self, value: list[int]) -> list[int]:
        return sorted(set(value))  # who may join is the service's rule (chat.services)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        direct = "direct_with" in attrs
        if direct == ("name" in attrs):
            raise serializers.ValidationError(
                "give either name (a group room) or direct_with (a direct room)", code="invalid"
            )
        if direct and attrs.get("members"):
            raise serializers.ValidationError(
                "a direct room has exactly two members", code="invalid"
            )
        return attrs


class MemberAddSerializer(serializers.Serializer):
    """Body of ``POST /api/rooms/{id}/members/``: ``{user_id, role?: "member" | "owner"}``.

    Without ``role`` a new member is a ``member`` and an existing one keeps their role.
    """

    user_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    role = serializers.ChoiceField(choices=Membership.Role.choices, required=False)


class MessageCreateSerializer(serializers.Serializer):
    """Body of ``POST /api/rooms/{id}/messages/``: ``{body, client_id?}``.

    ``body`` is trimmed, then 1..4000 characters without control characters (docs/protocol.md,
    "Shapes"; ``realtime.text``); without ``client_id`` the server picks one, so such posts are
    not deduplicated.
    """

    body = serializers.CharField(
        max_length=MESSAGE_MAX_LENGTH, trim_whitespace=True, validators=[validate_text]
    )
    client_id = serializers.UUIDField(required=False)


class MessageListFilter(serializers.Serializer):
    """Query of ``GET /api/rooms/{id}/messages/``: ``before``, ``after`` (ids), ``page_size``."""

    before = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    after = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
