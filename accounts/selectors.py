"""Reads for login sessions, with a shared cache so a token check costs no query
(docs/security.md, "Login sessions").

The cache is Django's default cache: per process on the embedded default (one process), Redis
with ``REDIS_URL`` so that a revocation on one process is seen by every other at once.
"""

import contextlib
import logging
from uuid import UUID

from django.core.cache import cache
from django.db.models import Q

from .models import LoginSession, User

logger = logging.getLogger(__name__)

_TTL = 300  # s: how long a session's state is cached; revocation overwrites it at once.
REVOKED = "revoked"


def session_cache_key(session_id: UUID | str) -> str:
    """Cache key holding a login session's state: ``"<user id>"`` or ``"revoked"``."""
    return f"herald:login-session:{session_id}"


def login_session_user_id(session_id: UUID | str) -> int | None:
    """The user id of an active login session, or ``None`` if it is revoked or unknown.

    Raises nothing: a malformed id is unknown.
    """
    try:
        session_id = UUID(str(session_id))
    except ValueError:
        return None
    key = session_cache_key(session_id)
    # The database is the truth, the cache only saves a query: with the cache unreachable
    # (Redis down) the answer comes from the database, so REST requests and handshakes still
    # authenticate. A flushed cache is a miss, and a miss reads the database: a revoked session
    # stays revoked (docs/reliability.md).
    try:
        state = cache.get(key)
    except Exception as error:
        logger.warning("login session cache read failed: %s", type(error).__name__)
        state, reachable = None, False
    else:
        reachable = True
    if state is None:
        try:  # get(), not first(): no ORDER BY to compile (a handshake's hot path)
            row = LoginSession.objects.values_list("user_id", "revoked_at").get(pk=session_id)
        except LoginSession.DoesNotExist:
            row = None
        state = REVOKED if row is None or row[1] is not None else str(row[0])
        if reachable:
            with contextlib.suppress(Exception):  # the answer stands; the next read retries
                cache.set(key, state, _TTL)
    return None if state == REVOKED else int(state)


def login_session_remember(session: LoginSession) -> None:
    """Cache a new, active login session's state; a cache error is logged and ignored (the
    next read falls back to the database)."""
    try:
        cache.set(session_cache_key(session.pk), str(session.user_id), _TTL)
    except Exception as error:
        logger.warning("login session cache write failed: %s", type(error).__name__)


USER_SEARCH_LIMIT = 20


def user_search(
    *, query: str, exclude_id: int | None = None, limit: int = USER_SEARCH_LIMIT
) -> list[User]:
    """Active users whose username or full name contains ``query`` (case-insensitive), by
    username, at most ``limit``; ``exclude_id`` (the caller) left out. An empty query lists
    the first ``limit`` users. For the web UI's "start a direct message" search."""
    users = User.objects.filter(is_active=True)
    for word in query.split():
        users = users.filter(
            Q(username__icontains=word)
            | Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
        )
    if exclude_id is not None:
        users = users.exclude(pk=exclude_id)
    return list(users.order_by("username")[:limit])
