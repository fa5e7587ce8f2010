"""The auth REST API: tokens, refresh, logout, WebSocket tickets, login sessions
(docs/protocol.md, "HTTP API")."""

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, logout
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from config.openapi import AUTHENTICATED, error_response, errors
from config.throttling import LOCKED_OUT_DETAIL, lockout_seconds

from . import selectors, services, tokens
from .models import MANAGE_SESSIONS, LoginSession
from .receivers import client_ip
from .serializers import (
    LoginSessionSerializer,
    LogoutSerializer,
    MeSerializer,
    RefreshSerializer,
    TokenObtainSerializer,
    TokenPairSerializer,
    UserSearchQuerySerializer,
    WsTicketSerializer,
)

_PAIR = {
    "access": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.c2ln",
    "refresh": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln",
}
_SESSION_ID = "3f0c7a52-8d0e-4a43-9d1e-5b1f8e9c2a10"
_TOKEN_REFUSED = error_response(
    401,
    "Token is invalid or expired",
    "token_not_valid",
    "A bad or expired refresh token, or one whose login session was revoked (`session_revoked`).",
)


class InvalidCredentials(exceptions.AuthenticationFailed):
    """401 ``invalid_credentials``."""

    default_code = "invalid_credentials"
    default_detail = "No active account with these credentials."


def current_session_id(request: Request) -> str | None:
    """The login session of this request: the JWT's ``sid``, or the web login's."""
    sid = getattr(request.user, "login_session_id", None)
    if sid is None and hasattr(request, "session"):
        sid = request.session.get(services.WEB_SESSION_KEY)
    return str(sid) if sid else None


class _CredentialView(APIView):
    """A view authenticated by its body, not a header; failures still answer 401 with
    ``WWW-Authenticate`` (RFC 6750 §3), not DRF's 403 for header-less views."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class TokenObtainView(_CredentialView):
    """``POST /api/auth/token/``: credentials → ``{access, refresh, session_id}``; a new
    ``api`` login session. 401 ``invalid_credentials`` for a wrong password or inactive user;
    429 ``throttled`` with ``Retry-After`` while django-axes locks this username out for this IP
    (``HERALD_LOGIN_FAILURES``, ``HERALD_LOGIN_LOCKOUT``; docs/security.md, "Limits")."""

    @extend_schema(
        tags=["auth"],
        summary="Log in: a token pair and a new login session",
        auth=[],
        request=TokenObtainSerializer,
        responses={
            200: OpenApiResponse(
                TokenPairSerializer,
                examples=[OpenApiExample("pair", value={**_PAIR, "session_id": _SESSION_ID})],
            ),
            **errors(400),
            401: error_response(
                401,
                "No active account with these credentials.",
                "invalid_credentials",
                "Wrong username or password, or an inactive user.",
            ),
            429: error_response(
                429, LOCKED_OUT_DETAIL, "throttled", "Too many failed logins: locked out."
            ),
        },
        examples=[
            OpenApiExample(
                "credentials",
                value={"username": "alice", "password": "correct horse"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        body = TokenObtainSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # The Django request, so that django-axes's backend sees the client (its IP).
        user = authenticate(request._request, **body.validated_data)
        if getattr(request._request, "axes_locked_out", False):
            raise exceptions.Throttled(wait=lockout_seconds(), detail=LOCKED_OUT_DETAIL)
        if user is None:
            raise InvalidCredentials()
        session = services.login_session_create(
            user=user,
            kind=LoginSession.Kind.API,
            user_agent=request.headers.get("User-Agent", ""),
            ip=client_ip(request),
        )
        pair = services.token_pair_issue(session=session)
        return Response({**pair, "session_id": str(session.pk)})


class TokenRefreshView(_CredentialView):
    """``POST /api/auth/token/refresh/``: rotate a refresh token (see ``services.token_refresh``).

    Throttled per login session (``HERALD_THROTTLE_TOKEN_REFRESH``), or per IP for a body that
    is no valid refresh token."""

    throttle_scope = "token_refresh"

    def throttle_ident(self, request: Request) -> str | None:
        """The login session of the body's refresh token (signature checked), else ``None``."""
        raw = request.data.get("refresh") if isinstance(request.data, dict) else None
        if not isinstance(raw, str):
            return None
        try:
            return f"sid:{RefreshToken(raw).get(tokens.SESSION_CLAIM)}"
        except TokenError:
            return None

    @extend_schema(
        tags=["auth"],
        summary="Rotate a refresh token: a new pair; the old refresh stops working",
        auth=[],
        request=RefreshSerializer,
        responses={
            200: OpenApiResponse(
                TokenPairSerializer, examples=[OpenApiExample("rotated pair", value=_PAIR)]
            ),
            **errors(400),
            401: _TOKEN_REFUSED,
        },
    )
    def post(self, request: Request) -> Response:
        body = RefreshSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(services.token_refresh(raw_refresh=body.validated_data["refresh"]))


class LogoutView(APIView):
    """``POST /api/auth/logout/``: ``{refresh}`` ends that token's session; without it, the
    caller's own (bearer or cookie) session ends. 204; its sockets close with 4401."""

    permission_classes = [AllowAny]

    def perform_authentication(self, request: Request) -> None:
        # Lazy: a ``{refresh}`` body is the credential, so an expired access token that the
        # client attaches to every request must not block the logout with a 401. Without a
        # body, ``request.user`` below authenticates (and refuses a bad header) as usual.
        return None

    @extend_schema(
        tags=["auth"],
        summary="Log out: revoke a login session; its sockets close with 4401",
        request=LogoutSerializer,
        responses={
            204: OpenApiResponse(description="Revoked."),
            **errors(400),
            401: _TOKEN_REFUSED,
        },
    )
    def post(self, request: Request) -> Response:
        body = LogoutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if "refresh" in body.validated_data:
            try:
                session_id = RefreshToken(body.validated_data["refresh"]).get(tokens.SESSION_CLAIM)
            except TokenError as error:
                raise services.SessionInvalid("Invalid or expired refresh token.") from error
        elif request.user.is_authenticated:
            session_id = current_session_id(request)
        else:
            raise exceptions.NotAuthenticated()
        session = LoginSession.objects.filter(pk=session_id).first() if session_id else None
        if session is not None:
            services.login_session_revoke(session=session, reason="logout")
        if (
            hasattr(request, "session")
            and request.session.get(services.WEB_SESSION_KEY) == session_id
        ):
            logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WsTicketView(APIView):
    """``POST /api/auth/ws-ticket/``: → 201 ``{ticket, expires_in}``; single use, bound to the
    caller's login session, valid ``HERALD["WS_TICKET_LIFETIME"]`` (30) seconds."""

    throttle_scope = "ws_tickets"

    @extend_schema(
        tags=["auth"],
        summary="A single-use WebSocket ticket for `?ticket=`",
        request=None,
        responses={
            201: OpenApiResponse(
                WsTicketSerializer,
                examples=[OpenApiExample("ticket", value={"ticket": "kq3V…", "expires_in": 30})],
            ),
            **AUTHENTICATED,
        },
    )
    def post(self, request: Request) -> Response:
        session_id = current_session_id(request)
        if session_id is None:
            raise exceptions.NotAuthenticated("This request has no login session.")
        lifetime = settings.HERALD["WS_TICKET_LIFETIME"]
        ticket = services.ws_ticket_issue(
            user_id=request.user.pk, session_id=session_id, lifetime=lifetime
        )
        return Response({"ticket": ticket, "expires_in": lifetime}, status=status.HTTP_201_CREATED)


class SessionListView(APIView):
    """``GET /api/auth/sessions/``: the caller's active login sessions, newest first."""

    @extend_schema(
        tags=["auth"],
        summary="The caller's active login sessions",
        responses={200: LoginSessionSerializer(many=True), **AUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        sessions = LoginSession.objects.filter(user=request.user, revoked_at__isnull=True)
        context = {"current_session_id": current_session_id(request)}
        return Response(LoginSessionSerializer(sessions, many=True, context=context).data)


class SessionDetailView(APIView):
    """``DELETE /api/auth/sessions/{id}/``: revoke one of the caller's login sessions, or any
    user's with the permission ``accounts.manage_sessions`` (the group "Moderators" holds it;
    superusers have every permission). ``is_staff`` alone grants nothing (docs/security.md).

    204; another user's session without the permission: 403 ``permission_denied`` for staff
    (who may know it exists from the admin), else 404 ``not_found`` (not revealed)."""

    @extend_schema(
        tags=["auth"],
        summary="Revoke a login session; its sockets close with 4401 within 1 s",
        responses={204: OpenApiResponse(description="Revoked."), **errors(401, 403, 404)},
    )
    def delete(self, request: Request, session_id: str) -> Response:
        session = get_object_or_404(LoginSession, pk=session_id)
        if session.user_id != request.user.pk and not request.user.has_perm(MANAGE_SESSIONS):
            if request.user.is_staff:
                raise exceptions.PermissionDenied()
            raise exceptions.NotFound()
        services.login_session_revoke(session=session, reason="revoked")
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """``GET /api/me/``: ``{id, username, display_name}``; with a service key, its service
    account."""

    service_scopes = {"GET": None}  # any service key

    @extend_schema(
        tags=["me"],
        summary="The caller",
        responses={
            200: OpenApiResponse(
                MeSerializer,
                examples=[
                    OpenApiExample(
                        "me", value={"id": 2, "username": "alice", "display_name": "Alice"}
                    )
                ],
            ),
            **AUTHENTICATED,
        },
    )
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            MeSerializer(
                {"id": user.pk, "username": user.username, "display_name": user.display_name}
            ).data
        )


class UserSearchView(APIView):
    """``GET /api/users/?q=``: up to 20 active users matching ``q`` (every word in the username
    or the full name), by username, the caller excluded: ``[{id, username, display_name}]``.
    Only these three fields: what any member already sees of a room's members. 400 ``invalid``
    / ``max_length`` for a bad ``q``."""

    @extend_schema(
        tags=["me"],
        summary="Find users to talk to",
        parameters=[UserSearchQuerySerializer],
        responses={200: MeSerializer(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = UserSearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        users = selectors.user_search(query=query.validated_data["q"], exclude_id=request.user.pk)
        return Response(
            MeSerializer(
                [
                    {"id": u.pk, "username": u.username, "display_name": u.display_name}
                    for u in users
                ],
                many=True,
            ).data
        )
