"""What the handshake's authentication hands the consumer, in ``scope["herald"]``."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
    """

    user: Any
    session_id: str | None
    method: str | None
    close_code: int | None
    subprotocol: str | None
    expires_at: datetime | None = None
    warn_at: datetime | None = None
    close_at: datetime | None = None


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
