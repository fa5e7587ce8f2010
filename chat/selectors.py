"""Reads for chat: membership, rooms as a member sees them, history."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import BigIntegerField, Count, Max, OuterRef, Prefetch, Q, Subquery, Value
from django.db.models.functions import Coalesce

from .models import Membership, Message, Reaction, Room, RoomChange
from .serializers import RoomSerializer

MAX_ID = 2**63 - 1  # the largest id a database column holds; larger input matches nothing


def room_is_member(*, room_id: int, user_id: int) -> bool:
    """Whether the user belongs to the room (``False`` for a room that does not exist)."""
    if not 0 < room_id <= MAX_ID:
        return False
    return Membership.objects.filter(room_id=room_id, user_id=user_id).exists()


def room_size_for_member(*, room_id: int, user_id: int) -> tuple[int, int] | None:
    """``(member count, the room's latest seq)`` if the user is a member, else ``None`` (one
    query)."""
    if not 0 < room_id <= MAX_ID:
        return None
    counts = Membership.objects.filter(room_id=room_id).aggregate(
        size=Count("pk"), mine=Count("pk", filter=Q(user_id=user_id)), seq=Max("room__seq")
    )
    return (counts["size"], int(counts["seq"] or 0)) if counts["mine"] else None


def membership_get(*, room_id: int, user_id: int) -> Membership | None:
    """The user's membership of the room, or ``None``."""
    if not (0 < room_id <= MAX_ID and 0 < user_id <= MAX_ID):
        return None
    return Membership.objects.filter(room_id=room_id, user_id=user_id).first()


def messages_rendered() -> Any:
    """Messages with what ``serializers.message_payload`` reads loaded: the author, the
    replied-to message and its author, the reactions (oldest first)."""
    return Message.objects.select_related("author", "reply_to__author").prefetch_related(
        Prefetch("reactions", queryset=Reaction.objects.order_by("pk"))
    )


def _unread() -> Any:
    """Subquery of a membership's unread count: messages after its read position that its user
    did not write."""
    return (
        Message.objects.filter(
            room_id=OuterRef("room_id"),
            pk__gt=Coalesce(
                OuterRef("last_read_message_id"), Value(0), output_field=BigIntegerField()
            ),
        )
        .exclude(author_id=OuterRef("user_id"))
        .order_by()
        .values("room_id")
        .annotate(n=Count("pk"))
        .values("n")
    )


def _member_rooms(*, user_id: int, room_id: int | None = None) -> list[Room]:
    """The user's rooms with per-caller ``unread_count``, ``last_message`` and
    ``last_read_message_id`` set as attributes: four queries however many rooms."""
    memberships = Membership.objects.filter(user_id=user_id)
    if room_id is not None:
        memberships = memberships.filter(room_id=room_id)
    unread = _unread()
    newest = Message.objects.filter(room_id=OuterRef("room_id")).order_by("-pk")
    rows = list(
        memberships.annotate(
            unread=Coalesce(Subquery(unread), Value(0)),
            last_id=Subquery(newest.values("pk")[:1]),
            active_at=Coalesce(Subquery(newest.values("created_at")[:1]), "room__created_at"),
        )
        .select_related("room")
        .prefetch_related(
            Prefetch(
                "room__memberships",
                queryset=Membership.objects.select_related("user").order_by("joined_at", "pk"),
            )
        )
        .order_by("-active_at", "-room_id")
    )
    last = messages_rendered().in_bulk([m.last_id for m in rows if m.last_id])
    rooms = []
    for membership in rows:
        room: Any = membership.room
        room.unread_count = membership.unread
        room.last_message = last.get(membership.last_id)
        room.last_read_message_id = membership.last_read_message_id
        rooms.append(room)
    return rooms


def room_list(*, user_id: int) -> list[Room]:
    """Every room the user belongs to, most recently active first (see ``RoomSerializer``)."""
    return _member_rooms(user_id=user_id)


def room_get(*, room_id: int, user_id: int) -> Room | None:
    """One room as its member sees it; ``None`` when it does not exist or the user is not in it."""
    if not 0 < room_id <= MAX_ID:
        return None
    rooms = _member_rooms(user_id=user_id, room_id=room_id)
    return rooms[0] if rooms else None


PER_MEMBER = ("unread_count", "last_read_message_id")  # the room object's per-caller fields


@dataclass(frozen=True)
class RoomForMembers:
    """A room as ``GET /api/rooms/{id}/`` shows it, for many members at once: ``shared`` is
    every field but :data:`PER_MEMBER`, ``per_member`` is ``{user id: (unread_count,
    last_read_message_id)}``."""

    shared: dict[str, Any]
    per_member: dict[int, tuple[int, int | None]]


def room_for_members(*, room_id: int, user_ids: list[int] | None = None) -> RoomForMembers | None:
    """The room for those of ``user_ids`` (default: all) who are members (``None`` if none
    is): four queries however many, the shared part serialized once."""
    memberships = Membership.objects.filter(room_id=room_id)
    if user_ids is not None:
        memberships = memberships.filter(user_id__in=user_ids)
    rows = list(
        memberships.order_by("pk")
        .annotate(unread=Coalesce(Subquery(_unread()), Value(0)))
        .values_list("user_id", "unread", "last_read_message_id")
    )
    room = room_get(room_id=room_id, user_id=rows[0][0]) if rows else None
    if room is None:
        return None
    shared = dict(RoomSerializer(room).data)
    for field in PER_MEMBER:
        shared.pop(field)
    return RoomForMembers(shared, {pk: (unread, last) for pk, unread, last in rows})


def room_changes_since(*, room_id: int, since: int, limit: int) -> list[tuple[int, Any]]:
    """Up to ``limit`` changes of the room's feed with ``seq > since``, in ``seq`` order, as
    ``(seq, Message | RoomChange)``: new messages (their own ``seq``) merged with the other
    changes (``RoomChange``), each loaded for rendering from the current state (the replay,
    docs/protocol.md "Room feed"). Two queries."""
    messages = list(
        messages_rendered().filter(room_id=room_id, seq__gt=since).order_by("seq")[:limit]
    )
    changes = list(
        RoomChange.objects.filter(room_id=room_id, seq__gt=since)
        .select_related("user", "message__author", "message__reply_to__author")
        .prefetch_related(Prefetch("message__reactions", queryset=Reaction.objects.order_by("pk")))
        .order_by("seq")[:limit]
    )
    merged = sorted(
        [(int(m.seq), m) for m in messages] + [(c.seq, c) for c in changes], key=lambda p: p[0]
    )
    return merged[:limit]


@dataclass(frozen=True)
class MessagePage:
    """One page of history, newest first; whether older / newer messages exist beyond it."""

    messages: list[Message]
    has_older: bool
    has_newer: bool


def room_message_page(
    *, room_id: int, before: int | None = None, after: int | None = None, limit: int = 50
) -> MessagePage:
    """A page of the room's history, newest first (docs/protocol.md, chat "HTTP API").

    No bound: the newest ``limit`` messages. ``before=B``: the ``limit`` messages just before B.
    ``after=A``: the ``limit`` messages just after A (the oldest of those newer than A, so a
    client catches up page by page). Both: within ``(A, B)``, nearest B.
    """
    messages = messages_rendered().filter(room_id=room_id)
    if before is not None:
        messages = messages.filter(pk__lt=before)
    if after is not None:
        messages = messages.filter(pk__gt=after)
    if after is not None and before is None:
        rows = list(messages.order_by("pk")[: limit + 1])
        has_newer = len(rows) > limit
        rows = rows[:limit][::-1]
        has_older = bool(rows) and _exists(room_id=room_id, below=rows[-1].pk)
    else:
        rows = list(messages.order_by("-pk")[: limit + 1])
        has_older = len(rows) > limit
        rows = rows[:limit]
        has_newer = bool(rows) and _exists(room_id=room_id, above=rows[0].pk)
    return MessagePage(rows, has_older, has_newer)


def _exists(*, room_id: int, below: int | None = None, above: int | None = None) -> bool:
    messages = Message.objects.filter(room_id=room_id)
    if below is not None:
        messages = messages.filter(pk__lt=below)
    if above is not None:
        messages = messages.filter(pk__gt=above)
    return messages.exists()


def message_by_client_id(*, author_id: int, client_id: UUID) -> Message | None:
    """The author's message stored under ``client_id``, with its author, or ``None``."""
    return messages_rendered().filter(author_id=author_id, client_id=client_id).first()
