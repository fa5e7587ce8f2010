"""Request limits of the HTTP side: per-user write rates (DRF throttles) and the answer to a
failed-login lockout (django-axes). docs/security.md, "Limits", lists every limit and its
environment variable.

Both count in the default cache (Redis with ``REDIS_URL``), so every process counts together.
Both answer ``429`` with ``Retry-After`` (RFC 9110 §10.2.3, RFC 6585 §4): under ``/api/`` the
API's error shape ``{"detail", "code": "throttled"}``, elsewhere (the web and admin login forms)
a readable page.
"""

import logging
import math
from typing import Any

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

logger = logging.getLogger(__name__)

LOCKED_OUT_DETAIL = "Too many failed logins. Try again later."


class ScopedWriteThrottle(ScopedRateThrottle):
    """DRF's ``ScopedRateThrottle`` for writes: a view's ``throttle_scope`` (one of
    ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``) limits its unsafe methods (POST, PATCH, PUT,
    DELETE); reads are never throttled.

    The count is per authenticated user, else per the view's ``throttle_ident(request)`` when it
    has one (the token refresh: per login session), else per client IP (``REMOTE_ADDR``; DRF's
    sliding window of the rate's period, kept in the default cache). Over the rate DRF raises
    ``Throttled``, which ``config.errors`` answers ``429 {detail, code: "throttled"}`` with
    ``Retry-After`` in whole seconds.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        # With the cache unreachable (Redis down) a write is let through, not failed: the
        # database is what stores it (docs/reliability.md), the count only guards it.
        try:
            return bool(super().allow_request(request, view))
        except Exception as error:
            logger.warning("throttle not checked, cache unreachable: %s", type(error).__name__)
            return True

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        ident_of = getattr(view, "throttle_ident", None)
        if not (request.user and request.user.is_authenticated) and ident_of is not None:
            ident = ident_of(request)
            if ident:
                return self.cache_format % {"scope": self.scope, "ident": ident}
        return super().get_cache_key(request, view)


class LoginFailureCache(AxesCacheHandler):
    """``AXES_HANDLER``: django-axes's cache handler (failed logins counted in the default
    cache), except that an unreachable cache (Redis down) lets logins through unchecked and
    uncounted instead of failing them with a 500: the lockout pauses during the outage, logins
    keep working. Each such miss is logged."""

    def __init__(self) -> None:
        """No cache bound here (the parent binds one for the process's life): :attr:`cache`
        looks the default cache up on each use, as every other part of Herald does."""

    @property
    def cache(self) -> Any:
        """The cache django-axes counts in (``AXES_CACHE``, default ``"default"``)."""
        return get_cache()

    def get_failures(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        try:
            return int(super().get_failures(request, credentials))
        except Exception as error:
            logger.warning(
                "login failures not checked, cache unreachable: %s", type(error).__name__
            )
            return 0

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        try:
            super().user_login_failed(sender, credentials, request, **kwargs)
        except Exception as error:
            logger.warning("login failure not counted, cache unreachable: %s", type(error).__name__)

    def user_logged_in(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        try:
            super().user_logged_in(sender, request, user, **kwargs)
        except Exception as error:
            logger.warning("login failures not reset, cache unreachable: %s", type(error).__name__)


def client_ip(request: HttpRequest) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: the peer address (``REMOTE_ADDR``), which daphne
    ``--proxy-headers`` sets from the proxy's ``X-Forwarded-For`` (docs/deployment.md); a client's
    own forwarding headers are never trusted."""
    return request.META.get("REMOTE_ADDR") or None


def lockout_seconds() -> int:
    """The lockout's length in seconds (``HERALD_LOGIN_LOCKOUT``): the ``Retry-After`` of a
    refused login, an upper bound of the wait left."""
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds()))


def lockout_response(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the answer to a login refused during a lockout.

    Under ``/api/``: ``429 {"detail", "code": "throttled"}``; elsewhere the login page again,
    saying why, with status 429. Both carry ``Retry-After: HERALD_LOGIN_LOCKOUT``. django-axes
    8.3 calls it as ``(request, original_response, credentials)`` or ``(request, credentials)``
    depending on the middleware's mode; neither argument is needed here.
    """
    wait = lockout_seconds()
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": LOCKED_OUT_DETAIL, "code": "throttled"}, status=429)
    else:
        response = render(
            request,
            "accounts/locked_out.html",
            {"minutes": math.ceil(wait / 60), "retry_url": request.get_full_path()},
            status=429,
        )
    response["Retry-After"] = str(wait)
    response["Cache-Control"] = "no-store"
    return response
