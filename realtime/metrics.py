"""Prometheus metrics of the WebSocket transport and the channel layer (docs/deployment.md).

Names (all prefixed ``herald_``):

- ``ws_open_sockets`` (gauge, live sum): authenticated sockets open now;
- ``ws_handshakes_total{outcome, code}``: ``accepted`` (code ``none``), ``rejected`` with the
  close code (4401, 4403, 4503) sent instead of data;
- ``ws_disconnects_total{code}``: sockets closed, by close code (``other`` for a code neither
  Herald nor the WebSocket layer sends);
- ``ws_frames_received_total{type}`` / ``ws_frames_sent_total{type}``: frames by ``type``
  (``invalid``: a client frame that did not parse);
- ``delivery_latency_seconds{event}``: from the publisher's send to the consumer handling the
  event (wall clocks: across machines, as good as their NTP);
- ``channel_layer_errors_total{operation}`` and ``channel_layer_capacity_drops_total{operation}``:
  failed publisher sends (a full channel is a capacity drop).

Every process writes to prometheus-client's multiprocess files (``config.metrics_dir``). Per
frame the cost is a dict lookup and one ``inc()`` on an mmap (no I/O, no extra lock).
"""

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from .protocol import Close
from .registry import registry

OPEN_SOCKETS = Gauge(
    "herald_ws_open_sockets",
    "Authenticated WebSocket connections open.",
    multiprocess_mode="livesum",
)
HANDSHAKES = Counter(
    "herald_ws_handshakes_total",
    "WebSocket handshakes by outcome and the close code sent instead of data.",
    ["outcome", "code"],
)
DISCONNECTS = Counter("herald_ws_disconnects_total", "WebSocket connections closed.", ["code"])
FRAMES_RECEIVED = Counter(
    "herald_ws_frames_received_total", "Client frames handled, by type.", ["type"]
)
FRAMES_SENT = Counter("herald_ws_frames_sent_total", "Server frames sent, by type.", ["type"])
DELIVERY_LATENCY = Histogram(
    "herald_delivery_latency_seconds",
    "From the publisher's send to the consumer handling the event.",
    ["event"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LAYER_ERRORS = Counter(
    "herald_channel_layer_errors_total", "Channel-layer operations that failed.", ["operation"]
)
LAYER_CAPACITY_DROPS = Counter(
    "herald_channel_layer_capacity_drops_total",
    "Channel-layer messages dropped because a channel was full.",
    ["operation"],
)

# Close codes that keep their own label: Herald's and the WebSocket layer's; any other is
# ``other``, so a client cannot grow the label set.
_CODES = {1001, 1005, 1006, 1011} | {int(code) for code in Close}
_PREFIX = '{"type":"'

# Label children, resolved once per value: ``labels()`` takes a lock and builds a tuple.
_sent: dict[str, Any] = {}
_received: dict[str, Any] = {}
_latency: dict[str, Any] = {}


def close_label(code: int | None) -> str:
    """The ``code`` label of a close code."""
    return str(code) if code in _CODES else "other"


def frame_sent(text: str | None) -> None:
    """Count one server frame (JSON text from ``realtime.events.encode``, ``type`` first) by its
    ``type``; a type no app registered counts as ``other``."""
    kind = "other"
    if text is not None and text.startswith(_PREFIX):
        candidate = text[len(_PREFIX) : text.find('"', len(_PREFIX))]
        if candidate in registry.server_types:
            kind = candidate
    child = _sent.get(kind)
    if child is None:
        child = _sent[kind] = FRAMES_SENT.labels(kind)
    child.inc()


def frame_received(kind: str) -> None:
    """Count one client frame of ``kind`` (a registered type, or ``invalid``)."""
    child = _received.get(kind)
    if child is None:
        child = _received[kind] = FRAMES_RECEIVED.labels(kind)
    child.inc()


def delivered(event: dict[str, Any]) -> None:
    """Observe the publish→deliver latency of a channel-layer event stamped by the publisher."""
    published_at = event.get("published_at")
    if published_at is None:
        return
    kind = event["type"]
    child = _latency.get(kind)
    if child is None:
        child = _latency[kind] = DELIVERY_LATENCY.labels(kind)
    child.observe(max(0.0, time.time() - published_at))
