"""Client→server frames as declared schemas (CONTRACT §3.2), and the parser that applies them.

Parsing never raises: it returns a frame model or a :class:`FrameError` carrying the contract's
error code (``invalid_json``, ``invalid_message``) and the client's ``ref`` when one was readable.
"""

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .models import MESSAGE_MAX_LENGTH

# A ``ref`` is echoed back verbatim: a short string or a JSON-safe integer.
Ref = Annotated[str, Field(max_length=128)] | Annotated[int, Field(ge=-(2**53), le=2**53)] | None
BigId = Annotated[int, Field(ge=0, le=2**63 - 1)]
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Frame(BaseModel):
    """Fields every client frame may carry. Unknown extra fields are ignored (forward compat)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    ref: Ref = None


class Ping(Frame):
    """``ping`` → ``pong``."""

    type: Literal["ping"]


class Resume(Frame):
    """``resume {notifications_since}`` → every notification with a higher ``seq``, then ``ack``."""

    type: Literal["resume"]
    notifications_since: BigId


class NotificationRead(Frame):
    """``notification.read {ids}`` or ``{all: true}`` → ``ack {unread_count}``."""

    type: Literal["notification.read"]
    ids: (
        Annotated[list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Field(max_length=1000)] | None
    ) = None
    all: bool = False

    @model_validator(mode="after")
    def _ids_or_all(self) -> "NotificationRead":
        if (self.ids is None) == (not self.all):
            raise ValueError("give either ids or all: true")
        return self


class AuthRefresh(Frame):
    """``auth.refresh {token}``: a new access JWT of the same user and login session."""

    type: Literal["auth.refresh"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class Subscribe(Frame):
    """``subscribe {room, since?}`` → ``ack {room, presence}``, the messages after ``since``,
    then live ones; ``error forbidden`` for a non-member or a room that does not exist."""

    type: Literal["subscribe"]
    room: RowId
    since: BigId | None = None


class Unsubscribe(Frame):
    """``unsubscribe {room}`` → ``ack {room}``; nothing more of the room reaches the socket."""

    type: Literal["unsubscribe"]
    room: RowId


class MessageSend(Frame):
    """``message.send {room, body, client_id}`` → ``ack {message}`` (CONTRACT §3.2).

    ``body`` is trimmed, then 1..4000 characters (code points); ``client_id`` is a uuid string,
    unique per author: a retry with the same one stores nothing twice.
    """

    type: Literal["message.send"]
    room: RowId
    body: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MESSAGE_MAX_LENGTH)
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


FRAMES: tuple[type[Frame], ...] = (
    Ping,
    Resume,
    NotificationRead,
    AuthRefresh,
    Subscribe,
    Unsubscribe,
    MessageSend,
    Typing,
    RoomRead,
)
ClientFrame = Annotated[
    Ping
    | Resume
    | NotificationRead
    | AuthRefresh
    | Subscribe
    | Unsubscribe
    | MessageSend
    | Typing
    | RoomRead,
    Field(discriminator="type"),
]
_adapter: TypeAdapter[Any] = TypeAdapter(ClientFrame)
TYPES = frozenset(model.model_fields["type"].annotation.__args__[0] for model in FRAMES)


@dataclass(frozen=True)
class FrameError:
    """A frame that could not be parsed: ``code`` and ``detail`` for the ``error`` frame."""

    code: str
    detail: str
    ref: Any = None


def _ref_of(data: Any) -> Any:
    ref = data.get("ref") if isinstance(data, dict) else None
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        return None
    if isinstance(ref, str) and len(ref) > 128 or isinstance(ref, int) and abs(ref) > 2**53:
        return None
    if isinstance(ref, str) and not ref.isascii():
        try:
            ref.encode()
        except UnicodeEncodeError:
            # A lone surrogate escape ("\ud800"): the error frame echoing it could not be
            # encoded as UTF-8, and daphne would drop the socket with 1011 instead.
            return None
    return ref


def parse(text: str) -> Frame | FrameError:
    """Parse one text frame into a :data:`ClientFrame`, or say why not."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return FrameError("invalid_json", "The frame is not valid JSON.")
    ref = _ref_of(data)
    if not isinstance(data, dict):
        return FrameError("invalid_message", "A frame must be a JSON object.", ref)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        return FrameError("invalid_message", "Unknown or missing frame type.", ref)
    try:
        return _adapter.validate_python(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        return FrameError("invalid_message", f"{where}: {first['msg']}", ref)
    except RecursionError:
        return FrameError("invalid_message", "The frame is nested too deeply.", ref)
