"""One error shape for the whole API: ``{"detail": str, "code": str}``
(docs/protocol.md, "HTTP API").

Validation errors add ``errors`` (field → list of messages); nothing under ``/api/`` answers
with an HTML page or a traceback.
"""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


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


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """``handler404``: JSON ``not_found`` for every unmatched URL."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    """``handler500``: JSON ``server_error``; the traceback goes to the log, not the client."""
    return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """``handler400``: JSON ``bad_request``."""
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)
