"""Reads for login sessions, with a shared cache so a token check costs no query
(docs/security.md, "Login sessions").

The cache is Django's default cache: per process on the embedded default (one process), Redis
with ``REDIS_URL`` so that a revocation on one process is seen by every other at once.
"""

import contextlib
import logging
from dataclasses import dataclass
from uuid import UUID

from django.core.cache import cache
from django.db.models import Q

from .models import LoginSession, User

logger = logging.getLogger(__name__)

# s: how long a session's state stays cached; revocation writes through, so the TTL only
# bounds memory.
_TTL = 86_400
# s: how long a user's ``(username, is_active)`` stays cached. A save writes through
# (``accounts.receivers``); a change that bypasses ``save()`` (``QuerySet.update``, raw SQL)
# reaches new handshakes when it expires (docs/security.md, "Login sessions").
USER_TTL = 900
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


def user_cache_key(user_id: int) -> str:
    """Cache key holding a user's ``(username, is_active)``."""
    return f"herald:user:{int(user_id)}"


def seen_cache_key(session_id: UUID | str) -> str:
    """Cache key present while a login session's ``last_seen_at`` is fresh (a minute)."""
    return f"herald:login-session-seen:{session_id}"


@dataclass(frozen=True)
class SocketIdentity:
    """Who a WebSocket handshake's credential names, as ``socket_identity`` found it.

    ``state`` is ``"ok"``, ``"revoked"`` (no such session, revoked, or another user's; also no
    such user) or ``"inactive"`` (the user exists and is inactive). ``seen`` says whether the
    session's ``last_seen_at`` is fresh (no write due).
    """

    state: str
    username: str = ""
    seen: bool = True


def socket_identity(*, user_id: int, session_id: UUID | str) -> SocketIdentity:
    """Check a user and one of their login sessions for a handshake, in one cache round trip.

    The session state, the user's ``(username, is_active)`` and the session's last-seen mark
    come from one ``get_many``; a part the cache does not hold is read from the database and
    cached. The database stays the truth: with the cache unreachable every part comes from
    it. The user is judged first: an inactive user's sessions are revoked too, and a client
    must hear "inactive" (4403, stop), not "revoked" (4401, sign in again): docs/security.md,
    "Close codes a client must handle".
    """
    try:
        session_id = UUID(str(session_id))
    except ValueError:
        return SocketIdentity(REVOKED)
    keys = [session_cache_key(session_id), user_cache_key(user_id), seen_cache_key(session_id)]
    try:
        found = cache.get_many(keys)
    except Exception as error:
        logger.warning("identity cache read failed: %s", type(error).__name__)
        found, reachable = {}, False
    else:
        reachable = True
    user = found.get(keys[1])
    if user is None:
        try:  # get(), not first(): no ORDER BY to compile
            user = tuple(User.objects.values_list("username", "is_active").get(pk=user_id))
        except User.DoesNotExist:
            return SocketIdentity(REVOKED)
        if reachable:
            with contextlib.suppress(Exception):
                cache.set(keys[1], user, USER_TTL)
    username, active = user
    if not active:
        return SocketIdentity("inactive")
    state = found.get(keys[0])
    if state is None:
        state = login_session_user_id(session_id)  # the database, then the cache
        state = REVOKED if state is None else str(state)
    if state != str(user_id):
        return SocketIdentity(REVOKED)
    return SocketIdentity("ok", username, seen=keys[2] in found)


def user_remember(user: User) -> None:
    """Cache a user's ``(username, is_active)`` (after a save); errors are logged."""
    try:
        cache.set(user_cache_key(user.pk), (user.username, user.is_active), USER_TTL)
    except Exception as error:
        logger.warning("user cache write failed: %s", type(error).__name__)


def user_forget(user_id: int) -> None:
    """Drop a user's cached state (after a delete); errors are logged."""
    try:
        cache.delete(user_cache_key(user_id))
    except Exception as error:
        logger.warning("user cache delete failed: %s", type(error).__name__)


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
