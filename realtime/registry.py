"""What each app adds to the one socket: its frames, the events it accepts, its lifecycle hooks.

An app's ``ws_handlers`` module builds a :class:`Handlers` and passes it to :func:`register`;
``realtime.apps.RealtimeConfig.ready`` imports every installed app's ``ws_handlers`` module, so
realtime never imports an app. Adding a frame is one model, one handler and one table line, in
one app.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel

from .frames import Ack, Error, Frame, Hello, Ping, Pong

if TYPE_CHECKING:
    from .consumer import Socket

CommandHandler = Callable[["Socket", Any], Awaitable[None]]
EventHandler = Callable[["Socket", dict[str, Any]], Awaitable[None]]
Hook = Callable[["Socket"], Awaitable[None]]


@dataclass(frozen=True)
class Handlers:
    """One app's part of the protocol.

    - ``commands``: client frame type → ``(model, handler)``; the model's ``type`` literal must
      equal the key. The handler gets the socket and the parsed frame; it answers with
      ``socket.ack``/``socket.error`` or raises ``realtime.errors.CommandError``.
    - ``events``: channel-layer event type (``"notification.created"``) → handler of
      ``(socket, event)``.
    - ``server_frames``: the server→client frame models the app sends (documented in the
      AsyncAPI document).
    - ``on_disconnect``: called once when a socket that was accepted closes.
    - ``on_activity``: called at most once a minute per socket while it sends frames.
    """

    commands: Mapping[str, tuple[type[Frame], CommandHandler]] = field(default_factory=dict)
    events: Mapping[str, EventHandler] = field(default_factory=dict)
    server_frames: Sequence[type[BaseModel]] = ()
    on_disconnect: Hook | None = None
    on_activity: Hook | None = None


class Registry:
    """Every registered app's :class:`Handlers`, merged; one per process (:data:`registry`)."""

    def __init__(self) -> None:
        self.models: dict[str, type[Frame]] = {}
        self.commands: dict[str, CommandHandler] = {}
        self.events: dict[str, EventHandler] = {}
        self.server_frames: list[type[BaseModel]] = []
        self.server_types: set[str] = set()
        self.on_disconnect: list[Hook] = []
        self.on_activity: list[Hook] = []

    def register(self, handlers: Handlers) -> None:
        """Add an app's handlers. Raises ``ImproperlyConfigured`` for a frame or event type
        that is already registered, or a model whose ``type`` literal differs from its key."""
        for kind, (model, handler) in handlers.commands.items():
            declared = get_args(model.model_fields["type"].annotation)
            if declared != (kind,):
                raise ImproperlyConfigured(f"frame {kind!r}: {model.__name__}.type is {declared}")
            if kind in self.models:
                raise ImproperlyConfigured(f"frame type {kind!r} is registered twice")
            self.models[kind] = model
            self.commands[kind] = handler
        for kind, event_handler in handlers.events.items():
            if kind in self.events:
                raise ImproperlyConfigured(f"event type {kind!r} is registered twice")
            self.events[kind] = event_handler
        for frame_model in handlers.server_frames:
            if frame_model not in self.server_frames:
                self.server_frames.append(frame_model)
                self.server_types.update(get_args(frame_model.model_fields["type"].annotation))
        if handlers.on_disconnect is not None:
            self.on_disconnect.append(handlers.on_disconnect)
        if handlers.on_activity is not None:
            self.on_activity.append(handlers.on_activity)


registry = Registry()


def register(handlers: Handlers) -> None:
    """Add an app's handlers to the process's :data:`registry` (call from ``ws_handlers``)."""
    registry.register(handlers)


async def _ping(socket: "Socket", frame: Ping) -> None:
    await socket.send_frame({"type": "pong", "ref": frame.ref})


register(Handlers(commands={"ping": (Ping, _ping)}, server_frames=[Hello, Pong, Ack, Error]))
