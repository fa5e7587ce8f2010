"""The one WebSocket consumer at ``/ws/`` (docs/protocol.md): lifecycle, limits, parse, route.

Per client frame it does what DRF's ``APIView.dispatch`` does per request: admit (size, rate),
parse into the model the frame's ``type`` names, call the handler an app registered for it
(``realtime.registry``), and map what the handler raised to one answer: ``CommandError`` → an
``error`` frame, an unavailable channel layer → close 4503, anything else → ``server_error``
(logged). Channel-layer events go the same way to the app that registered their type.

Handlers never touch the ORM in the event loop: they call services through
``database_sync_to_async``. Events arrive with their frame already encoded (``text``) and are
written to the socket as they are.
"""

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from datetime import datetime
from typing import Any, TypeVar

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from config.logging import bind_connection

from . import adapters, caps, census, events, frames, metrics, resilience
from .errors import CommandError
from .events import iso
from .groups import session_group, user_group
from .instrumentation import InstrumentedConsumer
from .protocol import SUBPROTOCOL, Close, ErrorCode
from .registry import Handlers, register, registry

logger = logging.getLogger(__name__)

_DRAIN_POLL = 0.05  # s between looks at a socket's outgoing backlog while it is over the bound
_ACTIVITY_EVERY = 60  # s between ``on_activity`` hooks of one socket

T = TypeVar("T")


class TokenBucket:
    """Token bucket: ``rate`` frames/s sustained, ``burst`` at once (``HERALD_WS_RATE`` and
    ``HERALD_WS_BURST``, docs/protocol.md "Errors and limits")."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        """Spend one token; ``False`` when the bucket is empty."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Socket(InstrumentedConsumer, AsyncWebsocketConsumer):
    """One client's socket: its identity, groups and limits, and what handlers may do with it.

    Authentication already happened in the handshake's middleware, which put a
    ``realtime.handshake.Handshake`` in ``scope["herald"]``; ``connect`` only acts on it.
    Handlers use ``user``, ``session_id``, ``connection_id``, ``channel_name`` and the methods
    :meth:`send_frame`, :meth:`send_text`, :meth:`ack`, :meth:`error`, :meth:`join`,
    :meth:`leave`, :meth:`close_with`, :meth:`renew_expiry` and :meth:`state`.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """channels' ``AsyncConsumer.__call__``, with the channel's creation bounded.

        The channel is created with the socket's user and session groups in one step where the
        layer can (``realtime.adapters.PubSubLayer.new_channel_in_groups``: one Redis round
        trip), and not at all for a handshake that will only be refused. It is a Redis round
        trip: with Redis down it would raise (daphne answers HTTP 500) or hang the handshake.
        Instead the handshake is accepted and closed with 4503, so the client reconnects with
        backoff. Meanwhile the socket takes its place under the open-socket caps
        (``realtime.caps``: another round trip, in parallel); over a cap it is accepted only
        to be closed with 4429. Its place is given back however it ends.
        """
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        auth = scope["herald"]
        receivers = [receive]
        admission = None
        if auth.close_code is None:
            refusal, admission = await self._open(auth)
            if refusal is not None:
                await self._refuse(receive, refusal)
                return
            if self.channel_layer is not None:
                receivers.append(self.channel_receive)
        try:
            await self._pump(receivers)
        except StopConsumer:
            pass
        finally:
            resilience.reconnects.untrack(self)
            caps.release(admission)

    async def _open(self, auth: Any) -> tuple[int | None, caps.Admission | None]:
        """Admit the socket under the caps and create its channel, both at once: ``(None,
        admission)``, or ``(close code, None)`` with nothing left behind (4429 over a cap, 4503
        when Redis failed)."""
        groups = [user_group(auth.user.pk), session_group(auth.session_id)]
        admitting = caps.admit(user_id=auth.user.pk, ip=caps.client_ip(self.scope))
        if self.channel_layer is None:
            admitted, created = await asyncio.gather(admitting, _nothing(), return_exceptions=True)
        else:
            creating = resilience.bounded(self._new_channel(groups))
            admitted, created = await asyncio.gather(admitting, creating, return_exceptions=True)
        unexpected = [
            outcome
            for outcome in (admitted, created)
            if isinstance(outcome, BaseException)
            and not isinstance(outcome, resilience.LayerUnavailable)
        ]
        refusal = None
        if isinstance(created, resilience.LayerUnavailable):
            logger.warning("handshake refused with 4503: channel layer unavailable: %s", created)
            refusal = Close.UNAVAILABLE
        elif isinstance(admitted, resilience.LayerUnavailable):
            logger.warning("handshake refused with 4503: socket caps unavailable: %s", admitted)
            refusal = Close.UNAVAILABLE
        elif admitted is None:
            refusal = Close.RATE_LIMITED
        if refusal is None and not unexpected:
            if isinstance(created, str):
                self.channel_name = created
                self.handshake_groups = groups  # in self.groups from connect() on
                self.channel_receive = functools.partial(
                    self.channel_layer.receive, self.channel_name
                )
            return None, admitted  # type: ignore[return-value]
        if isinstance(admitted, caps.Admission):
            caps.release(admitted)
        if isinstance(created, str):
            await self._drop_channel(created, groups)
        if unexpected:
            raise unexpected[0]
        return refusal, None

    async def _drop_channel(self, channel: str, groups: list[str]) -> None:
        """Undo :meth:`_new_channel` for a handshake refused after all."""
        discard_all = getattr(self.channel_layer, "discard_channel_and_groups", None)
        with contextlib.suppress(resilience.LayerUnavailable):
            if discard_all is not None:
                await resilience.bounded(discard_all(channel, groups))
            else:
                for group in groups:
                    await resilience.group_discard(self.channel_layer, group, channel)

    async def _pump(self, receivers: list[Any]) -> None:
        """channels' ``await_many_dispatch``: messages from every source, handled one at a time,
        each source's in order. One long-lived task per source instead of a new task (and an
        ``asyncio.wait``) per message: that was a tenth of the CPU of a delivered frame
        (docs/performance.md). Returns or raises when a handler raises (``StopConsumer`` on
        disconnect); every source's pending receive is cancelled and awaited, which the channel
        layer needs to clean up the channel."""
        lock = asyncio.Lock()

        async def pump(receive: Any) -> None:
            while True:
                message = await receive()
                async with lock:
                    await self.dispatch(message)

        tasks = [asyncio.ensure_future(pump(receive)) for receive in receivers]
        retrieved: set[asyncio.Future[None]] = set()
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                retrieved.add(task)
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                if task in retrieved:
                    continue
                try:
                    await task
                except (asyncio.CancelledError, StopConsumer):
                    pass
                except Exception as error:  # noqa: BLE001 - the first outcome stands
                    # Another source failed as the socket closed (a frame sent to a peer that
                    # daphne's shutdown had already disconnected): expected, not an error.
                    logger.warning("while the socket closed: %s: %s", type(error).__name__, error)

    async def _new_channel(self, groups: list[str]) -> str:
        in_groups = getattr(self.channel_layer, "new_channel_in_groups", None)
        if in_groups is not None:
            return str(await in_groups(groups))
        channel = await self.channel_layer.new_channel()
        for group in groups:
            await self.channel_layer.group_add(group, channel)
        return str(channel)

    async def _refuse(self, receive: Any, code: int) -> None:
        """Accept the handshake only to close it with ``code`` (browsers cannot read a status)."""
        if (await receive())["type"] != "websocket.connect":
            return
        offered = self.scope.get("subprotocols") or []
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        await self.base_send({"type": "websocket.accept", "subprotocol": subprotocol})
        await self.base_send({"type": "websocket.close", "code": int(code)})

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an ASGI message to its ``websocket_*`` method, a layer event to its app.

        channels 4.2+ runs ``aclose_old_connections`` in a thread before every handler; ours
        never use the ORM in the loop (``database_sync_to_async`` closes stale connections in
        its own thread), so that hop would be pure cost on every delivered frame.
        """
        kind = message["type"]
        if kind.startswith("websocket."):
            await getattr(self, get_handler_name(message))(message)
            return
        handler = registry.events.get(kind)
        if handler is None:
            logger.warning("no handler for channel-layer event type %s", kind)
            return
        metrics.delivered(message)  # publish→deliver latency, for events the publisher stamped
        await handler(self, message)

    async def connect(self) -> None:
        auth = self.scope["herald"]
        self.closing = False
        self.extras: dict[type, Any] = {}
        self.tasks: set[asyncio.Task[Any]] = set()  # short-lived work the timers start
        await self.accept(auth.subprotocol)
        if auth.close_code is not None:
            await self.close_with(auth.close_code)
            return
        self.user = auth.user
        self.session_id = auth.session_id
        self.connection_id = uuid.uuid4().hex
        bind_connection(connection_id=self.connection_id, user_id=self.user.pk)  # every log line
        self.bucket: TokenBucket | None = None  # on the first frame: most sockets only listen
        self.strikes = 0
        self.active_at = time.monotonic()
        # Joined with the channel (__call__); channels' websocket_connect must not join again.
        self.groups.extend(self.handshake_groups)
        # Frames published while the layer's subscriber connection was down are lost: if it
        # reconnects, this socket closes with 4503 and its client resumes (docs/reliability.md).
        resilience.reconnects.track(self.channel_layer, self, self._layer_lost)
        if auth.recheck is not None and (code := await auth.recheck()) is not None:
            await self.close_with(code)  # revoked while this socket joined its groups
            return
        await self.send_frame(
            {
                "type": "hello",
                "user": {"id": self.user.pk, "username": self.user.username},
                "session_id": auth.session_id,
                "connection_id": self.connection_id,
                "heartbeat": settings.HERALD["WS_HEARTBEAT"],
                "expires_at": iso(auth.expires_at),
            }
        )
        self.renew_expiry(auth.warn_at, auth.close_at)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # channels' version, with each group_discard bounded: with Redis down it would raise
        # (a traceback per closing socket) or hang the consumer's exit.
        self.socket_closed(message.get("code"))  # metrics and log (InstrumentedConsumer)
        discard_all = getattr(self.channel_layer, "discard_channel_and_groups", None)
        if discard_all is not None and hasattr(self, "channel_name"):
            with contextlib.suppress(resilience.LayerUnavailable):
                await resilience.bounded(discard_all(self.channel_name, list(self.groups)))
        else:
            for group in self.groups:
                with contextlib.suppress(resilience.LayerUnavailable):
                    await resilience.group_discard(self.channel_layer, group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        self._cancel_expiry()
        if hasattr(self, "user"):  # accepted as a user: the apps' hooks may clean up
            for hook in registry.on_disconnect:
                await hook(self)

    async def _layer_lost(self) -> None:
        if not self.closing:
            await self.close_with(Close.UNAVAILABLE)

    def _expiring(self, close_at: datetime) -> None:
        """Timer: send ``auth.expiring``."""
        if not self.closing:
            self._spawn(self.send_frame({"type": "auth.expiring", "expires_at": iso(close_at)}))

    def _expired(self) -> None:
        """Timer: the token expired unrefreshed; close with 4401."""
        if not self.closing:
            self._spawn(self.close_with(Close.UNAUTHENTICATED))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # What handlers use ------------------------------------------------------------------------

    def state(self, kind: type[T], *, create: bool = True) -> T | None:
        """This socket's instance of an app's per-socket state class ``kind``, created (with no
        arguments) on first use; ``None`` when ``create`` is false and there is none yet."""
        found = self.extras.get(kind)
        if found is None and create:
            found = self.extras[kind] = kind()
        return found

    def renew_expiry(self, warn_at: datetime | None, close_at: datetime | None) -> None:
        """Replace the expiry timers: ``auth.expiring`` at ``warn_at``, close 4401 at
        ``close_at`` (``None``: never). Timers, not a sleeping task: an idle socket costs a
        timer handle, not a task and its frame."""
        self._cancel_expiry()
        if close_at is None:
            return
        loop = asyncio.get_running_loop()
        now, clock = time.time(), loop.time()
        timers = [loop.call_at(clock + close_at.timestamp() - now, self._expired)]
        if warn_at is not None:
            when = clock + warn_at.timestamp() - now
            timers.append(loop.call_at(when, self._expiring, close_at))
        self.expiry = timers

    def _cancel_expiry(self) -> None:
        for timer in getattr(self, "expiry", ()):
            timer.cancel()
        self.expiry = []

    async def join(self, group: str, limit: float = resilience.LAYER_TIMEOUT) -> None:
        """Receive ``group``'s events; raises ``resilience.LayerUnavailable`` after
        ``limit`` s. The group is left on disconnect even if joining failed."""
        if group not in self.groups:
            self.groups.append(group)
        await resilience.group_add(self.channel_layer, group, self.channel_name, limit)

    async def leave(self, group: str) -> None:
        """Stop receiving ``group``'s events (an unavailable layer is not an error here: the
        socket drops what it no longer wants)."""
        with contextlib.suppress(resilience.LayerUnavailable):
            await resilience.group_discard(self.channel_layer, group, self.channel_name)
        if group in self.groups:
            self.groups.remove(group)

    async def close_with(self, code: int) -> None:
        """Close the socket with ``code``; nothing more is sent on it."""
        self.closing = True
        resilience.reconnects.untrack(self)
        self._cancel_expiry()
        # A plain int: autobahn refuses any other type, an IntEnum member included.
        await self.close(int(code))

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Send, then wait while the client is behind (a slow consumer).

        daphne buffers without limit what the client does not read. Past
        ``HERALD_WS_MAX_BACKLOG_BYTES`` this socket stops handling anything (the layer queues
        its events meanwhile) until the backlog drains; if it does not within
        ``HERALD_WS_SEND_TIMEOUT`` s, the socket is counted, logged and closed with 4503: the
        client reconnects and resumes what it missed from the database.
        """
        if getattr(self, "closing", False):
            return  # closed by us: daphne refuses sends on a closed protocol (a traceback)
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Disconnected:
            # The peer is already gone (a drop, daphne's shutdown) and its disconnect is on the
            # way: nothing more can reach it.
            self.closing = True
            return
        if close or self.closing:
            return
        limit = settings.HERALD["WS_MAX_BACKLOG_BYTES"]
        backlog = adapters.outgoing_backlog(self.base_send)
        if backlog is None or backlog <= limit:
            return
        deadline = time.monotonic() + settings.HERALD["WS_SEND_TIMEOUT"]
        while time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_POLL)
            backlog = adapters.outgoing_backlog(self.base_send)
            if backlog is None or backlog <= limit or self.closing:
                return
        resilience.counters["slow_consumer_closes"] += 1
        logger.warning(
            "slow consumer: closing with 4503, %d bytes unsent after %.0f s: connection=%s",
            backlog,
            settings.HERALD["WS_SEND_TIMEOUT"],
            getattr(self, "connection_id", "-"),
        )
        await self.close_with(Close.UNAVAILABLE)

    async def send_text(self, text: str) -> None:
        """Send one frame already encoded as JSON text (an event's ``text``)."""
        await self.send(text_data=text)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Encode and send one server→client frame."""
        await self.send(text_data=events.encode(frame))

    async def error(self, code: str, detail: str, ref: Any = None, **fields: Any) -> None:
        """Send an ``error`` frame; the socket stays open."""
        await self.send_frame(
            {"type": "error", "code": code, "detail": detail, "ref": ref, **fields}
        )

    async def ack(self, ref: Any, **result: Any) -> None:
        """Send ``ack {ref, ...result}``."""
        await self.send_frame({"type": "ack", "ref": ref, **result})

    # Client → server -----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.HERALD["WS_MAX_MESSAGE_BYTES"]:
            await self.close_with(Close.TOO_LARGE)
            return
        if self.bucket is None:
            self.bucket = TokenBucket(settings.HERALD["WS_RATE"], settings.HERALD["WS_BURST"])
        if not self.bucket.take():
            self.strikes += 1
            if self.strikes > settings.HERALD["WS_BURST"]:
                await self.close_with(Close.RATE_LIMITED)
            else:
                await self.error(ErrorCode.RATE_LIMITED, "Too many frames; slow down.")
            return
        self.strikes = 0
        if time.monotonic() - self.active_at > _ACTIVITY_EVERY:
            self.active_at = time.monotonic()
            for hook in registry.on_activity:
                await hook(self)
        if text_data is None:
            await self.error(
                ErrorCode.INVALID_MESSAGE, "Binary frames are not supported; send JSON text."
            )
            return
        frame = frames.parse(text_data, registry.models)
        if isinstance(frame, frames.FrameError):
            metrics.frame_received("invalid")
            await self.error(frame.code, frame.detail, frame.ref)
            return
        kind = frame.type  # type: ignore[attr-defined]
        metrics.frame_received(kind)
        try:
            await registry.commands[kind](self, frame)
        except CommandError as refused:
            await self.error(refused.error_code, refused.detail, frame.ref, **refused.fields)
        except resilience.LayerUnavailable as error:
            logger.warning(
                "closing with 4503: channel layer unavailable: type=%s connection=%s: %s",
                kind,
                self.connection_id,
                error,
            )
            await self.close_with(Close.UNAVAILABLE)
        except Exception:
            logger.exception("handler failed: type=%s connection=%s", kind, self.connection_id)
            await self.error(
                ErrorCode.SERVER_ERROR, "The server could not handle this frame.", frame.ref
            )


async def _socket_close(socket: Socket, event: dict[str, Any]) -> None:
    await socket.close_with(int(event["code"]))


async def _nothing() -> None:
    return None


register(Handlers(events={events.SOCKET_CLOSE: _socket_close, events.SOCKET_CENSUS: census.reply}))
