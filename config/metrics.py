"""Prometheus: ``GET /metrics``, the HTTP request metrics and their middleware.

Every process writes to prometheus-client's multiprocess files (``config.metrics_dir``); a
scrape of any process of a machine reads them all, so ``/metrics`` is the machine's total
whichever daphne process answers. Names (all prefixed ``herald_``):

- the WebSocket and channel-layer metrics of ``realtime.metrics``;
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
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from . import metrics_dir

HTTP_REQUESTS = Counter(
    "herald_http_requests_total",
    "HTTP requests by method, resolved route pattern and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "herald_http_request_duration_seconds", "HTTP request duration by route.", ["route"]
)


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
