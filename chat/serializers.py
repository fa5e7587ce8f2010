"""The one shape of a room and a message, shared by REST and the WebSocket, and the bodies of
the REST calls that change them."""

from collections.abc import Iterable
from typing import Any

from rest_framework import serializers

from realtime.events import iso
from realtime.text import validate_text

from .models import MESSAGE_MAX_LENGTH, Membership, Message, Reaction, Room, RoomChange

EXCERPT_LENGTH = 100  # characters of a replied-to message shown with the reply

MAX_ROOM_MEMBERS = 1000  # members given at once in ``POST /api/rooms/``


class UserRefSerializer(serializers.Serializer):
    """``{id, username}``: how a user appears inside chat frames."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)


class ReactionSerializer(serializers.Serializer):
    """``{emoji, count, users: [user id]}``: one emoji's reactions on a message."""

    emoji = serializers.CharField()
    count = serializers.IntegerField()
    users = serializers.ListField(child=serializers.IntegerField())


class ReplyToSerializer(serializers.Serializer):
    """``{id, author {id, username}, excerpt, deleted}``: the message a reply answers; the
    excerpt is its first 100 characters ("" once it is deleted)."""

    id = serializers.IntegerField()
    author = UserRefSerializer()
    excerpt = serializers.CharField()
    deleted = serializers.BooleanField()


class MessageSerializer(serializers.ModelSerializer):
    """``{id, room, author {id, username}, body, created_at, client_id, seq, edited_at, deleted,
    reactions, reply_to, mentions}`` (docs/protocol.md, "Shapes"). The data is
    :func:`message_payload`'s (one shape for REST and the socket); the fields describe it for
    the OpenAPI document."""

    room = serializers.IntegerField(source="room_id", read_only=True)
    author = UserRefSerializer(read_only=True)
    seq = serializers.IntegerField(read_only=True)
    edited_at = serializers.DateTimeField(read_only=True, allow_null=True)
    deleted = serializers.BooleanField(read_only=True)
    reactions = ReactionSerializer(many=True, read_only=True)
    reply_to = ReplyToSerializer(read_only=True, allow_null=True)
    mentions = UserRefSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "room",
            "author",
            "body",
            "created_at",
            "client_id",
            "seq",
            "edited_at",
            "deleted",
            "reactions",
            "reply_to",
            "mentions",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Message) -> dict[str, Any]:
        return message_payload(instance)


def reaction_summary(reactions: Iterable[Reaction]) -> list[dict[str, Any]]:
    """``[{emoji, count, users}]`` of a message's reactions (given oldest first), each emoji
    where it was first given."""
    summary: dict[str, dict[str, Any]] = {}
    for reaction in reactions:
        entry = summary.setdefault(
            reaction.emoji, {"emoji": reaction.emoji, "count": 0, "users": []}
        )
        entry["count"] += 1
        entry["users"].append(reaction.user_id)
    return list(summary.values())


def _reply(message: Message) -> dict[str, Any] | None:
    if message.reply_to_id is None:
        return None
    target = message.reply_to
    if target is None:
        return None
    return {
        "id": target.pk,
        "author": {"id": target.author_id, "username": target.author.username},
        "excerpt": target.body[:EXCERPT_LENGTH],
        "deleted": target.deleted,
    }


def message_payload(
    message: Message, reactions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One message as primitives (docs/protocol.md, "Shapes"), built by hand because it runs
    for every message sent and replayed (a serializer instance costs more than the rest of
    the payload). Its ``author`` must be loaded, and for no further query its ``reply_to``
    (with author) and ``reactions`` (``selectors.messages_rendered``); a new message passes
    ``reactions=[]``."""
    if reactions is None:
        reactions = reaction_summary(message.reactions.all())
    return {
        "id": message.pk,
        "room": message.room_id,
        "author": {"id": message.author_id, "username": message.author.username},
        "body": message.body,
        "created_at": iso(message.created_at),
        "client_id": str(message.client_id),
        "seq": message.seq,
        "edited_at": iso(message.edited_at),
        "deleted": message.deleted,
        "reactions": reactions,
        "reply_to": _reply(message),
        "mentions": list(message.mentions),
    }


def feed_frame(change: RoomChange) -> dict[str, Any]:
    """The frame of one stored change of a room's feed other than a new message, rendered from
    the current state (docs/protocol.md, "Room feed"): ``message.updated`` / ``message.deleted``
    ``{room, seq, message}``, ``reaction {room, seq, message: id, emoji, user, action,
    reactions}``, ``member.joined`` / ``member.left {room, seq, user}``, ``room.renamed {room,
    seq, name}``. ``change.message`` (as ``selectors.messages_rendered`` loads it) and
    ``change.user`` are read."""
    frame: dict[str, Any] = {"type": change.kind, "room": change.room_id, "seq": change.seq}
    kind = RoomChange.Kind
    user = (
        {"id": change.user_id, "username": change.user.username}
        if change.user_id is not None
        else None
    )
    if change.kind in (kind.MESSAGE_UPDATED, kind.MESSAGE_DELETED):
        frame["message"] = message_payload(change.message)  # type: ignore[arg-type]
    elif change.kind == kind.REACTION:
        frame |= {
            "message": change.message_id,
            "emoji": change.data.get("emoji", ""),
            "user": user,
            "action": change.data.get("action", "added"),
            "reactions": reaction_summary(change.message.reactions.all()),  # type: ignore[union-attr]
        }
    elif change.kind in (kind.MEMBER_JOINED, kind.MEMBER_LEFT):
        frame["user"] = user
    else:
        frame["name"] = change.data.get("name", "")
    return frame


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

    ``{id, name, kind, created_by, created_at, seq, members, unread_count, last_message,
    last_read_message_id}`` (``seq``: the room's latest change); the last four are per caller and come from
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
            "seq",
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
    """Body of ``POST /api/rooms/{id}/messages/``: ``{body, client_id?, reply_to?}``.

    ``body`` is trimmed, then 1..4000 characters without control characters (docs/protocol.md,
    "Shapes"; ``realtime.text``); without ``client_id`` the server picks one, so such posts are
    not deduplicated. ``reply_to``: the id of a message of the same room.
    """

    body = serializers.CharField(
        max_length=MESSAGE_MAX_LENGTH, trim_whitespace=True, validators=[validate_text]
    )
    client_id = serializers.UUIDField(required=False)
    reply_to = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class MessageEditSerializer(serializers.Serializer):
    """Body of ``PATCH /api/rooms/{id}/messages/{mid}/``: ``{body}`` (as for a new message)."""

    body = serializers.CharField(
        max_length=MESSAGE_MAX_LENGTH, trim_whitespace=True, validators=[validate_text]
    )


class RoomUpdateSerializer(serializers.Serializer):
    """Body of ``PATCH /api/rooms/{id}/``: ``{name}``, 1..100 characters after trimming."""

    name = serializers.CharField(max_length=100, trim_whitespace=True, validators=[validate_text])


class ReactionBodySerializer(serializers.Serializer):
    """Body of ``POST`` / ``DELETE /api/rooms/{id}/messages/{mid}/reactions/``: ``{emoji}``,
    exactly one emoji (``DELETE`` also takes ``?emoji=``)."""

    emoji = serializers.CharField(max_length=64, trim_whitespace=False)


class ReactionsSerializer(serializers.Serializer):
    """``{message: id, reactions: [{emoji, count, users}]}``: a message's reactions."""

    message = serializers.IntegerField()
    reactions = ReactionSerializer(many=True)


class MessageListFilter(serializers.Serializer):
    """Query of ``GET /api/rooms/{id}/messages/``: ``before``, ``after`` (ids), ``page_size``."""

    before = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    after = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
