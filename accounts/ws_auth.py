"""The Channels auth middleware: who is this WebSocket, decided once, during the handshake.

The first present credential decides, in this order (docs/security.md, "WebSocket
credentials"): the ``Authorization: Bearer`` header, a ``bearer.<jwt>`` subprotocol,
``?ticket=``, ``?token=``, the Django session cookie. The result goes into ``scope["herald"]``
(a ``realtime.handshake.Handshake``) and ``scope["user"]``; nothing is stored on the middleware
instance (channels ``middleware.py``). A rejected handshake is still passed to the consumer
(``realtime.consumer.Socket``), which accepts only to close with ``Handshake.close_code``
(4401/4403), so a browser can tell "sign in again" from a network error. The one exception: a
cookie credential whose ``Origin`` is neither the request's own origin (scheme, host, port) nor
allowed by ``HERALD_ALLOWED_ORIGINS`` (``realtime.handshake.origin_allowed``) is denied with
HTTP 403 before any accept (cross-site WebSocket hijacking). Tokens and tickets are not
origin-checked: a page cannot make a browser send them on its own.
"""

import functools
import hmac
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http import parse_cookie

from realtime.handshake import Handshake, SocketUser, origin_allowed
from realtime.protocol import BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL, Close

from . import selectors, services, tokens

logger = logging.getLogger(__name__)

TOKEN_METHODS = frozenset(("header", "subprotocol", "query"))


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def find_credential(scope: dict[str, Any]) -> tuple[str | None, str]:
    """Return ``(method, raw credential)`` of the first credential present, or ``(None, "")``."""
    headers = _headers(scope)
    if b"authorization" in headers:
        scheme, _, value = headers[b"authorization"].decode("latin-1").partition(" ")
        return "header", value.strip() if scheme.lower() == "bearer" else ""
    for protocol in scope.get("subprotocols") or []:
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return "subprotocol", protocol[len(BEARER_SUBPROTOCOL_PREFIX) :]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        return "ticket", query["ticket"][0]
    if "token" in query:
        return "query", query["token"][0]
    cookie = _cookie(headers, settings.SESSION_COOKIE_NAME)
    if cookie is not None:
        return "cookie", cookie
    return None, ""


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(b"cookie")
    if not raw:
        return None
    return parse_cookie(raw.decode("latin-1")).get(name)


def _user_or_none(user_id: int) -> Any:
    """The user with that id, or ``None``. ``get()``, not ``filter().first()``: ``first()`` adds
    an ``ORDER BY`` whose compilation cost 5 % of a handshake's CPU (docs/performance.md)."""
    model = get_user_model()
    try:
        return model.objects.get(pk=user_id)
    except model.DoesNotExist:
        return None


def _cookie_identity(session_key: str) -> tuple[int | None, str | None, datetime | None]:
    """(user id, login session id, expiry) of a Django session, verified as ``auth.get_user``."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        user_id = int(store.get(SESSION_KEY))
    except (TypeError, ValueError):
        return None, None, None
    user = _user_or_none(user_id)
    if user is None or not hmac.compare_digest(
        str(store.get(HASH_SESSION_KEY, "")), user.get_session_auth_hash()
    ):
        return None, None, None
    return user_id, store.get(services.WEB_SESSION_KEY), store.get_expiry_date()


def identify(method: str | None, raw: str, subprotocol: str | None = None) -> Handshake:
    """Check one credential and say who it is (``close_code`` None) or how to close.

    Each check is the one a fresh REST request would get: an ``AccessToken`` (never a refresh
    token), its login session active, the user existing and active. A refused credential gets
    4401, an inactive user 4403 (docs/security.md, "Close codes a client must handle"). For a
    token or a ticket the user and the session come from one cache round trip, and the database
    only on a cache miss (``selectors.socket_identity``); a cookie is checked as Django's
    ``auth.get_user`` does. Sync: runs in one ``database_sync_to_async`` hop.
    """
    refused = Handshake(AnonymousUser(), None, method, Close.UNAUTHENTICATED, subprotocol)
    expires_at = warn_at = close_at = None
    user_id: Any
    if method in TOKEN_METHODS:
        token = tokens.access_token_from(raw)
        if token is None:
            return refused
        user_id, session_id = token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"]), token["sid"]
        expires_at = close_at = tokens.token_expiry(token)
        warn_at = tokens.token_warn_at(token)
    elif method == "ticket":
        claims = services.ws_ticket_redeem(raw)
        if claims is None:
            return refused
        user_id, session_id = claims["user_id"], claims["sid"]
    elif method == "cookie":
        user_id, session_id, close_at = _cookie_identity(raw)
    else:
        return refused
    try:
        user_id = int(user_id)
    except (TypeError, ValueError):
        return refused
    if session_id is None:
        return refused
    found = selectors.socket_identity(user_id=user_id, session_id=session_id)
    if found.state == "inactive":
        return replace(refused, close_code=Close.FORBIDDEN)
    if found.state != "ok":
        return refused
    if not found.seen:
        services.login_session_touch(session_id=session_id)
    return Handshake(
        SocketUser(user_id, found.username),
        str(session_id),
        method,
        None,
        subprotocol,
        expires_at,
        warn_at,
        close_at,
        functools.partial(_recheck, user_id, str(session_id)),
    )


async def _recheck(user_id: int, session_id: str) -> int | None:
    """``Handshake.recheck``: the socket's close code if its login session was revoked or its
    user deactivated since :func:`identify` (one cache read, as there), else ``None``."""
    found = await database_sync_to_async(selectors.socket_identity)(
        user_id=user_id, session_id=session_id
    )
    if found.state == "inactive":
        return int(Close.FORBIDDEN)
    return None if found.state == "ok" else int(Close.UNAUTHENTICATED)


async def authenticate(scope: dict[str, Any]) -> Handshake | None:
    """Decide the handshake's identity; ``None`` means deny with HTTP 403 (a cookie from a
    foreign or missing Origin)."""
    offered = scope.get("subprotocols") or []
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
    method, raw = find_credential(scope)
    if method == "cookie" and not origin_allowed(scope):
        return None
    return await database_sync_to_async(identify)(method, raw, subprotocol)


@dataclass(frozen=True)
class RefreshOutcome:
    """What ``auth.refresh`` leads to: new expiry times, or an ``error`` code and/or a close."""

    expires_at: datetime | None = None
    warn_at: datetime | None = None
    error: str | None = None
    detail: str = ""
    close_code: int | None = None


def check_refresh(raw: str, *, user_id: int, session_id: str) -> RefreshOutcome:
    """Check the token of an ``auth.refresh`` frame against the socket's user and session.

    As docs/security.md ("Token lifecycle on an open socket") states: a valid access token of
    the same user and login session extends the socket; another user's token closes it with
    4403; a revoked session closes it with 4401. An invalid or expired token, or one of the
    user's other sessions, is an ``error`` and the socket keeps its current expiry. Sync (one cache read, one user query).
    """
    token = tokens.access_token_from(raw)
    if token is None:
        return RefreshOutcome(error="invalid_message", detail="token: not a valid access token.")
    try:
        token_user = int(token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"]))
    except (TypeError, ValueError):
        return RefreshOutcome(error="invalid_message", detail="token: not a valid access token.")
    if token_user != user_id:
        return RefreshOutcome(
            error="forbidden",
            detail="token: another user's token.",
            close_code=Close.FORBIDDEN,
        )
    if str(token["sid"]) != session_id:
        return RefreshOutcome(error="forbidden", detail="token: another login session's token.")
    if selectors.login_session_user_id(session_id) != user_id:
        return RefreshOutcome(close_code=Close.UNAUTHENTICATED)
    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        return RefreshOutcome(close_code=Close.FORBIDDEN)
    return RefreshOutcome(tokens.token_expiry(token), tokens.token_warn_at(token))


class HeraldAuthMiddleware:
    """ASGI middleware for the ``websocket`` scope: runs :func:`authenticate` once."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        try:
            auth = await authenticate(scope)
        except Exception:
            # A dependency failed (database down): accept only to close with 4503, so the
            # client reconnects with backoff, instead of daphne answering HTTP 500.
            logger.warning("handshake closed with 4503: authentication failed", exc_info=True)
            offered = scope.get("subprotocols") or []
            auth = Handshake(
                AnonymousUser(),
                None,
                None,
                Close.UNAVAILABLE,
                SUBPROTOCOL if SUBPROTOCOL in offered else None,
            )
        if auth is None:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close"})  # before accept: HTTP 403
            return None
        return await self.app(dict(scope, user=auth.user, herald=auth), receive, send)
