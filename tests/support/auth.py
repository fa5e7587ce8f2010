"""Credentials for the authentication suites: hostile tokens, web logins, tickets, handshakes
through the full ASGI app (``tests.support.asgi``)."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from notifications import events
from realtime import groups, publisher
from tests.support.asgi import Headers

ALLOWED_ORIGIN = "http://localhost:8000"  # the handshake's own origin: see ``cookie_headers``
HOST = "localhost:8000"
CLOSE_4401 = {"type": "websocket.close", "code": 4401}
CLOSE_4403 = {"type": "websocket.close", "code": 4403}

PROBE_UNREAD = 424242  # marks the frame of ``probe_groups``


def bearer(access: str) -> Headers:
    return [(b"authorization", f"Bearer {access}".encode())]


def cookie_headers(
    session_key: str, origin: str | None = ALLOWED_ORIGIN, host: str = HOST
) -> Headers:
    """A browser's handshake headers: the session cookie, ``Host`` and (unless ``None``)
    ``Origin``; by default the page's own origin (``http://localhost:8000``)."""
    headers = [
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()),
        (b"host", host.encode()),
    ]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return headers


def claims_of(raw: str) -> dict[str, Any]:
    """The payload of a JWT, signature unchecked (to forge look-alikes from a real token)."""
    return jwt.decode(raw, options={"verify_signature": False})


def signed_with_other_key(raw: str) -> str:
    """The same claims as ``raw``, signed HS256 with a key that is not the server's."""
    return jwt.encode(claims_of(raw), "not-the-server-key-" + "x" * 48, algorithm="HS256")


def unsigned(raw: str) -> str:
    """The same claims as ``raw`` with ``alg: none`` and no signature."""
    return jwt.encode(claims_of(raw), None, algorithm="none")


def expired_access(*, user: Any, session_id: Any) -> str:
    """A genuine access token of the session, signed with the server key, expired 10 min ago."""
    token = AccessToken.for_user(user)
    token["sid"] = str(session_id)
    past = timezone.now() - timedelta(minutes=20)
    token.set_iat(at_time=past)
    token.set_exp(from_time=past, lifetime=timedelta(minutes=10))
    return str(token)


def issue_ticket(access: str) -> str:
    """``POST /api/auth/ws-ticket/`` as the bearer of ``access``; the ticket."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    response = client.post("/api/auth/ws-ticket/")
    assert response.status_code == 201, response.content
    return response.json()["ticket"]


def web_login(user: Any, **client_kwargs: Any) -> Client:
    """A browser signed in through the real ``POST /login/`` form (password ``pw-<name>``)."""
    browser = Client(**client_kwargs)
    response = browser.get("/login/")
    assert response.status_code == 200
    response = browser.post(
        "/login/",
        {
            "username": user.username,
            "password": f"pw-{user.username}",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 302, response.content
    return browser


def session_key_of(browser: Client) -> str:
    return browser.cookies[settings.SESSION_COOKIE_NAME].value


async def probe_groups(*pairs: tuple[Any, Any]) -> None:
    """Send a ``notification.read`` event (relayed as is by any socket in the group, whatever
    its state) to ``user.<id>`` and ``session.<sid>`` of each ``(user id, session id)``: only a
    socket that joined one of those groups can see it."""
    event = events.notification_read(ids=[], unread_count=PROBE_UNREAD)
    targets = []
    for user_id, session_id in pairs:
        if user_id is not None:
            targets.append((groups.user_group(user_id), event))
        if session_id is not None:
            targets.append((groups.session_group(session_id), event))
    assert await publisher.apublish(targets) == 0


async def hello_of(comm: WebsocketCommunicator, subprotocol: str | None = None) -> dict[str, Any]:
    """Connect, expect an accept (with ``subprotocol``) and a ``hello`` first frame; return it."""
    connected, chosen = await comm.connect()
    assert connected, f"handshake denied: {chosen}"
    assert chosen == subprotocol
    frame = await comm.receive_json_from()
    assert frame["type"] == "hello", frame
    return frame


async def assert_refused(comm: WebsocketCommunicator, code: int = 4401) -> None:
    """The handshake is accepted only to be closed with ``code``; nothing is sent before."""
    connected, _ = await comm.connect()
    assert connected, "a refused credential must still be accepted, to carry the close code"
    first = await comm.receive_output(timeout=1)
    assert first == {"type": "websocket.close", "code": code}, first


async def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run sync (ORM, test client) code from an async test."""
    return await database_sync_to_async(func)(*args, **kwargs)


TOKEN_METHODS = ("header", "subprotocol", "query")


def credential(method: str, raw: str) -> dict[str, Any]:
    """``open_ws`` keyword arguments presenting ``raw`` by one of the WebSocket's credential
    methods (docs/security.md, "WebSocket credentials")."""
    if method == "header":
        return {"headers": bearer(raw)}
    if method == "subprotocol":
        return {"subprotocols": ["herald.v1", f"bearer.{raw}"]}
    if method == "ticket":
        return {"path": f"/ws/?ticket={raw}"}
    if method == "query":
        return {"path": f"/ws/?token={raw}"}
    if method == "cookie":
        return {"headers": cookie_headers(raw)}
    raise AssertionError(method)


def chosen_subprotocol(kwargs: dict[str, Any]) -> str | None:
    """The subprotocol the server must select for these ``open_ws`` arguments."""
    return "herald.v1" if "herald.v1" in (kwargs.get("subprotocols") or []) else None
