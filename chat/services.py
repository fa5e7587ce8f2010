"""Writes for chat: rooms, members, messages, read positions.

Every service runs in ``transaction.atomic`` and publishes through ``realtime.publisher`` after
commit.
"""

import re
import uuid
from collections.abc import Callable
from typing import Any

import emoji as emoji_library
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from notifications import services as notification_services
from realtime import publisher
from realtime.errors import CommandError
from realtime.events import encode
from realtime.groups import user_group

from . import events, selectors
from .events import room_group
from .models import MESSAGE_MAX_LENGTH, Membership, Message, Reaction, Room, RoomChange
from .serializers import feed_frame, message_payload, reaction_summary

MODERATE_ROOM = "chat.moderate_room"  # the permission of moderators (group "Moderators")
ROOM_NAME_MAX_LENGTH = 100
EMOJI_MAX_LENGTH = 64  # characters: the longest ZWJ sequences are well under this
_MENTION = re.compile(r"(?<![\w@])@([\w.+-]{1,150})")
_MAX_MENTIONS = 50  # distinct @names looked up per message


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


def _room_user(user_id: int, username: str | None = None) -> dict[str, Any]:
    if username is None:
        username = get_user_model().objects.values_list("username", flat=True).get(pk=user_id)
    return {"id": user_id, "username": username}


def _publish_listed(kind: str, *, room_id: int, user_ids: list[int] | None = None) -> None:
    """``room.joined`` / ``room.updated`` ``{room}`` to each user's group: the room as
    ``GET /api/rooms/{id}/`` shows it to that user (read now, inside the transaction that
    changed it; the shared part encoded once)."""
    room = selectors.room_for_members(room_id=room_id, user_ids=user_ids)
    if room is None:
        return
    shared = encode(room.shared)
    publisher.publish_on_commit(
        (user_group(pk), events.room_listed(kind, shared, unread, last))
        for pk, (unread, last) in room.per_member.items()
    )


def _publish_joined(*, room_id: int, user_ids: list[int]) -> None:
    _publish_listed("room.joined", room_id=room_id, user_ids=user_ids)


def _emit(event_type: str, room_id: int, data: Any) -> None:
    """Raise a webhook event of the room for the service accounts that belong to it (a query
    only when some endpoint exists: ``notifications.services.emit_event``)."""
    notification_services.emit_event(
        event_type,
        data,
        room_member_ids=lambda owners: Membership.objects.filter(
            room_id=room_id, user_id__in=owners
        ).values_list("user_id", flat=True),
    )


def _member(room_id: int, user_id: int) -> Callable[[], dict[str, Any]]:
    def data() -> dict[str, Any]:
        user = get_user_model().objects.filter(pk=user_id).values("id", "username").first()
        return {"room": room_id, "user": user or {"id": user_id}}

    return data


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
    one answer for both). Every member, the creator included, gets ``room.joined`` on every
    socket after commit. The first members are the room's initial state, not changes: the
    room's ``seq`` starts at 0.
    """
    others = sorted(set(member_ids or []) - {creator_id})
    if others:
        _require_active(others, UsersRefused.default_detail)
    with transaction.atomic():
        room = Room.objects.create(
            name=name.strip(), kind=Room.Kind.GROUP, created_by_id=creator_id
        )
        members = [creator_id, *others]
        Membership.objects.bulk_create(
            [Membership(room=room, user_id=creator_id, role=Membership.Role.OWNER)]
            + [Membership(room=room, user_id=pk, role=Membership.Role.MEMBER) for pk in others]
        )
        _publish_joined(room_id=room.pk, user_ids=members)
    return room


def room_direct_get_or_create(*, user_id: int, other_id: int) -> tuple[Room, bool]:
    """The one direct room of the pair, created on first use; ``(room, created)``.

    Idempotent under concurrency: the unique ``direct_key`` lets one creator win and the others
    read its room (docs/protocol.md: one direct room per pair). Raises :class:`ChatError` for
    oneself, :class:`UsersRefused` when the other is not an active user. A new room is announced
    with ``room.joined`` to both users.
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
            _publish_joined(room_id=room.pk, user_ids=[low, high])
    except IntegrityError:
        return Room.objects.get(direct_key=key), False
    return room, True


def user_moderates(user_id: int) -> bool:
    """Whether the user holds ``chat.moderate_room`` (directly, through a group such as
    "Moderators", or as an active superuser: Django's ``ModelBackend.has_perm``)."""
    user = (
        get_user_model().objects.filter(pk=user_id).first()
        if 0 < user_id <= selectors.MAX_ID
        else None
    )
    return bool(user is not None and user.has_perm(MODERATE_ROOM))


def _managed_room(*, room_id: int, actor_id: int) -> tuple[Room, bool]:
    """The room and whether the actor may manage it (an owner, or ``chat.moderate_room``);
    :class:`RoomNotFound` when it does not exist or the actor neither belongs to it nor
    moderates."""
    room = Room.objects.filter(pk=room_id).first() if 0 < room_id <= selectors.MAX_ID else None
    mine = selectors.membership_get(room_id=room_id, user_id=actor_id) if room else None
    if mine is not None and mine.role == Membership.Role.OWNER:
        return room, True  # type: ignore[return-value]
    moderates = room is not None and user_moderates(actor_id)
    if room is None or (mine is None and not moderates):
        raise RoomNotFound
    return room, moderates


def _next_seq(*, room_id: int, member_id: int | None = None) -> int | None:
    """Lock the room's row and take its next change number; ``None`` when there is no such
    room, or ``member_id`` is given and is not a member. Inside ``transaction.atomic`` only.

    One statement, ``UPDATE room SET seq = seq + 1 WHERE id = %s [AND the member exists]
    RETURNING seq`` (PostgreSQL; SQLite 3.35+): the row lock it takes is held until commit, so
    a room's changes commit in ``seq`` order and a rollback gives its number back. A replay of
    ``seq > since`` therefore never misses a change that commits later with a lower number.
    """
    if not 0 < room_id <= selectors.MAX_ID:
        return None
    quote = connection.ops.quote_name
    room, membership = quote(Room._meta.db_table), quote(Membership._meta.db_table)
    sql = f"UPDATE {room} SET {quote('seq')} = {quote('seq')} + 1 WHERE {quote('id')} = %s"  # noqa: S608
    params: list[int] = [room_id]
    if member_id is not None:
        if not 0 < member_id <= selectors.MAX_ID:
            return None
        sql += (
            f" AND EXISTS (SELECT 1 FROM {membership} WHERE {membership}.{quote('room_id')} = %s"  # noqa: S608
            f" AND {membership}.{quote('user_id')} = %s)"
        )
        params += [room_id, member_id]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {quote('seq')}", params)
        row = cursor.fetchone()
    return int(row[0]) if row else None


def _publish_change(change: RoomChange) -> dict[str, Any]:
    """Publish one stored change to ``room.<id>`` after commit; return its frame."""
    frame = feed_frame(change)
    publisher.publish_on_commit(
        [
            (
                room_group(change.room_id),
                events.room_change(room_id=change.room_id, seq=change.seq, frame=frame),
            )
        ]
    )
    return frame


def room_member_add(
    *, room_id: int, actor_id: int, user_id: int, role: str | None = None
) -> tuple[Membership, bool]:
    """Add ``user_id`` to a group room as ``role`` (default ``member``), or change an existing
    member's role when ``role`` is given; ``(membership, created)``.

    Owners and moderators only (:class:`ChatForbidden`); a direct room's members never change;
    :class:`UsersRefused` when ``user_id`` is not an active user. A new member is a change of
    the room's feed (``member.joined``) and gets ``room.joined`` on every socket.
    """
    with transaction.atomic():
        room, manager = _managed_room(room_id=room_id, actor_id=actor_id)
        if not manager:
            raise ChatForbidden("Only the room's owners and moderators manage its members.")
        if room.kind == Room.Kind.DIRECT:
            raise ChatForbidden("A direct room's members cannot change.")
        existing = Membership.objects.filter(room=room, user_id=user_id).first()
        if existing is None:
            _require_active([user_id], "user_id: this user cannot be added")
            try:
                with transaction.atomic():
                    seq = _next_seq(room_id=room.pk)
                    membership, created = Membership.objects.get_or_create(
                        room=room,
                        user_id=user_id,
                        defaults={"role": role or Membership.Role.MEMBER},
                    )
                    if not created:  # a concurrent add won; its number is given back
                        raise _Unchanged
                    _publish_change(
                        RoomChange.objects.create(
                            room_id=room.pk,
                            seq=seq,
                            kind=RoomChange.Kind.MEMBER_JOINED,
                            user_id=user_id,
                        )
                    )
                    _publish_joined(room_id=room.pk, user_ids=[user_id])
                    _emit("member.joined", room.pk, _member(room.pk, user_id))
                    return membership, True
            except _Unchanged:
                existing = Membership.objects.get(room=room, user_id=user_id)
        if role is not None and existing.role != role:
            existing.role = role
            existing.save(update_fields=["role"])
    return existing, False


class _Unchanged(Exception):  # noqa: N818 - internal control flow: roll back, give the seq back
    pass


def room_member_remove(*, room_id: int, actor_id: int, user_id: int) -> None:
    """Remove ``user_id`` from a group room: owners and moderators remove anyone, a member
    themselves (leaving).

    After commit ``member.left`` goes to the room's feed and ``room.left`` to ``user.<id>``:
    every socket of that user, on every process, leaves ``room.<id>`` before it handles
    anything published later (docs/protocol.md, "Removal").
    """
    with transaction.atomic():
        room, manager = _managed_room(room_id=room_id, actor_id=actor_id)
        if not manager and user_id != actor_id:
            raise ChatForbidden("Only the room's owners and moderators remove other members.")
        if room.kind == Room.Kind.DIRECT:
            raise ChatForbidden("A direct room's members cannot change.")
        seq = _next_seq(room_id=room.pk)
        deleted = 0
        if 0 < user_id <= selectors.MAX_ID:
            _emit("member.left", room.pk, _member(room.pk, user_id))  # the leaver is told too
            deleted, _ = Membership.objects.filter(room=room, user_id=user_id).delete()
        if not deleted:
            raise ChatNotFound("No such member in this room.")
        _member_left(room_id=room.pk, user_id=user_id, seq=seq)


def _member_left(*, room_id: int, user_id: int, seq: int | None) -> None:
    # The user's sockets leave the room first: the feed's member.left then reaches the others.
    _publish_removed(room_id=room_id, user_ids=[user_id])
    if seq is not None:
        _publish_change(
            RoomChange.objects.create(
                room_id=room_id, seq=seq, kind=RoomChange.Kind.MEMBER_LEFT, user_id=user_id
            )
        )


def _publish_removed(*, room_id: int, user_ids: list[int]) -> None:
    publisher.publish_on_commit(
        (user_group(pk), events.room_removed(room_id=room_id)) for pk in user_ids
    )


def memberships_delete(*, memberships: list[Membership]) -> None:
    """Delete memberships without permission checks (the admin) and tell each user's sockets
    to leave the room, as :func:`room_member_remove` does."""
    with transaction.atomic():
        for membership in memberships:
            seq = _next_seq(room_id=membership.room_id)
            membership.delete()
            _member_left(room_id=membership.room_id, user_id=membership.user_id, seq=seq)


def rooms_delete(*, rooms: list[Room]) -> None:
    """Delete rooms with their messages (the admin); every member's sockets leave them."""
    with transaction.atomic():
        for room in rooms:
            user_ids = list(room.memberships.values_list("user_id", flat=True))
            room_id = room.pk
            room.delete()
            _publish_removed(room_id=room_id, user_ids=user_ids)


def room_rename(*, room_id: int, actor_id: int, name: str) -> Room:
    """Rename a group room (owners and moderators; :class:`ChatForbidden` otherwise, and for a
    direct room). ``name`` is trimmed, then 1..100 characters (:class:`ChatError`).

    A new name is a change of the room's feed (``room.renamed``) and every member gets
    ``room.updated`` on every socket; the same name changes nothing.
    """
    name = name.strip()
    if not 1 <= len(name) <= ROOM_NAME_MAX_LENGTH:
        raise ChatError(f"name: must be 1..{ROOM_NAME_MAX_LENGTH} characters after trimming.")
    with transaction.atomic():
        room, manager = _managed_room(room_id=room_id, actor_id=actor_id)
        if not manager:
            raise ChatForbidden("Only the room's owners and moderators rename it.")
        if room.kind == Room.Kind.DIRECT:
            raise ChatForbidden("A direct room has no name.")
        _rename(room, name=name, actor_id=actor_id)
    return room


def _rename(room: Room, *, name: str, actor_id: int | None) -> None:
    if name == room.name:
        return
    seq = _next_seq(room_id=room.pk)
    Room.objects.filter(pk=room.pk).update(name=name)
    room.name, room.seq = name, seq
    _publish_change(
        RoomChange.objects.create(
            room_id=room.pk,
            seq=seq,
            kind=RoomChange.Kind.ROOM_RENAMED,
            user_id=actor_id,
            data={"name": name},
        )
    )
    _publish_listed("room.updated", room_id=room.pk)


def room_rename_unchecked(*, room: Room, name: str, actor_id: int) -> None:
    """Rename a group room without permission checks (the admin, whose own permission
    ``chat.change_room`` decided): a change of the feed like :func:`room_rename`."""
    with transaction.atomic():
        _rename(
            Room.objects.select_for_update().get(pk=room.pk), name=name.strip(), actor_id=actor_id
        )


def memberships_add(*, memberships: list[Membership]) -> None:
    """Store new memberships without permission checks (the admin): each is a change of its
    room's feed (``member.joined``) and the user gets ``room.joined``, as with
    :func:`room_member_add`."""
    with transaction.atomic():
        for membership in memberships:
            seq = _next_seq(room_id=membership.room_id)
            membership.save()
            _publish_change(
                RoomChange.objects.create(
                    room_id=membership.room_id,
                    seq=seq,
                    kind=RoomChange.Kind.MEMBER_JOINED,
                    user_id=membership.user_id,
                )
            )
            _publish_joined(room_id=membership.room_id, user_ids=[membership.user_id])
            _emit(
                "member.joined", membership.room_id, _member(membership.room_id, membership.user_id)
            )


def _mentioned(*, room_id: int, author_id: int, body: str) -> list[dict[str, Any]]:
    """``[{id, username}]`` of the room's members other than the author that ``body`` names
    as ``@username`` (case-insensitive), in username order; one query, run only when the body
    has an ``@``."""
    names: set[str] = set()
    for match in _MENTION.finditer(body):
        token = match.group(1).lower()
        names.update({token, token.rstrip(".+-")})  # "@bob." at the end of a sentence
        if len(names) >= _MAX_MENTIONS:
            break
    names.discard("")
    if not names:
        return []
    rows = (
        Membership.objects.filter(room_id=room_id)
        .exclude(user_id=author_id)
        .annotate(name=Lower("user__username"))
        .filter(name__in=names)
        .order_by("user__username")
        .values_list("user_id", "user__username")
    )
    return [{"id": pk, "username": username} for pk, username in rows]


def _notify_mentions(
    message: Message, mentions: list[dict[str, Any]], room_name: str | None = None
) -> None:
    if not mentions:
        return
    if room_name is None:
        room_name = Room.objects.values_list("name", flat=True).get(pk=message.room_id)
    notification_services.notify_mention(
        user_ids=[m["id"] for m in mentions],
        title=f"{message.author.username} mentioned you in {room_name or 'a direct message'}",
        body=message.body[:200],
        data={"kind": "mention", "room": message.room_id, "message": message.pk},
    )


def _reply_target(*, room_id: int, message_id: int) -> Message:
    target = (
        Message.objects.select_related("author").filter(pk=message_id, room_id=room_id).first()
        if 0 < message_id <= selectors.MAX_ID
        else None
    )
    if target is None:
        raise ChatError("reply_to: no such message in this room.")
    return target


def _author(author_id: int, username: str | None) -> Any:
    """The author's row as far as a payload needs it: without a query when the socket gave
    the username."""
    if username is None:
        return get_user_model().objects.only("username").get(pk=author_id)
    return get_user_model()(pk=author_id, username=username)


def room_message_send(
    *,
    room_id: int,
    author_id: int,
    body: str,
    client_id: uuid.UUID | None = None,
    author_username: str | None = None,
    reply_to: int | None = None,
) -> Message:
    """Store a message, then push ``message`` to ``room.<id>`` after commit
    (docs/protocol.md, "Room feed").

    ``body`` is trimmed and must then be 1..4000 characters (:class:`ChatError`). The author
    must be a member (:class:`RoomNotFound`). ``reply_to`` must be a message of the same room
    (:class:`ChatError`). A ``client_id`` the author already used returns the stored message
    and pushes nothing; ``None`` picks a fresh one (REST posts). Given ``author_username`` (a
    socket knows it), the author is not read from the database. ``@username`` of another
    member is a mention: stored with the message, and they are notified
    (``notifications.services.notify_mention``).

    A plain message (no ``reply_to``, no ``@``) is two statements: take the room's next
    ``seq`` (locking the room and checking membership in the same statement), insert. The
    returned message's ``payload_text`` is its ``message_payload`` as JSON text, encoded once
    for the frame and for the sender's ``ack``.
    """
    body = body.strip()
    if not 1 <= len(body) <= MESSAGE_MAX_LENGTH:
        raise ChatError(f"body: must be 1..{MESSAGE_MAX_LENGTH} characters after trimming.")
    client_id = client_id or uuid.uuid4()
    target = None
    mentions: list[dict[str, Any]] = []
    try:
        with transaction.atomic():
            seq = _next_seq(room_id=room_id, member_id=author_id)
            if seq is None:
                raise RoomNotFound
            if reply_to is not None:
                target = _reply_target(room_id=room_id, message_id=reply_to)
            if "@" in body:
                mentions = _mentioned(room_id=room_id, author_id=author_id, body=body)
            message = Message.objects.create(
                room_id=room_id,
                author_id=author_id,
                body=body,
                client_id=client_id,
                seq=seq,
                reply_to=target,
                mentions=mentions,
            )
            if mentions:  # the notification's title names the author
                message.author = _author(author_id, author_username)
                _notify_mentions(message, mentions)
    except IntegrityError:
        # The author used this client_id before (a retry), or a concurrent send with it won:
        # answer with the stored message; nothing is pushed twice.
        previous = selectors.message_by_client_id(author_id=author_id, client_id=client_id)
        if previous is None:
            raise
        previous.payload_text = encode(message_payload(previous))  # type: ignore[attr-defined]
        return previous
    if not mentions:
        message.author = _author(author_id, author_username)
    message.payload_text = encode(message_payload(message, reactions=[]))  # type: ignore[attr-defined]
    publisher.publish_on_commit(
        [
            (
                room_group(room_id),
                events.room_message(room_id=room_id, seq=seq, payload_text=message.payload_text),  # type: ignore[attr-defined]
            )
        ]
    )
    _emit(
        "message.created", room_id, lambda: {"room": room_id, "message": message_payload(message)}
    )
    return message


def _message_for_change(
    *, room_id: int, message_id: int, user_id: int | None
) -> tuple[int, Message]:
    """Lock the room and take its next ``seq`` (``user_id`` must be a member, unless ``None``),
    then read the message (not a deleted one): :class:`RoomNotFound`, :class:`ChatNotFound`."""
    seq = _next_seq(room_id=room_id, member_id=user_id)
    if seq is None:
        raise RoomNotFound
    message = (
        selectors.messages_rendered().filter(pk=message_id, room_id=room_id, deleted=False).first()
        if 0 < message_id <= selectors.MAX_ID
        else None
    )
    if message is None:
        raise ChatNotFound("No such message in this room.")
    return seq, message


def message_edit(*, room_id: int, message_id: int, user_id: int, body: str) -> dict[str, Any]:
    """Replace the body of the user's own message; return the message after the edit (its
    payload, ``edited_at`` set). Only the author edits (:class:`ChatForbidden`); ``body`` as for
    :func:`room_message_send` (:class:`ChatError`). A change of the room's feed
    (``message.updated``); members named for the first time are notified."""
    body = body.strip()
    if not 1 <= len(body) <= MESSAGE_MAX_LENGTH:
        raise ChatError(f"body: must be 1..{MESSAGE_MAX_LENGTH} characters after trimming.")
    with transaction.atomic():
        seq, message = _message_for_change(room_id=room_id, message_id=message_id, user_id=user_id)
        if message.author_id != user_id:
            raise ChatForbidden("Only its author edits a message.")
        before = {m["id"] for m in message.mentions}
        mentions = _mentioned(room_id=room_id, author_id=user_id, body=body) if "@" in body else []
        message.body, message.mentions, message.edited_at = body, mentions, timezone.now()
        message.save(update_fields=["body", "mentions", "edited_at"])
        _notify_mentions(message, [m for m in mentions if m["id"] not in before])
        change = RoomChange(
            room_id=room_id,
            seq=seq,
            kind=RoomChange.Kind.MESSAGE_UPDATED,
            message=message,
            user_id=user_id,
        )
        change.save()
        payload = dict(_publish_change(change)["message"])
        _emit("message.updated", room_id, {"room": room_id, "message": payload})
        return payload


def message_delete(*, room_id: int, message_id: int, user_id: int) -> dict[str, Any]:
    """Delete a message, keeping a tombstone (body "", no mentions, no reactions, ``deleted``
    true); return the tombstone's payload. The author, the room's owners and moderators
    (``chat.moderate_room``) may (:class:`ChatForbidden`); a moderator need not be a member.
    A change of the room's feed (``message.deleted``)."""
    with transaction.atomic():
        mine = selectors.membership_get(room_id=room_id, user_id=user_id)
        if mine is None and not user_moderates(user_id):
            raise RoomNotFound
        seq, message = _message_for_change(room_id=room_id, message_id=message_id, user_id=None)
        allowed = (
            message.author_id == user_id
            or (mine is not None and mine.role == Membership.Role.OWNER)
            or user_moderates(user_id)
        )
        if not allowed:
            raise ChatForbidden(
                "Only its author, the room's owners and moderators delete a message."
            )
        message.body, message.mentions, message.deleted = "", [], True
        message.save(update_fields=["body", "mentions", "deleted"])
        Reaction.objects.filter(message=message).delete()
        message = selectors.messages_rendered().get(pk=message.pk)
        change = RoomChange(
            room_id=room_id,
            seq=seq,
            kind=RoomChange.Kind.MESSAGE_DELETED,
            message=message,
            user_id=user_id,
        )
        change.save()
        payload = dict(_publish_change(change)["message"])
        _emit("message.deleted", room_id, {"room": room_id, "message": payload})
        return payload


def _valid_emoji(value: str) -> str:
    if not (
        isinstance(value, str)
        and 0 < len(value) <= EMOJI_MAX_LENGTH
        and emoji_library.is_emoji(value)
    ):
        raise ChatError("emoji: must be exactly one emoji.")
    return value


def reaction_set(
    *, room_id: int, message_id: int, user_id: int, emoji: str, add: bool
) -> list[dict[str, Any]]:
    """Add (``add``) or remove the user's ``emoji`` on a message of a room they belong to;
    return the message's reactions after, ``[{emoji, count, users}]`` in order of each emoji's
    first reaction.

    ``emoji`` must be exactly one emoji as the ``emoji`` library knows them (``is_emoji``: ZWJ
    sequences, flags and skin tones included) (:class:`ChatError`). Adding one already there or
    removing one that is not changes nothing and publishes nothing; otherwise it is a change of
    the room's feed (``reaction``).
    """
    emoji = _valid_emoji(emoji)
    try:
        with transaction.atomic():
            seq, message = _message_for_change(
                room_id=room_id, message_id=message_id, user_id=user_id
            )
            if add:
                _, changed = Reaction.objects.get_or_create(
                    message=message, user_id=user_id, emoji=emoji
                )
            else:
                changed = bool(
                    Reaction.objects.filter(message=message, user_id=user_id, emoji=emoji).delete()[
                        0
                    ]
                )
            if not changed:
                raise _Unchanged
            message = selectors.messages_rendered().get(pk=message.pk)
            change = RoomChange(
                room_id=room_id,
                seq=seq,
                kind=RoomChange.Kind.REACTION,
                message=message,
                user_id=user_id,
                data={"emoji": emoji, "action": "added" if add else "removed"},
            )
            change.save()
            return list(_publish_change(change)["reactions"])
    except _Unchanged:  # the number is given back with the rollback
        return reaction_summary(Reaction.objects.filter(message_id=message_id))


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
