"""What the handshake's authentication hands the consumer, in ``scope["herald"]``, and the
handshake's ``Origin`` check."""

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from django.utils.http import is_same_domain


@dataclass(frozen=True)
class Handshake:
    """The outcome of the handshake's authentication (an ASGI middleware decides it).

    ``close_code`` is ``None`` when authenticated, else 4401 (unauthenticated) or 4403
    (inactive user). ``method`` names the credential that decided: ``header``, ``subprotocol``,
    ``ticket``, ``query``, ``cookie``, or ``None`` when there was none. ``expires_at`` is the
    access token's expiry for token methods (``hello.expires_at``), else ``None``; ``warn_at``
    is when ``auth.expiring`` is due; ``close_at`` is when the socket closes with 4401 unless
    refreshed: the token's expiry, or the Django session's for a cookie. A ticket socket
    lives as long as its login session.

    ``recheck``, when given, is awaited once the socket has joined its user and session groups
    and before ``hello``: it answers a close code if the login session was revoked (or the
    user deactivated) since the check above, else ``None``. A revocation closes the sockets in
    the session's group; one that was published between the check and the join would otherwise
    miss this socket, which then stayed open (docs/security.md, "Login sessions").
    """

    user: Any
    session_id: str | None
    method: str | None
    close_code: int | None
    subprotocol: str | None
    expires_at: datetime | None = None
    warn_at: datetime | None = None
    close_at: datetime | None = None
    recheck: Callable[[], Awaitable[int | None]] | None = None


@dataclass(frozen=True)
class SocketUser:
    """The user of an authenticated socket: what the transport and the handlers need of them,
    without a database row (``scope["user"]``)."""

    pk: int
    username: str
    is_authenticated: bool = True

    @property
    def id(self) -> int:
        """The user's id (Django's ``User.id``)."""
        return self.pk


_WS_TO_HTTP = {"ws": "http", "wss": "https"}


def _as_request(scope: dict[str, Any]) -> HttpRequest:
    """The handshake as Django's ``HttpRequest`` (an ASGI ``GET`` of the same path, headers,
    client and server; ``ws``/``wss`` as ``http``/``https``), for Django's host and scheme
    rules."""
    http_scope = dict(
        scope,
        type="http",
        method="GET",
        scheme=_WS_TO_HTTP.get(scope.get("scheme") or "ws", "http"),
    )
    return ASGIRequest(http_scope, io.BytesIO())


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the WebSocket handshake's ``Origin`` may act for this site with its cookies.

    Django's CSRF ``Origin`` check (``CsrfViewMiddleware``; Django's docs, "How CSRF protection
    works"), with ``HERALD_ALLOWED_ORIGINS`` in place of ``CSRF_TRUSTED_ORIGINS``
    (docs/security.md, "WebSocket credentials"):

    - the request's own origin: ``https`` when ``request.is_secure()`` (``wss``, or
      ``SECURE_PROXY_SSL_HEADER`` when the settings trust it), else ``http``, and
      ``request.get_host()`` with its port (``ALLOWED_HOSTS``, ``USE_X_FORWARDED_HOST``);
    - an entry ``scheme://host[:port]``, compared exactly;
    - an entry ``scheme://*.example.com``: any subdomain of ``example.com`` on that scheme
      (``django.utils.http.is_same_domain``), not ``example.com`` itself, which must be listed.

    A missing ``Origin`` is refused (browsers always send one), and so is ``null``.
    """
    request = _as_request(scope)
    origin = request.META.get("HTTP_ORIGIN")
    if not origin:
        return False
    try:
        own = f"{'https' if request.is_secure() else 'http'}://{request.get_host()}"
    except DisallowedHost:
        own = None
    allowed = settings.HERALD["ALLOWED_ORIGINS"]
    if origin == own or (origin in allowed and "*" not in origin):
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    for entry in allowed:
        scheme, _, netloc = entry.partition("://")
        if netloc.startswith("*.") and scheme == parsed.scheme:
            pattern = netloc[1:]  # ".example.com"
            if parsed.netloc != pattern[1:] and is_same_domain(parsed.netloc, pattern):
                return True
    return False


def check_allowed_origins() -> None:
    """Raise ``ImproperlyConfigured`` unless every ``HERALD_ALLOWED_ORIGINS`` entry is an origin,
    ``scheme://host[:port]`` or ``scheme://*.example.com`` (what Django's check 4_0.E001 asks of
    ``CSRF_TRUSTED_ORIGINS``, and no path). Called at start-up (``RealtimeConfig.ready``)."""
    for entry in settings.HERALD["ALLOWED_ORIGINS"]:
        scheme, sep, netloc = entry.partition("://")
        if not (scheme and sep and netloc) or "/" in netloc:
            raise ImproperlyConfigured(
                f"HERALD_ALLOWED_ORIGINS: {entry!r} is not an origin (scheme://host[:port])"
            )
