"""Writes for login sessions and tokens: create, issue, rotate, revoke
(docs/protocol.md, "HTTP API"; docs/security.md, "Login sessions").

Revoking a session marks it in the database and the shared cache, then, after commit, tells
the ``session.<id>`` group so that its sockets close on every process.
"""

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from realtime import publisher
from realtime.events import socket_close
from realtime.groups import session_group
from realtime.protocol import Close

from . import context, selectors, tokens
from .models import LoginSession

User = get_user_model()


class SessionInvalid(exceptions.AuthenticationFailed):
    """401 ``session_invalid``: a refresh token whose login session is revoked or reused."""

    default_code = "session_invalid"
    default_detail = "This login session is no longer valid; sign in again."


def login_session_create(
    *,
    user: Any,
    kind: str,
    user_agent: str = "",
    ip: str | None = None,
    django_session_key: str = "",
) -> LoginSession:
    """Store a new login session for ``user`` (``kind`` is ``"web"`` or ``"api"``).

    Its state and the user's are cached once the row commits, so the login's first request or
    WebSocket handshake finds them without a query (``selectors.socket_identity``).
    """
    session = LoginSession.objects.create(
        user=user,
        kind=kind,
        user_agent=user_agent[:400],
        ip=ip or None,
        django_session_key=django_session_key,
    )

    def remember() -> None:
        selectors.login_session_remember(session)
        selectors.user_remember(user)

    transaction.on_commit(remember, robust=True)
    return session


def token_pair_issue(*, session: LoginSession) -> dict[str, str]:
    """Mint ``{access, refresh}`` for the session; only this refresh token may rotate next."""
    access, refresh, jti = tokens.token_pair_for(session)
    now = timezone.now()
    LoginSession.objects.filter(pk=session.pk).update(
        refresh_jti=jti,
        last_seen_at=now,
        refresh_expires_at=now + settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"],
    )
    return {"access": access, "refresh": refresh}


_TOUCH_EVERY = 60  # s: at most one last_seen_at write per session per minute


def login_session_touch(*, session_id: Any) -> None:
    """Record activity on a login session: ``last_seen_at = now``, throttled by the cache so a
    busy socket or API client costs one write a minute, not one per frame or request."""
    try:
        due = cache.add(selectors.seen_cache_key(session_id), 1, _TOUCH_EVERY)
    except Exception:  # cache down (Redis): skip the bookkeeping rather than fail the request
        return
    if due:
        LoginSession.objects.filter(pk=session_id).update(last_seen_at=timezone.now())


def token_refresh(*, raw_refresh: str) -> dict[str, str]:
    """Rotate a refresh token: return a new ``{access, refresh}`` and retire the old one.

    Raises ``SessionInvalid`` (401) for an invalid, expired or non-refresh token, a revoked
    session, or a refresh token that was already rotated; the last one is a reuse, the mark of a
    stolen token, and revokes the whole session (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
    """
    try:
        token = RefreshToken(raw_refresh)
    except TokenError as error:
        raise SessionInvalid("Invalid or expired refresh token.") from error
    session_id = token.get(tokens.SESSION_CLAIM)
    with transaction.atomic():
        session = (
            LoginSession.objects.select_for_update()
            .select_related("user")
            .filter(pk=session_id)
            .first()
            if session_id
            else None
        )
        if session is None or session.revoked_at is not None or not session.user.is_active:
            raise SessionInvalid()
        reused = session.refresh_jti != token["jti"]
        if reused:
            login_session_revoke(session=session, reason="refresh_reuse")
        else:
            pair = token_pair_issue(session=session)
    if reused:
        raise SessionInvalid("This refresh token was already used; the session is revoked.")
    return pair


def _mark_revoked(sessions: Iterable[LoginSession], *, reason: str, close_code: int) -> None:
    batch = [s for s in sessions if s.revoked_at is None]
    if not batch:
        return
    now = timezone.now()
    LoginSession.objects.filter(pk__in=[s.pk for s in batch]).update(
        revoked_at=now, revoked_reason=reason
    )
    keys = [s.django_session_key for s in batch if s.django_session_key]
    if keys:
        from django.contrib.sessions.models import Session

        Session.objects.filter(session_key__in=keys).delete()
    for session in batch:
        session.revoked_at, session.revoked_reason = now, reason
    cache.set_many({selectors.session_cache_key(s.pk): selectors.REVOKED for s in batch}, 86_400)
    publisher.publish_on_commit((session_group(s.pk), socket_close(code=close_code)) for s in batch)


def login_session_revoke(
    *, session: LoginSession, reason: str, close_code: int = Close.UNAUTHENTICATED
) -> None:
    """Revoke one login session: its tokens fail and its sockets close with ``close_code``."""
    login_sessions_revoke(sessions=[session], reason=reason, close_code=close_code)


def login_sessions_revoke(
    *, sessions: list[LoginSession], reason: str, close_code: int = Close.UNAUTHENTICATED
) -> None:
    """Revoke several login sessions at once (admin action); see ``login_session_revoke``."""
    with transaction.atomic():
        _mark_revoked(sessions, reason=reason, close_code=close_code)


def user_sessions_revoke(
    *,
    user_id: int,
    reason: str,
    close_code: int = Close.UNAUTHENTICATED,
    keep: LoginSession | None = None,
) -> None:
    """Revoke every active session of a user except ``keep`` (password change, deactivation)."""
    with transaction.atomic():
        sessions = LoginSession.objects.filter(user_id=user_id, revoked_at__isnull=True)
        if keep is not None:
            sessions = sessions.exclude(pk=keep.pk)
        _mark_revoked(list(sessions), reason=reason, close_code=close_code)


def web_logout(*, django_session: SessionBase) -> None:
    """Revoke the login session stored in a Django session (web logout)."""
    session_id = django_session.get(WEB_SESSION_KEY)
    if session_id:
        session = LoginSession.objects.filter(pk=session_id).first()
        if session is not None:
            login_session_revoke(session=session, reason="logout")


WEB_SESSION_KEY = "herald_sid"


def ws_ticket_issue(*, user_id: int, session_id: str, lifetime: int) -> str:
    """Store a single-use WebSocket ticket for ``lifetime`` seconds; return it
    (docs/security.md, "WebSocket credentials")."""
    ticket = secrets.token_urlsafe(32)
    cache.set(_ticket_key(ticket), {"user_id": user_id, "sid": session_id}, lifetime)
    return ticket


def ws_ticket_redeem(ticket: str) -> dict[str, Any] | None:
    """Use a ticket: return ``{user_id, sid}`` once, ``None`` on reuse, expiry or garbage.

    Single use holds under concurrency: of two redeemers only the one whose ``delete`` removed
    the key wins (Django's ``cache.delete`` returns whether a key was deleted).
    """
    if not ticket or len(ticket) > 128:
        return None
    key = _ticket_key(ticket)
    data = cache.get(key)
    if data is None or not cache.delete(key):
        return None
    return data


def _ticket_key(ticket: str) -> str:
    # Hashed: the ticket is client input, and the cache key must stay short and plain ASCII.
    return "herald:ws-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def user_changed_credentials(*, user: Any, deactivated: bool, password_changed: bool) -> None:
    """Apply the login-session rules after a user is saved (docs/security.md, "Login
    sessions"): deactivation revokes every login session (sockets close 4403); a password
    change revokes every session but the request's own
    (``accounts.context.current_login_session``; sockets close 4401)."""
    if deactivated:
        user_sessions_revoke(user_id=user.pk, reason="deactivated", close_code=Close.FORBIDDEN)
    elif password_changed:
        keep_id = context.current_login_session.get()
        keep = LoginSession.objects.filter(pk=keep_id, user_id=user.pk).first() if keep_id else None
        user_sessions_revoke(user_id=user.pk, reason="password_changed", keep=keep)
