"""The WebSocket handshake's authentication (docs/security.md), through the full ASGI
application: every credential method, their precedence, every refusal and what it leaks."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts import services
from accounts.models import LoginSession
from accounts.selectors import user_cache_key
from notifications import services as notification_services
from tests.support.auth import (
    CLOSE_4401,
    CLOSE_4403,
    PROBE_UNREAD,
    TOKEN_METHODS,
    assert_refused,
    call,
    chosen_subprotocol,
    claims_of,
    credential,
    expired_access,
    hello_of,
    issue_ticket,
    probe_groups,
    session_key_of,
    signed_with_other_key,
    unsigned,
    web_login,
)

pytestmark = pytest.mark.django_db(transaction=True)

ALL_METHODS = ("header", "subprotocol", "ticket", "query", "cookie")


@dataclass(frozen=True)
class Presented:
    """A credential as the test presents it, and what the server should make of it."""

    kwargs: dict[str, Any]
    session_id: str
    expires_at: int | None  # the access token's exp, for token methods


def present(method: str, user: Any, api: tuple[LoginSession, dict[str, str]]) -> Presented:
    """Present ``user``'s credential by ``method``: the api session's token or a ticket of it,
    or, for ``cookie``, the cookie of a fresh web login (its own login session)."""
    session, pair = api
    if method in TOKEN_METHODS:
        return Presented(
            credential(method, pair["access"]), str(session.pk), claims_of(pair["access"])["exp"]
        )
    if method == "ticket":
        return Presented(credential(method, issue_ticket(pair["access"])), str(session.pk), None)
    browser = web_login(user)
    web = LoginSession.objects.get(django_session_key=session_key_of(browser))
    return Presented(credential("cookie", session_key_of(browser)), str(web.pk), None)


def from_epoch(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def parse_z(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1] + "+00:00")


# Each method succeeds ----------------------------------------------------------------------


@pytest.fixture(params=ALL_METHODS)
def good(request: Any, alice: Any, alice_api: Any) -> Presented:
    return present(request.param, alice, alice_api)


async def test_each_method_authenticates_with_hello_first(good, alice, open_ws, settings):
    comm = open_ws(**good.kwargs)
    hello = await hello_of(comm, chosen_subprotocol(good.kwargs))

    assert hello["user"] == {"id": alice.pk, "username": "alice"}
    assert hello["session_id"] == good.session_id
    assert isinstance(hello["connection_id"], str)
    assert hello["connection_id"]
    assert hello["heartbeat"] == settings.HERALD["WS_HEARTBEAT"]
    if good.expires_at is None:
        assert hello["expires_at"] is None
    else:
        assert parse_z(hello["expires_at"]) == from_epoch(good.expires_at)

    # Authenticated for real: the socket is in alice's group and gets her notifications.
    await call(notification_services.notification_create, recipient_ids=[alice.pk], title="hi")
    frame = await comm.receive_json_from()
    assert frame["type"] == "notification"
    assert frame["notification"]["title"] == "hi"


async def test_subprotocol_bearer_is_not_echoed_back(alice_api, open_ws):
    """The server selects ``herald.v1``, never the token-carrying subprotocol."""
    _, pair = alice_api
    comm = open_ws(subprotocols=["herald.v1", f"bearer.{pair['access']}"])
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == "herald.v1"
    assert (await comm.receive_json_from())["type"] == "hello"


async def test_every_socket_of_a_user_has_its_own_connection_and_gets_her_notifications(
    alice, alice_api, alice_other, open_ws
):
    first = open_ws(**credential("header", alice_api[1]["access"]))
    second = open_ws(**credential("query", alice_other[1]["access"]))
    hello_1, hello_2 = await hello_of(first), await hello_of(second)
    assert hello_1["connection_id"] != hello_2["connection_id"]
    assert hello_1["session_id"] != hello_2["session_id"]

    await call(notification_services.notification_create, recipient_ids=[alice.pk], title="both")
    assert (await first.receive_json_from())["notification"]["title"] == "both"
    assert (await second.receive_json_from())["notification"]["title"] == "both"


# Precedence: the first present credential decides ------------------------------------------


@pytest.fixture
def five_credentials(alice: Any, login: Any) -> list[Presented]:
    """One valid credential of each method, each of its own login session, in contract order."""
    return [present(method, alice, login(alice)) for method in ALL_METHODS]


def combine(presented: list[Presented]) -> dict[str, Any]:
    headers: list[tuple[bytes, bytes]] = []
    query: list[str] = []
    subprotocols: list[str] | None = None
    for item in presented:
        headers += item.kwargs.get("headers", [])
        subprotocols = item.kwargs.get("subprotocols", subprotocols)
        if "path" in item.kwargs:
            query.append(item.kwargs["path"].split("?", 1)[1])
    path = "/ws/" + ("?" + "&".join(query) if query else "")
    return {"path": path, "headers": headers, "subprotocols": subprotocols}


@pytest.mark.parametrize("first", range(len(ALL_METHODS)), ids=ALL_METHODS)
async def test_the_first_present_credential_decides(first, five_credentials, open_ws):
    kwargs = combine(five_credentials[first:])
    hello = await hello_of(open_ws(**kwargs), chosen_subprotocol(kwargs))
    assert hello["session_id"] == five_credentials[first].session_id


@pytest.mark.parametrize(
    ("bad", "good_method"),
    [
        ("header", "subprotocol"),
        ("header", "query"),
        ("header", "cookie"),
        ("subprotocol", "ticket"),
        ("subprotocol", "query"),
        ("ticket", "query"),
        ("query", "cookie"),
    ],
)
async def test_a_bad_earlier_credential_is_not_rescued_by_a_good_later_one(
    bad, good_method, alice, alice_api, open_ws
):
    good_one = await call(present, good_method, alice, alice_api)
    kwargs = combine([Presented(credential(bad, "garbage"), "", None), good_one])
    await assert_refused(open_ws(**kwargs))


async def test_a_non_bearer_authorization_header_is_not_a_credential_to_skip(alice_api, open_ws):
    """``Authorization`` is present, so it decides: a Basic header cannot fall through to
    a token further down the list."""
    kwargs = credential("query", alice_api[1]["access"])
    await assert_refused(open_ws(headers=[(b"authorization", b"Basic YWxpY2U6cHc=")], **kwargs))


# Refusals: 4401, nothing sent first, no group joined -----------------------------------------


def _refused_cases() -> list[str]:
    cases = ["no credential", "empty bearer header", "garbage ticket", "token without sid"]
    for method in TOKEN_METHODS:
        cases += [
            f"garbage {method}",
            f"other key {method}",
            f"alg none {method}",
            f"expired {method}",
            f"refresh token {method}",
            f"revoked session {method}",
        ]
    return cases + [
        "deleted user",
        "revoked session ticket",
        "garbage cookie",
        "signed-out cookie",
        "revoked session cookie",
    ]


@pytest.fixture(params=_refused_cases())
def refused(request: Any, alice: Any, alice_api: Any, make_user: Any, login: Any) -> Any:
    """``(open_ws kwargs, [(user id, session id)] whose groups the socket must not join)``."""
    case: str = request.param
    session, pair = alice_api
    probe = [(alice.pk, session.pk)]
    method = case.rsplit(" ", 1)[-1]
    if case == "no credential":
        return {}, probe
    if case == "empty bearer header":
        return {"headers": [(b"authorization", b"Bearer ")]}, probe
    if case.startswith("garbage"):
        return credential(method, "garbage"), probe
    if case == "token without sid":
        return credential("header", str(AccessToken.for_user(alice))), probe
    if case.startswith("other key"):
        return credential(method, signed_with_other_key(pair["access"])), probe
    if case.startswith("alg none"):
        return credential(method, unsigned(pair["access"])), probe
    if case.startswith("expired"):
        return credential(method, expired_access(user=alice, session_id=session.pk)), probe
    if case.startswith("refresh token"):
        return credential(method, pair["refresh"]), probe
    if case == "revoked session ticket":
        ticket = issue_ticket(pair["access"])
        services.login_session_revoke(session=session, reason="test")
        return credential("ticket", ticket), probe
    if case == "revoked session cookie":
        browser = web_login(alice)
        web = LoginSession.objects.get(django_session_key=session_key_of(browser))
        services.login_session_revoke(session=web, reason="test")
        return credential("cookie", session_key_of(browser)), [*probe, (alice.pk, web.pk)]
    if case.startswith("revoked session"):
        services.login_session_revoke(session=session, reason="test")
        return credential(method, pair["access"]), probe
    if case == "deleted user":
        carol = make_user(username="carol")
        carol_session, carol_pair = login(carol)
        carol_id = carol.pk
        carol.delete()
        return credential("header", carol_pair["access"]), [*probe, (carol_id, carol_session.pk)]
    if case == "garbage cookie":
        return credential("cookie", "garbage"), probe
    if case == "signed-out cookie":
        browser = web_login(alice)
        key = session_key_of(browser)
        assert browser.post("/logout/").status_code == 302
        return credential("cookie", key), probe
    raise AssertionError(case)


async def test_refused_credentials_close_4401_before_any_frame_and_join_no_group(
    refused, alice_other, open_ws
):
    kwargs, probe = refused
    control = open_ws(**credential("header", alice_other[1]["access"]))
    await hello_of(control)

    comm = open_ws(**kwargs)
    await assert_refused(comm, 4401)

    await probe_groups(*probe)
    # The valid socket of the same user proves the probe went out; the refused one saw nothing.
    assert (await control.receive_json_from())["unread_count"] == PROBE_UNREAD
    assert await comm.receive_nothing(timeout=0.1)


async def test_a_refused_socket_gets_no_real_notification_either(alice, open_ws):
    comm = open_ws(**credential("query", "garbage"))
    await assert_refused(comm)
    await call(notification_services.notification_create, recipient_ids=[alice.pk], title="x")
    assert await comm.receive_nothing(timeout=0.1)


# Inactive users: 4403 ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ALL_METHODS)
async def test_inactive_user_is_closed_4403_and_joins_no_group(
    method, alice, alice_api, bob, login, open_ws
):
    presented = await call(present, method, alice, alice_api)
    # A deactivation that bypasses save() (a bulk update, a raw SQL change) leaves the login
    # sessions alone, and the user's cached state too: the handshake must refuse the user once
    # that state expires (accounts.selectors.USER_TTL), which forgetting it stands for here.
    await call(get_user_model().objects.filter(pk=alice.pk).update, is_active=False)
    await call(cache.delete, user_cache_key(alice.pk))

    comm = open_ws(**presented.kwargs)
    await assert_refused(comm, 4403)
    await probe_groups((alice.pk, presented.session_id))
    assert await comm.receive_nothing(timeout=0.1)


@pytest.mark.parametrize("method", ["header", "subprotocol", "ticket", "query"])
async def test_user_deactivated_through_save_is_refused_4403(method, alice, alice_api, open_ws):
    """The admin form's way (``save()``): it also revokes her sessions, yet a handshake with a
    still-unexpired token must say 4403 (stop), not 4401 (get a new token)."""
    presented = await call(present, method, alice, alice_api)

    def deactivate() -> None:
        alice.is_active = False
        alice.save()

    await call(deactivate)
    await assert_refused(open_ws(**presented.kwargs), 4403)


async def test_deactivating_a_user_closes_her_open_sockets_4403(
    alice, alice_api, alice_other, bob, login, open_ws
):
    mine = [
        open_ws(**credential("header", alice_api[1]["access"])),
        open_ws(**credential("query", alice_other[1]["access"])),
    ]
    bobs = open_ws(**credential("header", (await call(login, bob))[1]["access"]))
    for comm in [*mine, bobs]:
        await hello_of(comm)

    def deactivate() -> None:
        alice.is_active = False
        alice.save()

    await call(deactivate)
    for comm in mine:
        assert await comm.receive_output(timeout=1) == CLOSE_4403
    assert await bobs.receive_nothing(timeout=0.1)


# Tickets -------------------------------------------------------------------------------------


async def test_a_ticket_works_once(alice_api, open_ws):
    session, pair = alice_api
    ticket = await call(issue_ticket, pair["access"])

    first = open_ws(**credential("ticket", ticket))
    assert (await hello_of(first))["session_id"] == str(session.pk)
    await assert_refused(open_ws(**credential("ticket", ticket)))
    # The reuse did not disturb the socket that used it first.
    await first.send_json_to({"type": "ping", "ref": 1})
    assert await first.receive_json_from() == {"type": "pong", "ref": 1}


async def test_an_expired_ticket_is_refused(alice_api, open_ws, settings):
    settings.HERALD = {**settings.HERALD, "WS_TICKET_LIFETIME": 1}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice_api[1]['access']}")
    response = await call(client.post, "/api/auth/ws-ticket/")
    assert response.status_code == 201
    assert response.json()["expires_in"] == 1

    await asyncio.sleep(1.1)
    await assert_refused(open_ws(**credential("ticket", response.json()["ticket"])))


# Cookies and Origin: tests/accounts/test_origin.py


# Revocation closes open sockets --------------------------------------------------------------


async def test_api_logout_closes_that_sessions_sockets_only(alice_api, alice_other, open_ws):
    (_, pair), (_, other) = alice_api, alice_other
    doomed = [
        open_ws(**credential("header", pair["access"])),
        open_ws(**credential("subprotocol", pair["access"])),
    ]
    survivor = open_ws(**credential("header", other["access"]))
    await hello_of(doomed[0])
    await hello_of(doomed[1], "herald.v1")
    await hello_of(survivor)

    response = await call(
        APIClient().post, "/api/auth/logout/", {"refresh": pair["refresh"]}, format="json"
    )
    assert response.status_code == 204

    for comm in doomed:
        assert await comm.receive_output(timeout=1) == CLOSE_4401
    assert await survivor.receive_nothing(timeout=0.1)
    await survivor.send_json_to({"type": "ping"})
    assert (await survivor.receive_json_from())["type"] == "pong"
    # And a reconnect with the logged-out session's token is refused.
    await assert_refused(open_ws(**credential("header", pair["access"])))


async def test_deleting_a_session_closes_its_sockets(alice_api, alice_other, open_ws):
    (session, _), (_, other) = alice_api, alice_other
    doomed = open_ws(**credential("header", alice_api[1]["access"]))
    survivor = open_ws(**credential("header", other["access"]))
    await hello_of(doomed)
    await hello_of(survivor)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other['access']}")
    response = await call(client.delete, f"/api/auth/sessions/{session.pk}/")
    assert response.status_code == 204

    assert await doomed.receive_output(timeout=1) == CLOSE_4401
    assert await survivor.receive_nothing(timeout=0.1)


async def test_refresh_token_reuse_closes_the_sessions_sockets(alice_api, open_ws):
    _, pair = alice_api
    comm = open_ws(**credential("header", pair["access"]))
    await hello_of(comm)
    client = APIClient()
    first = await call(
        client.post, "/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
    )
    assert first.status_code == 200
    assert await comm.receive_nothing(timeout=0.1)  # a rotation alone closes nothing

    replay = await call(
        client.post, "/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
    )
    assert replay.status_code == 401
    assert await comm.receive_output(timeout=1) == CLOSE_4401


async def test_a_token_handshake_reads_no_database_once_logged_in(alice, login, open_ws):
    """The identity a handshake needs comes from the shared cache that the login filled and
    that revocation and a user's save write through (accounts.selectors.socket_identity)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.ws_auth import identify

    session, pair = await call(login, alice)
    await call(identify, "header", pair["access"])  # the session's last_seen_at is due once

    def handshake() -> tuple[Any, list[dict[str, Any]]]:
        with CaptureQueriesContext(connection) as queries:
            result = identify("header", pair["access"])
        return result, queries.captured_queries

    result, queries = await call(handshake)
    assert result.close_code is None
    assert (result.user.pk, result.user.username) == (alice.pk, "alice")
    assert queries == []


async def test_a_revocation_between_the_check_and_the_join_still_closes_the_socket(
    alice_api, open_ws, monkeypatch
):
    """The race ``make chaos`` found: the handshake read "active", then the revocation published
    its close to the session's group before this socket had joined it. The socket must not stay
    open: it is checked again once in its groups, before ``hello``."""
    from accounts import ws_auth

    session, pair = alice_api
    identify = ws_auth.identify

    def identify_then_revoke(*args: Any) -> Any:
        decided = identify(*args)  # "ok": the session was active a moment ago
        services.login_session_revoke(session=LoginSession.objects.get(pk=session.pk), reason="t")
        return decided

    monkeypatch.setattr(ws_auth, "identify", identify_then_revoke)
    await assert_refused(open_ws(**credential("header", pair["access"])), 4401)  # no hello first
