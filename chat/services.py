"""Writes for chat: rooms, members, messages, read positions.

Every service runs in ``transaction.atomic`` and publishes through ``realtime.publisher`` after
commit.
"""

import uuid

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q

from realtime import publisher
from realtime.errors import CommandError
from realtime.events import encode
from realtime.groups import user_group

from . import events, selectors
from .events import room_group
from .models import MESSAGE_MAX_LENGTH, Membership, Message, Room
from .serializers import message_payload


class ChatError(CommandError):
    """A chat command refused; ``code`` is an error code, ``detail`` for humans. On a socket it
    is an ``error`` frame (``realtime.consumer``), over REST a 4xx (``chat.api``)."""

    code = "invalid_message"
    default_detail = "Invalid request."


class RoomNotFound(ChatError):
    """No such room, or the caller is not a member: the two are one answer, so a non-member
    learns nothing about a room's existence (``404`` over REST, ``forbidden`` on a socket)."""

    code = "not_found"
    # A socket says "forbidden" where REST says 404 (docs/protocol.md): either way, the same
    # answer whether the room exists or not.
    frame_code = "forbidden"
    default_detail = "No such room, or you are not a member of it."


class ChatNotFound(ChatError):
    """Something inside a visible room does not exist (a message, a member)."""

    code = "not_found"
    default_detail = "Not found."


class ChatForbidden(ChatError):
    """A member may not do this (e.g. manage members without being an owner)."""

    code = "forbidden"
    default_detail = "You may not do this in this room."


class UsersRefused(ChatError):
    """Some users given to join a room do not exist or are inactive. One answer for both, which
    names none of them, so the caller learns nothing about which accounts exist (``400
    invalid`` over REST)."""

    code = "invalid"
    default_detail = "members: some users cannot be added"


def _require_active(user_ids: list[int], detail: str) -> None:
    """Raise :class:`UsersRefused` with ``detail`` unless every id is an active user's."""
    wanted = set(user_ids)
    found = get_user_model().objects.filter(pk__in=wanted, is_active=True).count()
    if found != len(wanted):
        raise UsersRefused(detail)


def room_create(*, creator_id: int, name: str, member_ids: list[int] | None = None) -> Room:
    """Create a group room owned by ``creator_id`` with ``member_ids`` in it.

    Raises :class:`UsersRefused` if one of them is not an active user (unknown or inactive,
    one answer for both).
    """
    others = sorted(set(member_ids or []) - {creator_id})
    if others:
        _require_active(others, UsersRefused.default_detail)
    with transaction.atomic():
        room = Room.objects.create(
            name=name.strip(), kind=Room.Kind.GROUP, created_by_id=creator_id
        )
        Membership.objects.bulk_create(
            [Membership(room=room, user_id=creator_id, role=Membership.Role.OWNER)]
            + [Membership(room=room, user_id=pk, role=Membership.Role.MEMBER) for pk in others]
        )
    return room


def room_direct_get_or_create(*, user_id: int, other_id: int) -> tuple[Room, bool]:
    """The one direct room of the pair, created on first use; ``(room, created)``.

    Idempotent under concurrency: the unique ``direct_key`` lets one creator win and the others
    read its room (docs/protocol.md: one direct room per pair). Raises :class:`ChatError` for
    oneself, :class:`UsersRefused` when the other is not an active user.
    """
    if user_id == other_id:
        raise ChatError("A direct room needs another user.")
    _require_active([other_id], "direct_with: this user cannot be added")
    low, high = sorted((user_id, other_id))
    key = f"{low}:{high}"
    existing = Room.objects.filter(direct_key=key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            room = Room.objects.create(kind=Room.Kind.DIRECT, created_by_id=user_id, direct_key=key)
            Membership.objects.bulk_create(
                [Membership(room=room, user_id=pk) for pk in (low, high)]
            )
    except IntegrityError:
        return Room.objects.get(direct_key=key), False
    return room, True


def _managed_room(*, room_id: int, actor_id: int, actor_is_staff: bool) -> tuple[Room, bool]:
    """The room and whether the actor may manage its members; :class:`RoomNotFound` when it
    does not exist or the actor neither belongs to it nor is staff."""
    room = Room.objects.filter(pk=room_id).first() if 0 < room_id <= selectors.MAX_ID else None
    mine = selectors.membership_get(room_id=room_id, user_id=actor_id) if room else None
    if room is None or (mine is None and not actor_is_staff):
        raise RoomNotFound
    return room, actor_is_staff or (mine is not None and mine.role == Membership.Role.OWNER)


def room_member_add(
    *,
    room_id: int,
    actor_id: int,
    actor_is_staff: bool,
    user_id: int,
    role: str | None = None,
) -> tuple[Membership, bool]:
    """Add ``user_id`` to a group room as ``role`` (default ``member``), or change an existing
    member's role when ``role`` is given; ``(membership, created)``.

    Owners and staff only (:class:`ChatForbidden`); a direct room's members never change;
    :class:`UsersRefused` when ``user_id`` is not an active user.
    """
    with transaction.atomic():
        room, manager = _managed_room(
            room_id=room_id, actor_id=actor_id, actor_is_staff=actor_is_staff
        )
        if not manager:
            raise ChatForbidden("Only the room's owners and staff manage its members.")
        if room.kind == Room.Kind.DIRECT:
            raise ChatForbidden("A direct room's members cannot change.")
        _require_active([user_id], "user_id: this user cannot be added")
        membership, created = Membership.objects.get_or_create(
            room=room, user_id=user_id, defaults={"role": role or Membership.Role.MEMBER}
        )
        if not created and role is not None and membership.role != role:
            membership.role = role
            membership.save(update_fields=["role"])
    return membership, created


def room_member_remove(*, room_id: int, actor_id: int, actor_is_staff: bool, user_id: int) -> None:
    """Remove ``user_id`` from a group room: owners and staff remove anyone, a member themselves.

    After commit, ``room.removed`` goes to ``user.<id>``: every socket of that user, on every
    process, leaves ``room.<id>`` before it handles anything published later
    (docs/protocol.md, "Removal").
    """
    with transaction.atomic():
        room, manager = _managed_room(
            room_id=room_id, actor_id=actor_id, actor_is_staff=actor_is_staff
        )
        if not manager and user_id != actor_id:
            raise ChatForbidden("Only the room's owners and staff remove other members.")
        if room.kind == Room.Kind.DIRECT:
            raise ChatForbidden("A direct room's members cannot change.")
        deleted = 0
        if 0 < user_id <= selectors.MAX_ID:
            deleted, _ = Membership.objects.filter(room=room, user_id=user_id).delete()
        if not deleted:
            raise ChatNotFound("No such member in this room.")
        _publish_removed(room_id=room.pk, user_ids=[user_id])


def _publish_removed(*, room_id: int, user_ids: list[int]) -> None:
    publisher.publish_on_commit(
        (user_group(pk), events.room_removed(room_id=room_id)) for pk in user_ids
    )


def memberships_delete(*, memberships: list[Membership]) -> None:
    """Delete memberships without permission checks (the admin) and tell each user's sockets
    to leave the room, as :func:`room_member_remove` does."""
    with transaction.atomic():
        for membership in memberships:
            membership.delete()
            _publish_removed(room_id=membership.room_id, user_ids=[membership.user_id])


def rooms_delete(*, rooms: list[Room]) -> None:
    """Delete rooms with their messages (the admin); every member's sockets leave them."""
    with transaction.atomic():
        for room in rooms:
            user_ids = list(room.memberships.values_list("user_id", flat=True))
            room_id = room.pk
            room.delete()
            _publish_removed(room_id=room_id, user_ids=user_ids)


def _lock_room_of_member(*, room_id: int, user_id: int) -> bool:
    """Lock the room's row if the user is a member; whether they are.

    The lock serializes message inserts of one room, so ids of a room are committed in
    increasing order (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's IMMEDIATE transactions
    already admit one writer at a time): a replay of ``id > since`` never misses a message
    that commits later with a lower id.
    """
    if not 0 < room_id <= selectors.MAX_ID:
        return False
    locked = (
        Room.objects.select_for_update(of=("self",))
        .filter(pk=room_id, memberships__user_id=user_id)
        .values_list("pk", flat=True)
    )
    return bool(list(locked))


def room_message_send(
    *,
    room_id: int,
    author_id: int,
    body: str,
    client_id: uuid.UUID | None = None,
    author_username: str | None = None,
) -> Message:
    """Store a message, then push ``message`` to ``room.<id>`` after commit
    (docs/protocol.md, "WebSocket frames").

    ``body`` is trimmed and must then be 1..4000 characters (:class:`ChatError`). The author
    must be a member (:class:`RoomNotFound`). A ``client_id`` the author already used returns
    the stored message and pushes nothing; ``None`` picks a fresh one (REST posts). Given
    ``author_username`` (a socket knows it), the author is not read from the database.

    Two statements: lock the room (checking membership in the same query), insert. The
    returned message's ``payload_text`` is its ``message_payload`` as JSON text, encoded once
    for the frame and for the sender's ``ack``.
    """
    body = body.strip()
    if not 1 <= len(body) <= MESSAGE_MAX_LENGTH:
        raise ChatError(f"body: must be 1..{MESSAGE_MAX_LENGTH} characters after trimming.")
    client_id = client_id or uuid.uuid4()
    try:
        with transaction.atomic():
            if not _lock_room_of_member(room_id=room_id, user_id=author_id):
                raise RoomNotFound
            message = Message.objects.create(
                room_id=room_id, author_id=author_id, body=body, client_id=client_id
            )
    except IntegrityError:
        # The author used this client_id before (a retry), or a concurrent send with it won:
        # answer with the stored message; nothing is pushed twice.
        previous = selectors.message_by_client_id(author_id=author_id, client_id=client_id)
        if previous is None:
            raise
        previous.payload_text = encode(message_payload(previous))  # type: ignore[attr-defined]
        return previous
    if author_username is None:
        author = get_user_model().objects.only("username").get(pk=author_id)
    else:  # the author's row, as far as the payload needs it, without a query
        author = get_user_model()(pk=author_id, username=author_username)
    message.author = author
    message.payload_text = encode(message_payload(message))  # type: ignore[attr-defined]
    publisher.publish_on_commit(
        [
            (
                room_group(room_id),
                events.room_message({"room": room_id, "id": message.pk}, message.payload_text),
            )
        ]  # type: ignore[attr-defined]
    )
    return message


def room_read(*, room_id: int, user_id: int, message_id: int) -> int:
    """Move the member's read position forward to ``message_id``; return the position after.

    ``message_id`` must be a message of the room (:class:`ChatNotFound`). A position at or past
    it is kept, and nothing is published; otherwise ``room.read`` goes to ``room.<id>``.
    """
    with transaction.atomic():
        membership = (
            Membership.objects.select_related("user")
            .filter(room_id=room_id, user_id=user_id)
            .first()
            if 0 < room_id <= selectors.MAX_ID
            else None
        )
        if membership is None:
            raise RoomNotFound
        if not Message.objects.filter(pk=message_id, room_id=room_id).exists():
            raise ChatNotFound("No such message in this room.")
        moved = (
            Membership.objects.filter(pk=membership.pk)
            .filter(Q(last_read_message_id__isnull=True) | Q(last_read_message_id__lt=message_id))
            .update(last_read_message_id=message_id)
        )
        if not moved:
            return int(
                Membership.objects.values_list("last_read_message_id", flat=True).get(
                    pk=membership.pk
                )
            )
        publisher.publish_on_commit(
            [
                (
                    room_group(room_id),
                    events.room_read(
                        room_id=room_id,
                        user_id=user_id,
                        username=membership.user.username,
                        message_id=message_id,
                    ),
                )
            ]
        )
    return message_id
