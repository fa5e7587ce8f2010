"""DRF authentication: a simplejwt access token whose login session is still active."""

from typing import Any

from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from . import context, selectors, services, tokens


class LoginSessionJWTAuthentication(JWTAuthentication):
    """``Authorization: Bearer <access JWT>`` (docs/protocol.md, "HTTP API"), refused once its
    login session is revoked.

    simplejwt validates the token as an ``AccessToken`` (so a refresh token is refused) and loads
    the user (``user_inactive`` for an inactive one). The session check is one cache read
    (``selectors.login_session_user_id``). Raises ``InvalidToken`` (401 ``token_not_valid``) or
    ``AuthenticationFailed`` (401 ``session_revoked``).
    """

    def get_user(self, validated_token: Any) -> Any:
        session_id = validated_token.get(tokens.SESSION_CLAIM)
        if session_id is None:
            raise InvalidToken("Token has no login session.")
        user = super().get_user(validated_token)
        if selectors.login_session_user_id(session_id) != user.pk:
            raise AuthenticationFailed("This login session was revoked.", code="session_revoked")
        user.login_session_id = str(session_id)
        context.current_login_session.set(str(session_id))
        services.login_session_touch(session_id=session_id)
        return user
