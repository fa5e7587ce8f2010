"""Prometheus metrics: their definitions, ``GET /metrics`` and the REST request middleware.

Every process writes to prometheus-client's multiprocess files (``config.metrics_dir``); a
scrape of any process of a machine reads them all, so ``/metrics`` is the machine's total
whichever daphne process answers. Names (all prefixed ``herald_``):

- ``ws_open_sockets`` (gauge, live sum): authenticated sockets open now;
- ``ws_handshakes_total{outcome, code}``: ``accepted`` (code ``none``), ``rejected`` with the
  close code (4401, 4403) sent instead of data;
- ``ws_disconnects_total{code}``: sockets closed, by close code (``other`` outside CONTRACT §3.3);
- ``ws_frames_received_total{type}`` / ``ws_frames_sent_total{type}``: frames by ``type``
  (``invalid``: a client frame that did not parse);
- ``delivery_latency_seconds{event}``: from the publisher's ``group_send`` to the consumer
  handling the event (wall clocks: across machines, as good as their NTP);
- ``channel_layer_errors_total{operation}`` and ``channel_layer_capacity_drops_total{operation}``:
  failed publisher sends (a full channel is a capacity drop);
- ``http_requests_total{method, route, status}`` and ``http_request_duration_seconds{route}``:
  by Django's resolved route pattern (``api/rooms/<int:room_id>/``), never the raw path.

Per frame the cost is a dict lookup and one ``inc()`` on an mmap (no I/O, no extra lock).
"""

import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from . import metrics_dir

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
HTTP_REQUESTS = Counter(
    "herald_http_requests_total",
    "HTTP requests by method, resolved route pattern and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "herald_http_request_duration_seconds", "HTTP request duration by route.", ["route"]
)

# Close codes that keep their own label (CONTRACT §3.3); any other is ``other``, so a client
# cannot grow the label set.
_CODES = {1000, 1001, 1005, 1006, 1011, 4401, 4403, 4413, 4429, 4503}
# Server frame types (CONTRACT §3.2); frames are encoded by ``notifications.events.encode``
# with ``type`` first, so the type is read from the text without decoding it.
_SENT_TYPES = {
    "hello",
    "notification",
    "notification.read",
    "message",
    "typing",
    "presence",
    "room.read",
    "ack",
    "error",
    "auth.expiring",
    "pong",
}
_PREFIX = '{"type":"'

# Label children, resolved once per value: ``labels()`` takes a lock and builds a tuple.
_sent: dict[str, Any] = {}
_received: dict[str, Any] = {}
_latency: dict[str, Any] = {}


def close_label(code: int | None) -> str:
    return str(code) if code in _CODES else "other"


def frame_sent(text: str | None) -> None:
    """Count one server frame (JSON text from ``events.encode``) by its ``type``."""
    kind = "other"
    if text is not None and text.startswith(_PREFIX):
        candidate = text[len(_PREFIX) : text.find('"', len(_PREFIX))]
        if candidate in _SENT_TYPES:
            kind = candidate
    child = _sent.get(kind)
    if child is None:
        child = _sent[kind] = FRAMES_SENT.labels(kind)
    child.inc()


def frame_received(kind: str) -> None:
    """Count one client frame of ``kind`` (a parsed type from ``frames``, or ``invalid``)."""
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


# /metrics --------------------------------------------------------------------------------------


def _denied(status: int, detail: str, code: str) -> JsonResponse:
    response = JsonResponse({"detail": detail, "code": code}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _scrape_allowed(request: HttpRequest) -> JsonResponse | None:
    """``None`` when allowed (``HERALD_METRICS_TOKEN`` bearer, or a staff session), else the
    answer: 401 without or with a wrong token, 403 for a signed-in non-staff user."""
    header = request.headers.get("Authorization", "")
    if header:
        expected = settings.HERALD["METRICS_TOKEN"]
        scheme, _, token = header.partition(" ")
        if (
            expected
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), expected.encode())
        ):
            return None
        return _denied(401, "Invalid metrics token.", "authentication_failed")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return _denied(401, "Authentication credentials were not provided.", "not_authenticated")
    if not user.is_staff:
        return _denied(403, "Only staff may read metrics.", "permission_denied")
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus text format, every process of this machine summed."""
    if (refused := _scrape_allowed(request)) is not None:
        return refused
    path = os.environ.get(metrics_dir.ENV)
    if path:
        metrics_dir.reap(path)  # a killed process's open sockets stop counting
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
    else:  # prometheus-client imported before the settings: this process only
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# REST requests ---------------------------------------------------------------------------------


class RequestMetricsMiddleware:
    """Counts every HTTP request by method, resolved route pattern and status.

    The label is ``request.resolver_match.route`` (``api/rooms/<int:room_id>/``): bounded, and
    never an id or a query string. Unresolved paths are ``unmatched``. Sync and async capable,
    so it adds no thread hop under ASGI.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        start = time.perf_counter()
        response = self.get_response(request)
        self._count(request, response, start)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = await self.get_response(request)  # type: ignore[misc]
        self._count(request, response, start)
        return response

    @staticmethod
    def _count(request: HttpRequest, response: HttpResponse, start: float) -> None:
        match = getattr(request, "resolver_match", None)
        route = "unmatched"
        if match is not None:
            route = "/" + match.route if match.route else match.view_name or "unnamed"
        HTTP_REQUESTS.labels(request.method or "", route, str(response.status_code)).inc()
        HTTP_DURATION.labels(route).observe(time.perf_counter() - start)
