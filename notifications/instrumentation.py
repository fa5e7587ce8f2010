"""What the WebSocket consumer shows operators: metrics, and the socket census for the admin.

:class:`InstrumentedConsumer` is a mixin before ``AsyncWebsocketConsumer`` in the consumer's
bases; it counts handshakes, open sockets, disconnects and sent frames without touching the
consumer's own methods. Received frames and delivery latency are one call each in the consumer
(``config.metrics.frame_received`` and ``delivered``).

The census answers "how many sockets does this user have open, on every process, per login
session" (Django admin, the user's page). Groups are the registry (STYLE, anti-patterns): the
admin sends ``socket.census`` to ``user.<id>`` with a reply channel, and every socket of the
user, wherever it runs, answers with its login session. Nothing is stored, so nothing leaks
when a process dies; the price is a wait of ``CENSUS_WAIT`` seconds per look.
"""

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from channels.layers import get_channel_layer

from config import metrics

from . import groups

logger = logging.getLogger(__name__)

SOCKET_CENSUS = "socket.census"
CENSUS_WAIT = 0.5  # s: replies come in a Redis round trip (~1 ms); generous for a loaded host


class InstrumentedConsumer:
    """Mixin for ``AsyncWebsocketConsumer``: handshake, socket and frame metrics; census."""

    _counted = False
    _close_code: int | None = None

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await super().websocket_connect(message)  # type: ignore[misc]
        if self._close_code is None:  # accepted, and still open after ``hello``
            metrics.HANDSHAKES.labels("accepted", "none").inc()
            self._counted = True
            metrics.OPEN_SOCKETS.inc()
            logger.info("socket opened")  # connection_id and user_id are bound (config.logging)
        else:  # accepted only to close: 4401, 4403, 4503 (CONTRACT §3.1)
            metrics.HANDSHAKES.labels("rejected", metrics.close_label(self._close_code)).inc()

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self._close_code is None:
            self._close_code = code if isinstance(code, int) and code is not True else 1000
        await super().close(code, reason)  # type: ignore[misc]

    def socket_closed(self, code: int | None) -> None:
        """Count the socket as closed (once); the consumer's ``websocket_disconnect`` calls it."""
        if self._counted:
            self._counted = False
            metrics.OPEN_SOCKETS.dec()
            metrics.DISCONNECTS.labels(metrics.close_label(code)).inc()
            logger.info("socket closed: code=%s", code)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self.socket_closed(message.get("code"))
        await super().websocket_disconnect(message)  # type: ignore[misc]

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if text_data is not None:
            metrics.frame_sent(text_data)
        await super().send(text_data, bytes_data, close)  # type: ignore[misc]

    async def socket_census(self, event: dict[str, Any]) -> None:
        """Answer the admin's census with this socket's login session."""
        await self.channel_layer.send(  # type: ignore[attr-defined]
            event["reply_to"],
            {"type": "socket.census.reply", "session_id": str(getattr(self, "session_id", ""))},
        )


async def asocket_census(*, user_id: int, wait: float = CENSUS_WAIT) -> dict[str, int]:
    """``{login session id: open sockets}`` of the user, over every process.

    Counts the replies that arrive within ``wait`` seconds; ``{}`` without a channel layer.
    """
    layer = get_channel_layer()
    if layer is None:
        return {}
    reply_to = await layer.new_channel("herald.census.")
    counts: Counter[str] = Counter()

    async def collect() -> None:
        while True:
            reply = await layer.receive(reply_to)
            counts[reply.get("session_id", "")] += 1

    await layer.group_send(
        groups.user_group(user_id), {"type": SOCKET_CENSUS, "reply_to": reply_to}
    )
    # Always ends by cancelling a pending receive, which unsubscribes the reply channel
    # (channels-redis pub/sub layer).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), wait)
    return dict(counts)
