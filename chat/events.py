"""Channel-layer events of chat rooms, the frames they carry, and the room's group name."""

from typing import Any

from realtime.events import encode

ROOM_MESSAGE = "room.message"
ROOM_TYPING = "room.typing"
ROOM_PRESENCE = "room.presence"
ROOM_READ = "room.read"
ROOM_REMOVED = "room.removed"


def room_group(room_id: int) -> str:
    """The group of every socket subscribed to one room: ``room.<id>`` (ids only, never input)."""
    return f"room.{int(room_id)}"


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
