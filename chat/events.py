"""Channel-layer events of chat rooms, the frames they carry, and the room's group name."""

from typing import Any

from realtime.events import encode

ROOM_MESSAGE = "room.message"
ROOM_TYPING = "room.typing"
ROOM_PRESENCE = "room.presence"
ROOM_READ = "room.read"
ROOM_REMOVED = "room.removed"
USER_ROOM = "room.listed"  # room.joined / room.updated to a user's group


def room_group(room_id: int) -> str:
    """The group of every socket subscribed to one room: ``room.<id>`` (ids only, never input)."""
    return f"room.{int(room_id)}"


def presence_group(room_id: int) -> str:
    """The group of the sockets that get a room's presence diffs: ``presence.<id>``."""
    return f"presence.{int(room_id)}"


def room_message(*, room_id: int, seq: int, payload_text: str) -> dict[str, Any]:
    """Event for a new message: ``message {room, seq, message}``; ``payload_text`` is the
    message's ``serializers.message_payload`` already encoded (it is not encoded again).

    ``room`` and ``seq`` ride beside the frame so a socket can drop a change of a room it left
    and one its ``subscribe since`` replay already sent, without decoding ``text``.
    """
    return {
        "type": ROOM_MESSAGE,
        "room": room_id,
        "seq": seq,
        "text": f'{{"type":"message","room":{int(room_id)},"seq":{int(seq)},"message":{payload_text}}}',
    }


def room_change(*, room_id: int, seq: int, frame: dict[str, Any]) -> dict[str, Any]:
    """Event for any other change of the room's feed (``serializers.feed_frame``): delivered
    and de-duplicated like :func:`room_message`."""
    return {"type": ROOM_MESSAGE, "room": room_id, "seq": seq, "text": encode(frame)}


def room_listed(
    kind: str, shared_text: str, unread_count: int, last_read_message_id: int | None
) -> dict[str, Any]:
    """Event to ``user.<id>``: ``room.joined`` or ``room.updated`` ``{room}``, the room as that
    user sees it. ``shared_text`` is the room's fields other than the two per-member ones,
    encoded once for every member (``selectors.room_for_members``)."""
    per_member = encode(
        {"unread_count": unread_count, "last_read_message_id": last_read_message_id}
    )
    return {
        "type": USER_ROOM,
        "text": f'{{"type":{encode(kind)},"room":{shared_text[:-1]},{per_member[1:]}}}',
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
    """Event to ``user.<id>``: the user is no longer a member; every socket leaves the room and
    gets ``room.left {room: id}``."""
    return {
        "type": ROOM_REMOVED,
        "room": room_id,
        "text": encode({"type": "room.left", "room": room_id}),
    }
