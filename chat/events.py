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


def presence_group(room_id: int) -> str:
    """The group of the sockets that get a room's presence diffs: ``presence.<id>``."""
    return f"presence.{int(room_id)}"


def room_message(payload: dict[str, Any], payload_text: str | None = None) -> dict[str, Any]:
    """Event for a stored chat message; ``payload`` is ``serializers.message_payload`` output,
    ``payload_text`` the same already encoded (it is then not encoded again).

    ``room`` and ``id`` ride beside the frame so a socket can drop a message of a room it left
    and one it already replayed (``subscribe since``) without decoding ``text``.
    """
    room = int(payload["room"])
    body = payload_text if payload_text is not None else encode(payload)
    return {
        "type": ROOM_MESSAGE,
        "room": room,
        "id": payload["id"],
        "text": f'{{"type":"message","room":{room},"message":{body}}}',
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


def room_presence(*, room_id: int, joined: list[int], left: list[int]) -> dict[str, Any]:
    """``presence {room, joined: [ids], left: [ids]}``: the room's changes over one window
    (``chat.presence``), to ``presence.<room>``. ``users`` rides beside the frame so that a
    diff about nobody but a socket's own user is not sent to that user's sockets."""
    return {
        "type": ROOM_PRESENCE,
        "room": room_id,
        "users": joined + left,
        "text": encode({"type": "presence", "room": room_id, "joined": joined, "left": left}),
    }


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
