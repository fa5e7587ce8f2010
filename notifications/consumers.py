"""The one WebSocket consumer at ``/ws/`` (CONTRACT §3): thin, it parses and calls services.

Handlers never touch the ORM in the event loop: every read or write is a service or selector
called through ``database_sync_to_async`` (STYLE rule 4). Channel-layer events arrive already
encoded as JSON text (``events.py``) and are written to the socket as they are.
"""

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import deque
from datetime import datetime
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from accounts.services import login_session_touch
from accounts.ws_auth import check_refresh
from config import metrics
from config.logging import bind_connection

from . import events, frames, groups, presence, resilience, selectors, services
from .instrumentation import InstrumentedConsumer
from .serializers import message_payload, notification_payload

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401  # CONTRACT §3.3
CLOSE_TOO_LARGE = 4413
CLOSE_RATE_LIMITED = 4429
CLOSE_UNAVAILABLE = 4503
_DRAIN_POLL = 0.05  # s between looks at a socket's outgoing backlog while it is over the bound
_TOUCH_EVERY = 60  # s between last_seen_at updates from one socket's frames
_RESUME_PAGE = 500
_SENT_MEMORY = 2048  # recent seqs remembered per socket, to never send one twice
_REPLAY_PAGE = 500  # messages per query of a ``subscribe since`` replay
_REPLAYED_MEMORY = 4096  # replayed message ids remembered per room, newest kept
_REPLAYED_FOR = 60.0  # s after a replay during which live copies of its messages are dropped


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _seconds_until(moment: datetime) -> float:
    return max(0.0, moment.timestamp() - time.time())


class TokenBucket:
    """Token bucket: ``rate`` frames/s sustained, ``burst`` at once (CONTRACT §1)."""

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


def _replay_page(user_id: int, since: int) -> list[tuple[int, str]]:
    page = selectors.notifications_since(user_id=user_id, seq=since, limit=_RESUME_PAGE)
    return [
        (n.seq, events.encode({"type": "notification", "notification": notification_payload(n)}))
        for n in page
    ]


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
        return time.monotonic() > self.until

    def add(self, message_id: int) -> None:
        if message_id in self.ids:
            return
        self.ids.add(message_id)
        self.order.append(message_id)
        if len(self.order) > _REPLAYED_MEMORY:
            self.ids.discard(self.order.popleft())

    def __contains__(self, message_id: int) -> bool:
        return message_id in self.ids


def _message_page(room_id: int, since: int) -> list[tuple[int, str]]:
    page = selectors.room_messages_since(room_id=room_id, since=since, limit=_REPLAY_PAGE)
    return [
        (m.pk, events.encode({"type": "message", "room": room_id, "message": message_payload(m)}))
        for m in page
    ]


def _message_send(**kwargs: Any) -> dict[str, Any]:
    return message_payload(services.room_message_send(**kwargs))


class HeraldConsumer(InstrumentedConsumer, AsyncWebsocketConsumer):
    """Every client's socket: notifications, read state, and rooms (issue 3).

    Authentication already happened in ``accounts.ws_auth.HeraldAuthMiddleware``; ``connect``
    only acts on ``scope["herald"]``.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """channels' ``AsyncConsumer.__call__``, with the channel's creation bounded (issue 6).

        ``new_channel()`` subscribes on the pub/sub layer, a Redis round trip: with Redis down
        it would raise (daphne answers HTTP 500) or hang the handshake. Instead the handshake is
        accepted and closed with 4503, so the client reconnects with backoff.
        """
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        receivers = [receive]
        if self.channel_layer is not None:
            try:
                self.channel_name = await resilience.bounded(self.channel_layer.new_channel())
            except resilience.LayerUnavailable as error:
                logger.warning("handshake refused with 4503: channel layer unavailable: %s", error)
                await self._refuse(receive, CLOSE_UNAVAILABLE)
                return
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            receivers.append(self.channel_receive)
        try:
            await await_many_dispatch(receivers, self.dispatch)
        except StopConsumer:
            pass
        finally:
            resilience.reconnects.untrack(self)

    async def _refuse(self, receive: Any, code: int) -> None:
        """Accept the handshake only to close it with ``code`` (browsers cannot read a status)."""
        if (await receive())["type"] != "websocket.connect":
            return
        offered = self.scope.get("subprotocols") or []
        subprotocol = "herald.v1" if "herald.v1" in offered else None
        await self.base_send({"type": "websocket.accept", "subprotocol": subprotocol})
        await self.base_send({"type": "websocket.close", "code": code})

    async def dispatch(self, message: dict[str, Any]) -> None:
        # channels 4.2+ runs ``aclose_old_connections`` in a thread before every handler; ours
        # never use the ORM in the loop (database_sync_to_async closes stale connections in its
        # own thread), so that hop is pure cost on every delivered frame (DEVELOPERS.md).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        metrics.delivered(message)  # publish→deliver latency, for events the publisher stamped
        await handler(message)

    async def connect(self) -> None:
        auth = self.scope["herald"]
        self.closing = False
        await self.accept(auth.subprotocol)
        if auth.close_code is not None:
            await self._close(auth.close_code)
            return
        self.user = auth.user
        self.connection_id = uuid.uuid4().hex
        bind_connection(connection_id=self.connection_id, user_id=self.user.pk)  # every log line
        self.sent_seqs: deque[int] = deque(maxlen=_SENT_MEMORY)
        self.rooms: set[int] = set()  # rooms this socket is subscribed to (issue 3)
        self.replayed: dict[int, ReplayedIds] = {}
        self.bucket = TokenBucket(settings.HERALD["WS_RATE"], settings.HERALD["WS_BURST"])
        self.strikes = 0
        self.session_id = auth.session_id
        self.touched_at = time.monotonic()
        try:
            for group in (groups.user_group(self.user.pk), groups.session_group(auth.session_id)):
                await resilience.group_add(self.channel_layer, group, self.channel_name)
                self.groups.append(group)
        except resilience.LayerUnavailable as error:
            logger.warning("handshake closed with 4503: channel layer unavailable: %s", error)
            await self._close(CLOSE_UNAVAILABLE)
            return
        # Frames published while the layer's subscriber connection was down are lost: if it
        # reconnects, this socket closes with 4503 and its client resumes (docs/reliability.md).
        resilience.reconnects.track(self.channel_layer, self, self._layer_lost)
        await self.send_frame(
            {
                "type": "hello",
                "user": {"id": self.user.pk, "username": self.user.username},
                "session_id": auth.session_id,
                "connection_id": self.connection_id,
                "heartbeat": settings.HERALD["WS_HEARTBEAT"],
                "expires_at": _iso(auth.expires_at),
            }
        )
        self.expiry = asyncio.ensure_future(self._expire(auth.warn_at, auth.close_at))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # channels' version, with each group_discard bounded: with Redis down it would raise
        # (a traceback per closing socket) or hang the consumer's exit.
        self.socket_closed(message.get("code"))  # metrics and log (InstrumentedConsumer)
        for group in self.groups:
            with contextlib.suppress(resilience.LayerUnavailable):
                await resilience.group_discard(self.channel_layer, group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        if expiry := getattr(self, "expiry", None):
            expiry.cancel()
        # channels already left every group in self.groups; presence still counts the socket.
        for room in list(getattr(self, "rooms", ())):
            await self._leave_room(room)

    async def _layer_lost(self) -> None:
        if not self.closing:
            await self._close(CLOSE_UNAVAILABLE)

    async def _close(self, code: int) -> None:
        self.closing = True
        resilience.reconnects.untrack(self)
        if expiry := getattr(self, "expiry", None):
            expiry.cancel()
        await self.close(code)

    async def _expire(self, warn_at: datetime | None, close_at: datetime | None) -> None:
        """Send ``auth.expiring`` at ``warn_at``, close with 4401 at ``close_at`` (issue 4).

        Replaced by a new task when ``auth.refresh`` succeeds; cancelled on disconnect.
        """
        if close_at is None:
            return
        if warn_at is not None:
            await asyncio.sleep(_seconds_until(warn_at))
            await self.send_frame({"type": "auth.expiring", "expires_at": _iso(close_at)})
        await asyncio.sleep(_seconds_until(close_at))
        if not self.closing:
            self.closing = True
            await self.close(CLOSE_UNAUTHENTICATED)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Send, then wait while the client is behind (issue 6, a slow consumer).

        daphne buffers without limit what the client does not read. Past
        ``HERALD_WS_MAX_BACKLOG_BYTES`` this socket stops handling anything (the layer queues
        its events meanwhile) until the backlog drains; if it does not within
        ``HERALD_WS_SEND_TIMEOUT`` s, the socket is counted, logged and closed with 4503: the
        client reconnects and resumes what it missed from the database.
        """
        if getattr(self, "closing", False):
            return  # closed by us: daphne refuses sends on a closed protocol (a traceback)
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        if close or self.closing:
            return
        limit = settings.HERALD["WS_MAX_BACKLOG_BYTES"]
        backlog = resilience.outgoing_backlog(self.base_send)
        if backlog is None or backlog <= limit:
            return
        deadline = time.monotonic() + settings.HERALD["WS_SEND_TIMEOUT"]
        while time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_POLL)
            backlog = resilience.outgoing_backlog(self.base_send)
            if backlog is None or backlog <= limit or self.closing:
                return
        resilience.counters["slow_consumer_closes"] += 1
        logger.warning(
            "slow consumer: closing with 4503, %d bytes unsent after %.0f s: connection=%s",
            backlog,
            settings.HERALD["WS_SEND_TIMEOUT"],
            getattr(self, "connection_id", "-"),
        )
        await self._close(CLOSE_UNAVAILABLE)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Encode and send one server→client frame."""
        await self.send(text_data=events.encode(frame))

    async def error(self, code: str, detail: str, ref: Any = None) -> None:
        """Send an ``error`` frame; the socket stays open (CONTRACT §3.2)."""
        await self.send_frame({"type": "error", "code": code, "detail": detail, "ref": ref})

    async def ack(self, ref: Any, **result: Any) -> None:
        """Send ``ack {ref, ...result}``."""
        await self.send_frame({"type": "ack", "ref": ref, **result})

    # Client → server ---------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.HERALD["WS_MAX_MESSAGE_BYTES"]:
            await self._close(CLOSE_TOO_LARGE)
            return
        if not self.bucket.take():
            self.strikes += 1
            if self.strikes > settings.HERALD["WS_BURST"]:
                await self._close(CLOSE_RATE_LIMITED)
            else:
                await self.error("rate_limited", "Too many frames; slow down.")
            return
        self.strikes = 0
        if time.monotonic() - self.touched_at > _TOUCH_EVERY:
            self.touched_at = time.monotonic()
            await database_sync_to_async(login_session_touch)(session_id=self.session_id)
        if text_data is None:
            await self.error("invalid_message", "Binary frames are not supported; send JSON text.")
            return
        frame = frames.parse(text_data)
        metrics.frame_received("invalid" if isinstance(frame, frames.FrameError) else frame.type)
        if isinstance(frame, frames.FrameError):
            await self.error(frame.code, frame.detail, frame.ref)
            return
        handler = getattr(self, "on_" + frame.type.replace(".", "_"))
        try:
            await handler(frame)
        except resilience.LayerUnavailable as error:
            logger.warning(
                "closing with 4503: channel layer unavailable: type=%s connection=%s: %s",
                frame.type,
                self.connection_id,
                error,
            )
            await self._close(CLOSE_UNAVAILABLE)
        except Exception:
            logger.exception(
                "handler failed: type=%s connection=%s", frame.type, self.connection_id
            )
            await self.error("server_error", "The server could not handle this frame.", frame.ref)

    async def on_ping(self, frame: frames.Ping) -> None:
        await self.send_frame({"type": "pong", "ref": frame.ref})

    async def on_resume(self, frame: frames.Resume) -> None:
        since, count = frame.notifications_since, 0
        while True:
            page = await database_sync_to_async(_replay_page)(self.user.pk, since)
            for seq, text in page:
                if seq not in self.sent_seqs:
                    self.sent_seqs.append(seq)
                    await self.send(text_data=text)
                    count += 1
            if len(page) < _RESUME_PAGE:
                break
            since = page[-1][0]
        await self.ack(frame.ref, count=count)

    async def on_auth_refresh(self, frame: frames.AuthRefresh) -> None:
        outcome = await database_sync_to_async(check_refresh)(
            frame.token, user_id=self.user.pk, session_id=self.session_id
        )
        if outcome.error:
            await self.error(outcome.error, outcome.detail, frame.ref)
        if outcome.close_code:
            await self._close(outcome.close_code)
        elif outcome.expires_at:
            self.expiry.cancel()
            self.expiry = asyncio.ensure_future(self._expire(outcome.warn_at, outcome.expires_at))
            await self.ack(frame.ref, expires_at=_iso(outcome.expires_at))

    async def on_notification_read(self, frame: frames.NotificationRead) -> None:
        if frame.all:
            unread = await database_sync_to_async(services.notification_mark_all_read)(
                user_id=self.user.pk
            )
        else:
            unread = await database_sync_to_async(services.notification_mark_read)(
                user_id=self.user.pk, ids=frame.ids or []
            )
        await self.ack(frame.ref, unread_count=unread)

    async def on_subscribe(self, frame: frames.Subscribe) -> None:
        if not await database_sync_to_async(selectors.room_is_member)(
            room_id=frame.room, user_id=self.user.pk
        ):
            await self.error("forbidden", services.RoomNotFound.default_detail, frame.ref)
            return
        # Join the group before reading the replay: a message committed meanwhile is then
        # both replayed and queued live (dropped by ReplayedIds), never neither.
        await self._join_room(frame.room)
        online = await presence.ajoin(
            room_id=frame.room,
            user_id=self.user.pk,
            connection_id=self.connection_id,
            origin=self.channel_name,
        )
        await self.ack(frame.ref, room=frame.room, presence=online)
        await self.send_frame({"type": "presence", "room": frame.room, "online": online})
        if frame.since is not None:
            await self._replay(frame.room, frame.since)

    async def on_unsubscribe(self, frame: frames.Unsubscribe) -> None:
        if frame.room in self.rooms:
            await self._leave_room(frame.room)
        await self.ack(frame.ref, room=frame.room)

    async def on_message_send(self, frame: frames.MessageSend) -> None:
        try:
            message = await database_sync_to_async(_message_send)(
                room_id=frame.room,
                author_id=self.user.pk,
                body=frame.body,
                client_id=frame.client_id,
            )
        except services.ChatError as error:
            await self._chat_error(error, frame.ref)
            return
        await self.ack(frame.ref, message=message)

    async def on_typing(self, frame: frames.Typing) -> None:
        if frame.room not in self.rooms and not await database_sync_to_async(
            selectors.room_is_member
        )(room_id=frame.room, user_id=self.user.pk):
            await self.error("forbidden", services.RoomNotFound.default_detail, frame.ref)
            return
        await presence.atyping(
            room_id=frame.room, user_id=self.user.pk, username=self.user.username
        )

    async def on_room_read(self, frame: frames.RoomRead) -> None:
        try:
            position = await database_sync_to_async(services.room_read)(
                room_id=frame.room, user_id=self.user.pk, message_id=frame.message_id
            )
        except services.ChatError as error:
            await self._chat_error(error, frame.ref)
            return
        await self.ack(frame.ref, room=frame.room, message_id=position)

    async def _chat_error(self, error: services.ChatError, ref: Any) -> None:
        # A socket says "forbidden" where REST says 404: not a member, or no such room.
        code = "forbidden" if isinstance(error, services.RoomNotFound) else error.code
        await self.error(code, error.detail, ref)

    async def _join_room(self, room: int) -> None:
        group = groups.room_group(room)
        if group not in self.groups:  # first: a failed add is still discarded on disconnect
            self.groups.append(group)
        await resilience.group_add(
            self.channel_layer, group, self.channel_name, resilience.JOIN_TIMEOUT
        )
        self.rooms.add(room)

    async def _leave_room(self, room: int) -> None:
        group = groups.room_group(room)
        with contextlib.suppress(resilience.LayerUnavailable):
            await resilience.group_discard(self.channel_layer, group, self.channel_name)
        if group in self.groups:
            self.groups.remove(group)
        self.rooms.discard(room)
        self.replayed.pop(room, None)
        await presence.aleave(room_id=room, user_id=self.user.pk, connection_id=self.connection_id)

    async def _replay(self, room: int, since: int) -> None:
        """Send every message of the room with ``id > since``, oldest first, page by page."""
        replayed = self.replayed.setdefault(room, ReplayedIds())
        while True:
            page = await database_sync_to_async(_message_page)(room, since)
            for message_id, text in page:
                replayed.add(message_id)
                await self.send(text_data=text)
            if len(page) < _REPLAY_PAGE:
                break
            since = page[-1][0]
        replayed.renew()

    # Channel layer → socket ----------------------------------------------------------------

    async def notification_created(self, event: dict[str, Any]) -> None:
        if event["seq"] not in self.sent_seqs:
            self.sent_seqs.append(event["seq"])
            await self.send(text_data=event["text"])

    async def notification_read(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])

    async def session_closed(self, event: dict[str, Any]) -> None:
        await self._close(int(event["code"]))

    async def room_message(self, event: dict[str, Any]) -> None:
        room = event["room"]
        if room not in self.rooms:  # queued before this socket left the room
            return
        replayed = self.replayed.get(room)
        if replayed is not None:
            if replayed.expired():
                del self.replayed[room]
            elif event["id"] in replayed:
                return
        await self.send(text_data=event["text"])

    async def room_typing(self, event: dict[str, Any]) -> None:
        # Not echoed to the typist: none of their own sockets (tabs) shows it.
        if event["room"] in self.rooms and event["user"] != self.user.pk:
            await self.send(text_data=event["text"])

    async def room_presence(self, event: dict[str, Any]) -> None:
        if event["room"] in self.rooms and event["origin"] != self.channel_name:
            await self.send(text_data=event["text"])

    async def room_read(self, event: dict[str, Any]) -> None:
        if event["room"] in self.rooms:
            await self.send(text_data=event["text"])

    async def room_removed(self, event: dict[str, Any]) -> None:
        """The user left or was removed: stop the room at once, and say so (``forbidden``)."""
        room = event["room"]
        if room in self.rooms:
            await self._leave_room(room)
            await self.send_frame(
                {
                    "type": "error",
                    "code": "forbidden",
                    "detail": "You are no longer a member of this room.",
                    "ref": None,
                    "room": room,
                }
            )
