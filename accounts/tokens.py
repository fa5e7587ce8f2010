"""JWT access and refresh tokens bound to a login session by the claim ``sid``
(docs/security.md, "Login sessions" and "Tokens").

Built on simplejwt's ``RefreshToken``/``AccessToken`` (signature, ``exp`` and ``token_type``
checks are simplejwt's); never decoded by hand, never ``UntypedToken`` (it accepts a refresh
token as an access token).
"""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

if TYPE_CHECKING:
    from .models import LoginSession

SESSION_CLAIM = "sid"


def token_pair_for(session: "LoginSession") -> tuple[str, str, str]:
    """Mint a refresh token and its access token for ``session``.

    Returns ``(access, refresh, refresh_jti)``; the caller stores ``refresh_jti`` on the session
    as the one refresh token that may be used next.
    """
    refresh = RefreshToken.for_user(session.user)
    refresh[SESSION_CLAIM] = str(session.pk)
    return str(refresh.access_token), str(refresh), refresh["jti"]


def access_token_from(raw: str) -> AccessToken | None:
    """Validate ``raw`` as an access token (signature, expiry, ``token_type=access``).

    Returns ``None`` for anything else: garbage, a bad signature, ``alg: none``, an expired or a
    refresh token. Callers still check the session (``sid``) and the user.
    """
    try:
        token = AccessToken(raw)
    except TokenError:
        return None
    if SESSION_CLAIM not in token:
        return None
    return token


def token_expiry(token: AccessToken) -> datetime:
    """The token's ``exp`` as an aware UTC datetime."""
    return datetime.fromtimestamp(int(token["exp"]), tz=UTC)


# ``auth.expiring`` is due about 60 s before expiry, or at half the lifetime if shorter
# (docs/security.md, "Token lifecycle on an open socket").
EXPIRING_NOTICE = timedelta(seconds=60)


def token_warn_at(token: AccessToken) -> datetime:
    """When a socket authenticated by ``token`` is due ``auth.expiring``."""
    expires = token_expiry(token)
    lifetime = expires - datetime.fromtimestamp(int(token.get("iat", token["exp"])), tz=UTC)
    return expires - min(EXPIRING_NOTICE, lifetime / 2)
