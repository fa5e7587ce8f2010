"""DRF authentication: a simplejwt access token whose login session is still active, and a
service account's API key."""

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from . import context, selectors, service_keys, services, tokens
from .models import ServiceKey


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


class ServiceKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <key>`` (docs/security.md, "Service keys"): the request acts as
    the key's service account (``request.user``) and ``request.auth`` is the ``ServiceKey``.

    No header of this kind: the next authentication class decides. A key that is unknown,
    revoked, expired or whose account is inactive: 401 ``invalid_api_key``. One query and one
    hash per request; ``last_used_at`` moves at most once a minute. What the key may do is
    :class:`accounts.permissions.ServiceKeyScopes`'s to decide.
    """

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[Any, ServiceKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        row = service_keys.service_key_from(raw.strip())
        if row is None:
            raise AuthenticationFailed("Invalid or revoked API key.", code="invalid_api_key")
        service_keys.service_key_touch(row)
        return row.user, row

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
