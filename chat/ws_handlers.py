"""What chat adds to the socket: room subscriptions with replay, sending, typing and read
positions, and the live events of each subscribed room (docs/protocol.md)."""

import time
from collections import deque
from typing import Annotated, Any, Literal
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from realtime import resilience
from realtime.consumer import Socket
from realtime.events import encode
from realtime.frames import BigId, Frame, RowId, ServerFrame, UserRef
from realtime.protocol import ErrorCode
from realtime.registry import Handlers, register
from realtime.text import check_text

from . import events, presence, selectors, services
from .models import MESSAGE_MAX_LENGTH
from .serializers import message_payload

_REPLAY_PAGE = 500  # messages per query of a ``subscribe since`` replay
_REPLAYED_MEMORY = 4096  # replayed message ids remembered per room, newest kept
_REPLAYED_FOR = 60.0  # s after a replay during which live copies of its messages are dropped


# Client frames -----------------------------------------------------------------------------


class Subscribe(Frame):
    """``subscribe {room, since?}`` → ``ack {room, presence}``, the messages after ``since``,
    then live ones; ``error forbidden`` for a non-member or a room that does not exist."""

    type: Literal["subscribe"]
    room: RowId
    since: BigId | None = None


class PresenceWatch(Frame):
    """``presence.watch {room}`` (a subscribed room) → ``ack {room, online, online_count}`` with
    every online member, then the room's presence diffs, whatever its size."""

    type: Literal["presence.watch"]
    room: RowId


class Unsubscribe(Frame):
    """``unsubscribe {room}`` → ``ack {room}``; nothing more of the room reaches the socket."""

    type: Literal["unsubscribe"]
    room: RowId


class MessageSend(Frame):
    """``message.send {room, body, client_id}`` → ``ack {message}``.

    ``body`` is trimmed, then 1..4000 characters (code points) without control characters
    (``realtime.text``); ``client_id`` is a uuid string, unique per author: a retry with the
    same one stores nothing twice.
    """

    type: Literal["message.send"]
    room: RowId
    body: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MESSAGE_MAX_LENGTH),
        AfterValidator(check_text),
    ]
    # JSON has no uuid type: accept its canonical string form despite the model's strict mode.
    client_id: Annotated[UUID, Field(strict=False)]


class Typing(Frame):
    """``typing {room}`` → ``typing`` to the room's other users; no ``ack``."""

    type: Literal["typing"]
    room: RowId


class RoomRead(Frame):
    """``room.read {room, message_id}`` → ``ack {room, message_id}`` (the stored position)."""

    type: Literal["room.read"]
    room: RowId
    message_id: RowId


# Server frames -----------------------------------------------------------------------------


class MessageBody(BaseModel):
    """A stored message, as ``GET /api/rooms/{id}/messages/`` lists it."""

    id: int
    room: int
    author: UserRef
    body: str
    created_at: str
    client_id: str


class MessageFrame(ServerFrame):
    """A message of a subscribed room: live, or replayed by ``subscribe since``."""

    type: Literal["message"]
    room: int
    message: MessageBody


class TypingFrame(ServerFrame):
    """Another user is typing in a subscribed room (never stored)."""

    type: Literal["typing"]
    room: int
    user: UserRef


class PresenceFrame(ServerFrame):
    """Who is online in a room: ``online`` (at most ``HERALD_PRESENCE_PAGE`` ids in a large
    room) and ``online_count`` after ``subscribe``; then the changes of each window,
    ``joined`` and ``left``."""

    type: Literal["presence"]
    room: int
    online: list[int] | None = None
    online_count: int | None = None
    joined: list[int] | None = None
    left: list[int] | None = None


class RoomReadFrame(ServerFrame):
    """A member read a subscribed room up to ``message_id``."""

    type: Literal["room.read"]
    room: int
    user: UserRef
    message_id: int


# Per-socket state ----------------------------------------------------------------------------


class ReplayedIds:
    """Ids a ``subscribe since`` replay sent for one room (the newest ``_REPLAYED_MEMORY``).

    The socket joins ``room.<id>`` before it reads the replay, so a message committed in
    between arrives twice: in the replay and, queued, live. The live copy is dropped when its id
    is here. Only messages published while the replay ran can be such copies, and they are the
    newest replayed ones (a room's ids commit in order), so a bounded set kept for
    ``_REPLAYED_FOR`` s after the replay suffices. Not a high-water mark: a message with a lower
    id than one already sent may still arrive live (two processes' publishes can cross), and
    must not be dropped.
    """

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.ids: set[int] = set()
        self.renew()

    def renew(self) -> None:
        """Keep the ids for ``_REPLAYED_FOR`` s from now."""
        self.until = time.monotonic() + _REPLAYED_FOR

    def expired(self) -> bool:
        """Whether the ids are older than ``_REPLAYED_FOR`` s."""
        return time.monotonic() > self.until

    def add(self, message_id: int) -> None:
        """Remember one replayed id (forgetting the oldest past ``_REPLAYED_MEMORY``)."""
        if message_id in self.ids:
            return
        self.ids.add(message_id)
        self.order.append(message_id)
        if len(self.order) > _REPLAYED_MEMORY:
            self.ids.discard(self.order.popleft())

    def __contains__(self, message_id: int) -> bool:
        return message_id in self.ids


class Rooms:
    """The rooms one socket is subscribed to, and their recent replays."""

    def __init__(self) -> None:
        self.subscribed: set[int] = set()
        self.replayed: dict[int, ReplayedIds] = {}


def _rooms(socket: Socket) -> Rooms:
    return socket.state(Rooms)  # type: ignore[return-value]


def _subscribed(socket: Socket, room: int) -> bool:
    rooms = socket.state(Rooms, create=False)
    return rooms is not None and room in rooms.subscribed


async def _join(socket: Socket, room: int) -> None:
    await socket.join(events.room_group(room), resilience.JOIN_TIMEOUT)
    _rooms(socket).subscribed.add(room)


async def _leave(socket: Socket, room: int) -> None:
    rooms = _rooms(socket)
    await socket.leave(events.room_group(room))
    await socket.leave(events.presence_group(room))
    rooms.subscribed.discard(room)
    rooms.replayed.pop(room, None)
    await presence.aleave(room_id=room, user_id=socket.user.pk, connection_id=socket.connection_id)


def _message_page(room_id: int, since: int) -> list[tuple[int, str]]:
    page = selectors.room_messages_since(room_id=room_id, since=since, limit=_REPLAY_PAGE)
    return [
        (m.pk, encode({"type": "message", "room": room_id, "message": message_payload(m)}))
        for m in page
    ]


async def _replay(socket: Socket, room: int, since: int) -> None:
    """Send every message of the room with ``id > since``, oldest first, page by page."""
    replayed = _rooms(socket).replayed.setdefault(room, ReplayedIds())
    while True:
        page = await database_sync_to_async(_message_page)(room, since)
        for message_id, text in page:
            replayed.add(message_id)
            await socket.send_text(text)
        if len(page) < _REPLAY_PAGE:
            break
        since = page[-1][0]
    replayed.renew()


def _message_send(**kwargs: Any) -> str:
    return str(services.room_message_send(**kwargs).payload_text)  # type: ignore[attr-defined]


# Command handlers ----------------------------------------------------------------------------


async def subscribe(socket: Socket, frame: Subscribe) -> None:
    """Join the room's group, mark the socket online, ``ack``, then replay what came after
    ``since``. In a room of at most ``HERALD_PRESENCE_FULL_LIMIT`` members the socket also gets
    presence diffs; in a larger one only after ``presence.watch``."""
    size = await database_sync_to_async(selectors.room_size_for_member)(
        room_id=frame.room, user_id=socket.user.pk
    )
    if size is None:
        raise services.RoomNotFound
    # Join the group before reading the replay: a message committed meanwhile is then
    # both replayed and queued live (dropped by ReplayedIds), never neither.
    await _join(socket, frame.room)
    small = size <= settings.HERALD["PRESENCE_FULL_LIMIT"]
    if small:
        await socket.join(events.presence_group(frame.room), resilience.JOIN_TIMEOUT)
    count, online = await presence.ajoin(
        room_id=frame.room,
        user_id=socket.user.pk,
        connection_id=socket.connection_id,
        limit=size if small else settings.HERALD["PRESENCE_PAGE"],
    )
    await socket.ack(frame.ref, room=frame.room, presence=online, online_count=count)
    await socket.send_frame(
        {"type": "presence", "room": frame.room, "online": online, "online_count": count}
    )
    if frame.since is not None:
        await _replay(socket, frame.room, frame.since)


async def presence_watch(socket: Socket, frame: PresenceWatch) -> None:
    """Start the room's presence diffs; ``ack {room, online, online_count}`` with every online
    member (read after joining the diffs' group, so no change falls between)."""
    if not _subscribed(socket, frame.room):
        raise services.RoomNotFound("Subscribe to the room first.")
    await socket.join(events.presence_group(frame.room), resilience.JOIN_TIMEOUT)
    online = await presence.aonline(room_id=frame.room)
    await socket.ack(frame.ref, room=frame.room, online=online, online_count=len(online))


async def unsubscribe(socket: Socket, frame: Unsubscribe) -> None:
    """Leave the room (if subscribed); ``ack {room}`` either way."""
    if _subscribed(socket, frame.room):
        await _leave(socket, frame.room)
    await socket.ack(frame.ref, room=frame.room)


async def message_send(socket: Socket, frame: MessageSend) -> None:
    """Store the message (the service publishes it), then ``ack {message}``: the message's
    JSON, encoded once by the service, goes into the ack as it is."""
    payload_text = await database_sync_to_async(_message_send)(
        room_id=frame.room,
        author_id=socket.user.pk,
        body=frame.body,
        client_id=frame.client_id,
        author_username=socket.user.username,
    )
    await socket.send_text(f'{{"type":"ack","ref":{encode(frame.ref)},"message":{payload_text}}}')


async def typing(socket: Socket, frame: Typing) -> None:
    """Tell the room's other users (throttled to one per 2 s per user and room)."""
    if not _subscribed(socket, frame.room) and not await database_sync_to_async(
        selectors.room_is_member
    )(room_id=frame.room, user_id=socket.user.pk):
        raise services.RoomNotFound
    await presence.atyping(
        room_id=frame.room, user_id=socket.user.pk, username=socket.user.username
    )


async def room_read(socket: Socket, frame: RoomRead) -> None:
    """Store the read position; ``ack {room, message_id}`` with the position after."""
    position = await database_sync_to_async(services.room_read)(
        room_id=frame.room, user_id=socket.user.pk, message_id=frame.message_id
    )
    await socket.ack(frame.ref, room=frame.room, message_id=position)


# Event handlers ------------------------------------------------------------------------------


async def on_message(socket: Socket, event: dict[str, Any]) -> None:
    """A stored message: send it unless the room was left or the replay already sent it."""
    room = event["room"]
    if not _subscribed(socket, room):  # queued before this socket left the room
        return
    rooms = _rooms(socket)
    replayed = rooms.replayed.get(room)
    if replayed is not None:
        if replayed.expired():
            del rooms.replayed[room]
        elif event["id"] in replayed:
            return
    await socket.send_text(event["text"])


async def on_typing(socket: Socket, event: dict[str, Any]) -> None:
    """Not echoed to the typist: none of their own sockets (tabs) shows it."""
    if _subscribed(socket, event["room"]) and event["user"] != socket.user.pk:
        await socket.send_text(event["text"])


async def on_presence(socket: Socket, event: dict[str, Any]) -> None:
    """A window's presence changes of a room this socket watches (``presence.<room>``), unless
    they are only about this socket's own user (who knows they are online)."""
    if _subscribed(socket, event["room"]) and event["users"] != [socket.user.pk]:
        await socket.send_text(event["text"])


async def on_read(socket: Socket, event: dict[str, Any]) -> None:
    """A member's new read position."""
    if _subscribed(socket, event["room"]):
        await socket.send_text(event["text"])


async def on_removed(socket: Socket, event: dict[str, Any]) -> None:
    """The user left or was removed: stop the room at once, and say so (``forbidden``)."""
    room = event["room"]
    if _subscribed(socket, room):
        await _leave(socket, room)
        await socket.error(
            ErrorCode.FORBIDDEN, "You are no longer a member of this room.", None, room=room
        )


async def on_disconnect(socket: Socket) -> None:
    """The socket's groups are already left; presence still counts it in each room."""
    rooms = socket.state(Rooms, create=False)
    for room in list(rooms.subscribed if rooms else ()):
        await _leave(socket, room)


register(
    Handlers(
        commands={
            "subscribe": (Subscribe, subscribe),
            "unsubscribe": (Unsubscribe, unsubscribe),
            "presence.watch": (PresenceWatch, presence_watch),
            "message.send": (MessageSend, message_send),
            "typing": (Typing, typing),
            "room.read": (RoomRead, room_read),
        },
        events={
            events.ROOM_MESSAGE: on_message,
            events.ROOM_TYPING: on_typing,
            events.ROOM_PRESENCE: on_presence,
            events.ROOM_READ: on_read,
            events.ROOM_REMOVED: on_removed,
        },
        server_frames=[MessageFrame, TypingFrame, PresenceFrame, RoomReadFrame],
        on_disconnect=on_disconnect,
    )
)
