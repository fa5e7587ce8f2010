"""Event types sent over the channel layer, and the frames they carry to clients.

An event is ``{"type": "<prefix>.<name>", ...primitives}`` (STYLE rules 6, 7): the consumer's
handler is the type with dots as underscores. Frames meant for clients are encoded to JSON once,
here, and carried as ``text`` so that a fan-out to N sockets costs one encoding, not N.
"""

import json
from typing import Any

NOTIFICATION_CREATED = "notification.created"
NOTIFICATION_READ = "notification.read"
SESSION_CLOSED = "session.closed"
ROOM_MESSAGE = "room.message"
ROOM_TYPING = "room.typing"
ROOM_PRESENCE = "room.presence"
ROOM_READ = "room.read"
ROOM_REMOVED = "room.removed"


def encode(frame: dict[str, Any]) -> str:
    """Encode a server→client frame (CONTRACT §3.2) as compact JSON text."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def notification_created(payload: dict[str, Any]) -> dict[str, Any]:
    """Event for a stored notification; ``payload`` is ``NotificationSerializer`` output."""
    return {
        "type": NOTIFICATION_CREATED,
        "seq": payload["seq"],
        "text": encode({"type": "notification", "notification": payload}),
    }


def notification_read(*, ids: list[int] | None, unread_count: int) -> dict[str, Any]:
    """Event telling every socket of a user which notifications are now read."""
    frame: dict[str, Any] = {"type": "notification.read"}
    if ids is None:
        frame["all"] = True
    else:
        frame["ids"] = ids
    frame["unread_count"] = unread_count
    return {"type": NOTIFICATION_READ, "text": encode(frame)}


def session_closed(*, code: int) -> dict[str, Any]:
    """Event closing every socket of a login session with ``code`` (CONTRACT §3.3, §5)."""
    return {"type": SESSION_CLOSED, "code": code}


def room_message(payload: dict[str, Any]) -> dict[str, Any]:
    """Event for a stored chat message; ``payload`` is ``MessageSerializer`` output.

    ``room`` and ``id`` ride beside the frame so a socket can drop a message of a room it left
    and one it already replayed (``subscribe since``) without decoding ``text``.
    """
    return {
        "type": ROOM_MESSAGE,
        "room": payload["room"],
        "id": payload["id"],
        "text": encode({"type": "message", "room": payload["room"], "message": payload}),
    }


def room_typing(*, room_id: int, user_id: int, username: str) -> dict[str, Any]:
    """Ephemeral ``typing`` event; ``user`` lets the typist's own sockets skip it."""
    return {
        "type": ROOM_TYPING,
        "room": room_id,
        "user": user_id,
        "text": encode(
            {"type": "typing", "room": room_id, "user": {"id": user_id, "username": username}}
        ),
    }


def room_presence(
    *, room_id: int, joined: int | None = None, left: int | None = None, origin: str = ""
) -> dict[str, Any]:
    """``presence {room, joined}`` or ``{room, left}``: a user's first socket subscribed, or
    their last one went. ``origin`` is the channel name of the socket that caused it (skipped:
    it already has the ``online`` list), or ``""``."""
    frame: dict[str, Any] = {"type": "presence", "room": room_id}
    if joined is not None:
        frame["joined"] = joined
    else:
        frame["left"] = left
    return {"type": ROOM_PRESENCE, "room": room_id, "origin": origin, "text": encode(frame)}


def room_read(*, room_id: int, user_id: int, username: str, message_id: int) -> dict[str, Any]:
    """``room.read {room, user {id, username}, message_id}``: a member's new read position."""
    return {
        "type": ROOM_READ,
        "room": room_id,
        "text": encode(
            {
                "type": "room.read",
                "room": room_id,
                "user": {"id": user_id, "username": username},
                "message_id": message_id,
            }
        ),
    }


def room_removed(*, room_id: int) -> dict[str, Any]:
    """Event to ``user.<id>``: the user is no longer a member; every socket leaves the room."""
    return {"type": ROOM_REMOVED, "room": room_id}
