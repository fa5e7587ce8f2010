"""What chat adds to the socket: room subscriptions with replay of the room's feed, sending,
editing, deleting, reactions, typing and read positions, the live events of each subscribed
room, and the user's room list changes (docs/protocol.md)."""

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
from .models import MESSAGE_MAX_LENGTH, Message
from .serializers import feed_frame, message_payload

_REPLAY_PAGE = 500  # changes per page of a ``subscribe since`` replay


# Client frames -----------------------------------------------------------------------------


class Subscribe(Frame):
    """``subscribe {room, since?}`` → ``ack {room, seq, presence, online_count}``, every change
    of the room with ``seq`` > ``since`` in order, then live ones; ``error forbidden`` for a
    non-member or a room that does not exist."""

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


Body = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MESSAGE_MAX_LENGTH),
    AfterValidator(check_text),
]


class MessageSend(Frame):
    """``message.send {room, body, client_id, reply_to?}`` → ``ack {message}``.

    ``body`` is trimmed, then 1..4000 characters (code points) without control characters
    (``realtime.text``); ``client_id`` is a uuid string, unique per author: a retry with the
    same one stores nothing twice. ``reply_to``: a message of the same room.
    """

    type: Literal["message.send"]
    room: RowId
    body: Body
    # JSON has no uuid type: accept its canonical string form despite the model's strict mode.
    client_id: Annotated[UUID, Field(strict=False)]
    reply_to: RowId | None = None


class MessageEdit(Frame):
    """``message.edit {room, message, body}`` → ``ack {message}`` (after the edit); the author
    only (``forbidden``)."""

    type: Literal["message.edit"]
    room: RowId
    message: RowId
    body: Body


class MessageDelete(Frame):
    """``message.delete {room, message}`` → ``ack {message}`` (the tombstone); the author, the
    room's owners and moderators."""

    type: Literal["message.delete"]
    room: RowId
    message: RowId


class ReactionAdd(Frame):
    """``reaction.add {room, message, emoji}`` → ``ack {message: id, reactions}``; exactly one
    emoji, else ``invalid_message``."""

    type: Literal["reaction.add"]
    room: RowId
    message: RowId
    emoji: Annotated[str, Field(min_length=1, max_length=64)]


class ReactionRemove(Frame):
    """``reaction.remove {room, message, emoji}`` → ``ack {message: id, reactions}``."""

    type: Literal["reaction.remove"]
    room: RowId
    message: RowId
    emoji: Annotated[str, Field(min_length=1, max_length=64)]


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


class Reactions(BaseModel):
    """One emoji's reactions on a message."""

    emoji: str
    count: int
    users: list[int]


class ReplyTo(BaseModel):
    """The message a reply answers: its first 100 characters ("" once deleted)."""

    id: int
    author: UserRef
    excerpt: str
    deleted: bool


class MessageBody(BaseModel):
    """A stored message, as ``GET /api/rooms/{id}/messages/`` lists it."""

    id: int
    room: int
    author: UserRef
    body: str
    created_at: str
    client_id: str
    seq: int
    edited_at: str | None
    deleted: bool
    reactions: list[Reactions]
    reply_to: ReplyTo | None
    mentions: list[UserRef]


class MessageFrame(ServerFrame):
    """A new message of a subscribed room: live, or replayed by ``subscribe since``."""

    type: Literal["message"]
    room: int
    seq: int
    message: MessageBody


class MessageUpdatedFrame(ServerFrame):
    """A message was edited: the whole message after the edit (replayed: as it is now)."""

    type: Literal["message.updated"]
    room: int
    seq: int
    message: MessageBody


class MessageDeletedFrame(ServerFrame):
    """A message was deleted: its tombstone (body "", ``deleted`` true)."""

    type: Literal["message.deleted"]
    room: int
    seq: int
    message: MessageBody


class ReactionFrame(ServerFrame):
    """A reaction was added or removed; ``reactions``: the message's reactions now."""

    type: Literal["reaction"]
    room: int
    seq: int
    message: int
    emoji: str
    user: UserRef
    action: Literal["added", "removed"]
    reactions: list[Reactions]


class MemberJoinedFrame(ServerFrame):
    """A user became a member of the room."""

    type: Literal["member.joined"]
    room: int
    seq: int
    user: UserRef


class MemberLeftFrame(ServerFrame):
    """A member left the room or was removed."""

    type: Literal["member.left"]
    room: int
    seq: int
    user: UserRef


class RoomRenamedFrame(ServerFrame):
    """The room has a new name."""

    type: Literal["room.renamed"]
    room: int
    seq: int
    name: str


class RoomMember(BaseModel):
    """A member in a room object."""

    id: int
    username: str
    role: str
    joined_at: str


class RoomBody(BaseModel):
    """A room as ``GET /api/rooms/{id}/`` shows it to the user."""

    id: int
    name: str
    kind: str
    created_by: int | None
    created_at: str
    seq: int
    members: list[RoomMember]
    unread_count: int
    last_message: MessageBody | None
    last_read_message_id: int | None


class RoomJoinedFrame(ServerFrame):
    """To every socket of a user: they are now a member of ``room`` (added, or a new direct
    room)."""

    type: Literal["room.joined"]
    room: RoomBody


class RoomUpdatedFrame(ServerFrame):
    """To every socket of each member: the room changed (renamed)."""

    type: Literal["room.updated"]
    room: RoomBody


class RoomLeftFrame(ServerFrame):
    """To every socket of a user: they are no longer a member of room ``room`` (an id)."""

    type: Literal["room.left"]
    room: int


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


class Rooms:
    """The rooms one socket is subscribed to, and for each replayed one the highest ``seq``
    its replay sent.

    The socket joins ``room.<id>`` before it reads the replay, so a change committed in between
    arrives twice: in the replay and, queued, live. A room's changes commit in ``seq`` order
    (``services._next_seq`` holds the room's row lock until commit), so the replay sent every
    change with ``since`` < seq ≤ its highest, and a live change at or below that is one of
    them: dropped. Anything above is sent, in whatever order two processes' publishes arrive.
    """

    def __init__(self) -> None:
        self.subscribed: set[int] = set()
        self.replayed: dict[int, int] = {}


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


def _render(room_id: int, item: Any) -> str:
    if isinstance(item, Message):
        frame = {
            "type": "message",
            "room": room_id,
            "seq": item.seq,
            "message": message_payload(item),
        }
        return encode(frame)
    return encode(feed_frame(item))


def _change_page(room_id: int, since: int) -> list[tuple[int, str]]:
    page = selectors.room_changes_since(room_id=room_id, since=since, limit=_REPLAY_PAGE)
    return [(seq, _render(room_id, item)) for seq, item in page]


async def _replay(socket: Socket, room: int, since: int, latest: int) -> None:
    """Send every change of the room with ``seq > since`` in ``seq`` order, page by page.
    ``latest``: the room's seq before the socket joined (a ``since`` beyond it is the
    client's mistake, and must not hold back live changes)."""
    rooms = _rooms(socket)
    rooms.replayed[room] = min(since, latest)
    while True:
        page = await database_sync_to_async(_change_page)(room, since)
        for seq, text in page:
            rooms.replayed[room] = seq
            await socket.send_text(text)
        if len(page) < _REPLAY_PAGE:
            break
        since = page[-1][0]


def _message_send(**kwargs: Any) -> str:
    return str(services.room_message_send(**kwargs).payload_text)  # type: ignore[attr-defined]


# Command handlers ----------------------------------------------------------------------------


async def subscribe(socket: Socket, frame: Subscribe) -> None:
    """Join the room's group, mark the socket online, ``ack``, then replay what came after
    ``since``. In a room of at most ``HERALD_PRESENCE_FULL_LIMIT`` members the socket also gets
    presence diffs; in a larger one only after ``presence.watch``."""
    found = await database_sync_to_async(selectors.room_size_for_member)(
        room_id=frame.room, user_id=socket.user.pk
    )
    if found is None:
        raise services.RoomNotFound
    size, seq = found
    # Join the group before reading the replay: a change committed meanwhile is then both
    # replayed and queued live (dropped by its seq, see Rooms), never neither.
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
    await socket.ack(frame.ref, room=frame.room, seq=seq, presence=online, online_count=count)
    await socket.send_frame(
        {"type": "presence", "room": frame.room, "online": online, "online_count": count}
    )
    if frame.since is not None:
        await _replay(socket, frame.room, frame.since, seq)


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
        reply_to=frame.reply_to,
    )
    await socket.send_text(f'{{"type":"ack","ref":{encode(frame.ref)},"message":{payload_text}}}')


async def message_edit(socket: Socket, frame: MessageEdit) -> None:
    """Edit the user's own message; ``ack {message}`` after the edit."""
    message = await database_sync_to_async(services.message_edit)(
        room_id=frame.room, message_id=frame.message, user_id=socket.user.pk, body=frame.body
    )
    await socket.ack(frame.ref, message=message)


async def message_delete(socket: Socket, frame: MessageDelete) -> None:
    """Delete a message; ``ack {message}`` (the tombstone)."""
    message = await database_sync_to_async(services.message_delete)(
        room_id=frame.room, message_id=frame.message, user_id=socket.user.pk
    )
    await socket.ack(frame.ref, message=message)


async def _reaction(socket: Socket, frame: ReactionAdd | ReactionRemove, add: bool) -> None:
    reactions = await database_sync_to_async(services.reaction_set)(
        room_id=frame.room,
        message_id=frame.message,
        user_id=socket.user.pk,
        emoji=frame.emoji,
        add=add,
    )
    await socket.ack(frame.ref, message=frame.message, reactions=reactions)


async def reaction_add(socket: Socket, frame: ReactionAdd) -> None:
    """Add the user's reaction; ``ack {message, reactions}``."""
    await _reaction(socket, frame, add=True)


async def reaction_remove(socket: Socket, frame: ReactionRemove) -> None:
    """Remove the user's reaction; ``ack {message, reactions}``."""
    await _reaction(socket, frame, add=False)


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


async def on_change(socket: Socket, event: dict[str, Any]) -> None:
    """A stored change of a room's feed: send it unless the room was left or the replay
    already sent it (its ``seq`` is at or below the replay's highest, see :class:`Rooms`)."""
    room = event["room"]
    rooms = socket.state(Rooms, create=False)
    if rooms is None or room not in rooms.subscribed:  # queued before this socket left the room
        return
    replayed = rooms.replayed.get(room)
    if replayed is not None and event["seq"] <= replayed:
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
    """The user left or was removed: stop the room at once and say so (``forbidden`` if it was
    subscribed), then ``room.left`` on every socket of the user."""
    room = event["room"]
    if _subscribed(socket, room):
        await _leave(socket, room)
        await socket.error(
            ErrorCode.FORBIDDEN, "You are no longer a member of this room.", None, room=room
        )
    await socket.send_text(event["text"])


async def on_room_listed(socket: Socket, event: dict[str, Any]) -> None:
    """``room.joined`` / ``room.updated``: the user's room list changed."""
    await socket.send_text(event["text"])


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
            "message.edit": (MessageEdit, message_edit),
            "message.delete": (MessageDelete, message_delete),
            "reaction.add": (ReactionAdd, reaction_add),
            "reaction.remove": (ReactionRemove, reaction_remove),
            "typing": (Typing, typing),
            "room.read": (RoomRead, room_read),
        },
        events={
            events.ROOM_MESSAGE: on_change,
            events.ROOM_TYPING: on_typing,
            events.ROOM_PRESENCE: on_presence,
            events.ROOM_READ: on_read,
            events.ROOM_REMOVED: on_removed,
            events.USER_ROOM: on_room_listed,
        },
        server_frames=[
            MessageFrame,
            MessageUpdatedFrame,
            MessageDeletedFrame,
            ReactionFrame,
            MemberJoinedFrame,
            MemberLeftFrame,
            RoomRenamedFrame,
            RoomJoinedFrame,
            RoomUpdatedFrame,
            RoomLeftFrame,
            TypingFrame,
            PresenceFrame,
            RoomReadFrame,
        ],
        on_disconnect=on_disconnect,
    )
)
