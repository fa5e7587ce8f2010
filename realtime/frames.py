"""Frames as declared schemas: the base of every client and server frame, the transport's own
frames, and the parser (docs/protocol.md, "Frames").

A client frame is a pydantic model with a ``type`` literal; the apps' ``ws_handlers`` modules
declare theirs and register them (``realtime.registry``). Server frames are models too: they are
what the AsyncAPI document (``realtime.asyncapi``) is generated from, while the hot path builds
the same shapes as dicts and encodes each once (``realtime.events.encode``).

Parsing never raises: it returns a frame model or a :class:`FrameError` carrying the error code
(``invalid_json``, ``invalid_message``) and the client's ``ref`` when one was readable.
"""

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .protocol import ErrorCode

# A ``ref`` is echoed back verbatim: a short string or a JSON-safe integer.
Ref = Annotated[str, Field(max_length=128)] | Annotated[int, Field(ge=-(2**53), le=2**53)] | None
BigId = Annotated[int, Field(ge=0, le=2**63 - 1)]
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Frame(BaseModel):
    """A client→server frame. Unknown extra fields are ignored (forward compatibility)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    ref: Ref = None


class ServerFrame(BaseModel):
    """A server→client frame, as documented; subclasses give ``type`` and the fields."""

    model_config = ConfigDict(extra="forbid")


class Ping(Frame):
    """``ping`` → ``pong``."""

    type: Literal["ping"]


class UserRef(BaseModel):
    """``{id, username}``: how a user appears inside frames."""

    id: int
    username: str


class Hello(ServerFrame):
    """Always the first frame of an accepted socket."""

    type: Literal["hello"]
    user: UserRef
    session_id: str | None
    connection_id: str
    heartbeat: int = Field(description="seconds between the server's pings")
    expires_at: str | None = Field(description="access token expiry (ISO 8601), or null")


class Pong(ServerFrame):
    """The answer to ``ping``."""

    type: Literal["pong"]
    ref: Ref = None


class Ack(ServerFrame):
    """A command's success: ``ref`` plus the command's result fields."""

    model_config = ConfigDict(extra="allow")
    type: Literal["ack"]
    ref: Ref = None


class Error(ServerFrame):
    """A refused frame; the socket stays open."""

    model_config = ConfigDict(extra="allow")
    type: Literal["error"]
    code: ErrorCode
    detail: str
    ref: Ref = None


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


def parse(text: str, models: dict[str, type[Frame]]) -> Frame | FrameError:
    """Parse one text frame into the model its ``type`` names in ``models``, or say why not."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return FrameError(ErrorCode.INVALID_JSON, "The frame is not valid JSON.")
    ref = _ref_of(data)
    if not isinstance(data, dict):
        return FrameError(ErrorCode.INVALID_MESSAGE, "A frame must be a JSON object.", ref)
    kind = data.get("type")
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        return FrameError(ErrorCode.INVALID_MESSAGE, "Unknown or missing frame type.", ref)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "frame"
        return FrameError(ErrorCode.INVALID_MESSAGE, f"{where}: {first['msg']}", ref)
    except RecursionError:
        return FrameError(ErrorCode.INVALID_MESSAGE, "The frame is nested too deeply.", ref)
