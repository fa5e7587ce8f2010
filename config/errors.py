"""One error shape for the whole API: ``{"detail": str, "code": str}``
(docs/protocol.md, "HTTP API"), and the headers every ``/api/`` answer carries.

Validation errors add ``errors`` (field → list of messages); nothing under ``/api/`` answers
with an HTML page or a traceback, whatever the method or the URL: DRF's errors go through
:func:`api_exception_handler`, unknown URLs through :func:`api_not_found`, a failed CSRF check
through :func:`csrf_failure`, and :class:`ApiResponseMiddleware` rewrites any other non-JSON
error (Django's own 405, say) into the shape.
"""

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control
from django.views import csrf
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
# The answers that carry credentials: RFC 6749 §5.1 asks for ``Pragma: no-cache`` besides
# ``Cache-Control: no-store`` (URL names of accounts/api_urls.py).
TOKEN_URL_NAMES = frozenset({"token", "token-refresh", "ws-ticket"})
# The ``code`` of a non-JSON error turned into the API's shape: DRF's codes for the same statuses.
_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
}
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _first_code(codes: Any) -> str:
    while isinstance(codes, dict | list) and codes:
        codes = next(iter(codes.values())) if isinstance(codes, dict) else codes[0]
    return codes if isinstance(codes, str) else "invalid"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: reshape every API error to ``{detail, code[, errors]}``."""
    # Django's own exceptions (``get_object_or_404``) as DRF's, so they get the shape and a
    # generic detail that names no model.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        # Redis (the shared cache) is down: the write was rolled back with its transaction.
        logger.warning("API request failed: Redis unavailable (%r)", exc)
        exc = DependencyUnavailable()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        errors = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
        body: dict[str, Any] = {
            "detail": "Invalid input.",
            "code": _first_code(exc.get_codes()),
            "errors": errors,
        }
    else:
        data = response.data if isinstance(response.data, dict) else {}
        body = {
            "detail": str(data.get("detail", exc.detail)),
            "code": str(data.get("code") or _first_code(exc.get_codes()) or exc.default_code),
        }
    response.data = body
    return response


class DependencyUnavailable(exceptions.APIException):
    """``503 {"detail", "code": "service_unavailable"}`` with ``Retry-After``: a dependency the
    request needs (Redis) does not answer; nothing was changed, the client may retry
    (docs/reliability.md, "Redis stopped")."""

    status_code = 503
    default_code = "service_unavailable"
    default_detail = "A service Herald depends on is unavailable; try again shortly."
    wait = 5  # s, DRF sends it as Retry-After


class InvalidRequest(exceptions.APIException):
    """A 400 ``{"detail", "code": "invalid"}`` whose ``detail`` is the whole answer: for
    refusals that must not list per-field details (which users exist, for one)."""

    status_code = 400
    default_code = "invalid"
    default_detail = "Invalid input."


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """``handler404``: JSON ``not_found`` for every unmatched URL."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


@csrf_exempt
def api_not_found(request: HttpRequest) -> JsonResponse:
    """The last ``/api/`` route: JSON ``404 not_found`` for any method, credentials or none.

    CSRF-exempt, or an unsafe method on an unknown URL would get the CSRF check's 403 (an HTML
    page before :func:`csrf_failure`) instead of the 404 it is; there is nothing here to forge.
    """
    return not_found(request)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: under ``/api/`` a JSON ``403 permission_denied`` naming the
    reason (as DRF's session authentication words it); Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            {"detail": f"CSRF Failed: {reason}", "code": "permission_denied"}, status=403
        )
    return csrf.csrf_failure(request, reason)


def _as_api_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    status = response.status_code
    try:
        detail = f"{HTTPStatus(status).phrase}."
    except ValueError:
        detail = "Error."
    if status == 405:
        detail = f'Method "{request.method}" not allowed.'
    code = _CODES.get(status, "server_error" if status >= 500 else "invalid")
    answer = JsonResponse({"detail": detail, "code": code}, status=status)
    for name in _KEPT_HEADERS:
        if name in response:
            answer[name] = response[name]
    return answer


def api_response(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """What :class:`ApiResponseMiddleware` does to one answer (``/api/`` paths only):

    - an error (4xx, 5xx) that is not JSON becomes ``{detail, code}`` with the same status;
    - ``Cache-Control: no-store`` (added to any directives the view set): answers hold a
      user's data or credentials, and no cache may keep them (RFC 9111 §5.2.2.5);
    - token answers (``/api/auth/token/``, ``…/refresh/``, ``/api/auth/ws-ticket/``) also
      ``Pragma: no-cache`` (RFC 6749 §5.1).
    """
    if not request.path.startswith(API_PREFIX):
        return response
    if (
        response.status_code >= 400
        and not getattr(response, "streaming", False)
        and not response.get("Content-Type", "").startswith("application/json")
    ):
        response = _as_api_error(request, response)
    patch_cache_control(response, no_store=True)
    match = getattr(request, "resolver_match", None)
    if match is not None and match.url_name in TOKEN_URL_NAMES:
        response["Pragma"] = "no-cache"
    return response


class ApiResponseMiddleware:
    """Applies :func:`api_response` to every answer; sync and async capable (no thread hop
    under ASGI). Placed before ``CsrfViewMiddleware`` so that it sees that check's answers."""

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
        return api_response(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return api_response(request, await self.get_response(request))  # type: ignore[misc]


def server_error(request: HttpRequest) -> JsonResponse:
    """``handler500``: JSON ``server_error``; the traceback goes to the log, not the client."""
    return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """``handler400``: JSON ``bad_request``."""
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)
