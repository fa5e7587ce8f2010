"""What notifications adds to the socket: ``resume`` and ``notification.read`` frames, and the
live ``notification`` and ``notification.read`` events of the user's group (docs/protocol.md)."""

from collections import deque
from typing import Annotated, Any, Literal

from channels.db import database_sync_to_async
from pydantic import BaseModel, Field, model_validator

from realtime.consumer import Socket
from realtime.events import encode
from realtime.frames import BigId, Frame, RowId, ServerFrame
from realtime.registry import Handlers, register

from . import events, selectors, services
from .serializers import notification_payload

_RESUME_PAGE = 500  # notifications per query of a ``resume``
_SENT_MEMORY = 2048  # recent seqs remembered per socket, to never send one twice


class Resume(Frame):
    """``resume {notifications_since}`` → every notification with a higher ``seq``, then
    ``ack {count}``."""

    type: Literal["resume"]
    notifications_since: BigId


class NotificationRead(Frame):
    """``notification.read {ids}`` or ``{all: true}`` → ``ack {unread_count}``."""

    type: Literal["notification.read"]
    ids: Annotated[list[RowId], Field(max_length=1000)] | None = None
    all: bool = False

    @model_validator(mode="after")
    def _ids_or_all(self) -> "NotificationRead":
        if (self.ids is None) == (not self.all):
            raise ValueError("give either ids or all: true")
        return self


class NotificationBody(BaseModel):
    """A stored notification, as ``GET /api/notifications/`` lists it."""

    id: int
    seq: int = Field(description="rises by 1 per user, without gaps")
    title: str
    body: str
    data: dict[str, Any]
    created_at: str
    read_at: str | None


class NotificationFrame(ServerFrame):
    """A notification for this socket's user: live, or replayed by ``resume``."""

    type: Literal["notification"]
    notification: NotificationBody


class NotificationReadFrame(ServerFrame):
    """The user read some (``ids``) or all (``all: true``) notifications, on any socket."""

    type: Literal["notification.read"]
    ids: list[int] | None = None
    all: bool | None = None
    unread_count: int


class Sent:
    """The ``seq``s this socket sent lately, so a ``resume`` and a live event that cross send
    each notification once."""

    def __init__(self) -> None:
        self.seqs: deque[int] = deque(maxlen=_SENT_MEMORY)

    def first_time(self, seq: int) -> bool:
        """Whether ``seq`` was not sent yet (and note it as sent)."""
        if seq in self.seqs:
            return False
        self.seqs.append(seq)
        return True


def _replay_page(user_id: int, since: int) -> list[tuple[int, str]]:
    page = selectors.notifications_since(user_id=user_id, seq=since, limit=_RESUME_PAGE)
    return [
        (n.seq, encode({"type": "notification", "notification": notification_payload(n)}))
        for n in page
    ]


async def resume(socket: Socket, frame: Resume) -> None:
    """Send every notification with ``seq`` above ``notifications_since``, in order, page by
    page; then ``ack {count}``."""
    sent = socket.state(Sent)
    since, count = frame.notifications_since, 0
    while True:
        page = await database_sync_to_async(_replay_page)(socket.user.pk, since)
        for seq, text in page:
            if sent.first_time(seq):
                await socket.send_text(text)
                count += 1
        if len(page) < _RESUME_PAGE:
            break
        since = page[-1][0]
    await socket.ack(frame.ref, count=count)


async def notification_read(socket: Socket, frame: NotificationRead) -> None:
    """Mark read, as the REST routes do; ``ack {unread_count}``."""
    if frame.all:
        unread = await database_sync_to_async(services.notification_mark_all_read)(
            user_id=socket.user.pk
        )
    else:
        unread = await database_sync_to_async(services.notification_mark_read)(
            user_id=socket.user.pk, ids=frame.ids or []
        )
    await socket.ack(frame.ref, unread_count=unread)


async def on_created(socket: Socket, event: dict[str, Any]) -> None:
    """A stored notification: send it unless this socket already did."""
    if socket.state(Sent).first_time(event["seq"]):
        await socket.send_text(event["text"])


async def on_read(socket: Socket, event: dict[str, Any]) -> None:
    """Read state changed: pass it on."""
    await socket.send_text(event["text"])


register(
    Handlers(
        commands={
            "resume": (Resume, resume),
            "notification.read": (NotificationRead, notification_read),
        },
        events={events.NOTIFICATION_CREATED: on_created, events.NOTIFICATION_READ: on_read},
        server_frames=[NotificationFrame, NotificationReadFrame],
    )
)
