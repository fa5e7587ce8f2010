"""What the WebSocket consumer shows operators: handshake, socket and frame metrics.

:class:`InstrumentedConsumer` is a mixin before ``AsyncWebsocketConsumer`` in the consumer's
bases; it counts handshakes, open sockets, disconnects and sent frames without touching the
consumer's own methods. Received frames and delivery latency are one call each in the consumer
(``realtime.metrics.frame_received`` and ``delivered``).
"""

import logging
from typing import Any

from . import metrics

logger = logging.getLogger(__name__)


class InstrumentedConsumer:
    """Mixin for ``AsyncWebsocketConsumer``: handshake, socket and frame metrics."""

    _counted = False
    _close_code: int | None = None

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await super().websocket_connect(message)  # type: ignore[misc]
        if self._close_code is None:  # accepted, and still open after ``hello``
            metrics.HANDSHAKES.labels("accepted", "none").inc()
            self._counted = True
            metrics.OPEN_SOCKETS.inc()
            logger.info("socket opened")  # connection_id and user_id are bound (config.logging)
        else:  # accepted only to close: 4401, 4403, 4503 (docs/protocol.md)
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
