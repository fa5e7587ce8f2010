"""The auth REST API (docs/protocol.md, docs/security.md): tokens, rotation and reuse, logout, login sessions,
``/api/me/``, WebSocket tickets, CSRF, and the ``{detail, code}`` error shape."""

import uuid
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import LoginSession
from tests.support.auth import (
    claims_of,
    expired_access,
    session_key_of,
    signed_with_other_key,
    unsigned,
    web_login,
)

pytestmark = pytest.mark.django_db


def post(path: str, data: Any = None, access: str | None = None) -> Any:
    client = APIClient()
    if access:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.post(path, data, format="json")


def get(path: str, access: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get(path)


def delete(path: str, access: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.delete(path)


def assert_error(response: Any, status: int, code: str) -> None:
    """A 4xx with exactly ``{"detail": str, "code": code}``."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "code"}, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["code"] == code, body


def obtain(username: str, password: str | None = None) -> Any:
    return post(
        "/api/auth/token/", {"username": username, "password": password or f"pw-{username}"}
    )


def refresh(raw: str) -> Any:
    return post("/api/auth/token/refresh/", {"refresh": raw})


# POST /api/auth/token/ ----------------------------------------------------------------------


def test_token_obtain_returns_a_pair_bound_to_a_new_api_session(alice):
    response = APIClient().post(
        "/api/auth/token/",
        {"username": "alice", "password": "pw-alice"},
        format="json",
        HTTP_USER_AGENT="herald-cli/1.0",
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "session_id"}

    session = LoginSession.objects.get(pk=body["session_id"])
    assert (session.user, session.kind, session.user_agent) == (alice, "api", "herald-cli/1.0")
    assert session.revoked_at is None
    assert claims_of(body["access"])["sid"] == claims_of(body["refresh"])["sid"] == str(session.pk)
    me = get("/api/me/", body["access"])
    assert me.status_code == 200
    assert me.json()["username"] == "alice"


def test_each_token_obtain_is_its_own_session(alice):
    first, second = obtain("alice").json(), obtain("alice").json()
    assert first["session_id"] != second["session_id"]


def test_wrong_password_is_401_invalid_credentials(alice):
    response = obtain("alice", "wrong")
    assert_error(response, 401, "invalid_credentials")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not LoginSession.objects.filter(user=alice).exists()


def test_unknown_user_is_the_same_401(db):
    assert_error(obtain("nobody"), 401, "invalid_credentials")


def test_inactive_user_gets_no_token(make_user):
    make_user(username="dora", is_active=False)
    assert_error(obtain("dora"), 401, "invalid_credentials")
    assert not LoginSession.objects.exists()


@pytest.mark.parametrize(
    "body", [{}, {"username": "alice"}, {"password": "x"}, {"username": ["a"], "password": 3}]
)
def test_malformed_token_request_is_400_not_500(body, alice):
    response = post("/api/auth/token/", body)
    assert response.status_code == 400
    assert {"detail", "code"} <= set(response.json())


def test_token_endpoints_ignore_a_broken_authorization_header(alice):
    """They authenticate by their body: a stale bearer header must not block a new login."""
    response = post("/api/auth/token/", {"username": "alice", "password": "pw-alice"}, "garbage")
    assert response.status_code == 200
    response = post("/api/auth/token/refresh/", {"refresh": response.json()["refresh"]}, "garbage")
    assert response.status_code == 200


# POST /api/auth/token/refresh/ -------------------------------------------------------------


def test_refresh_rotates_and_reuse_of_the_old_refresh_revokes_the_session(alice):
    old = obtain("alice").json()

    rotated = refresh(old["refresh"])
    assert rotated.status_code == 200
    new = rotated.json()
    assert set(new) == {"access", "refresh"}
    assert new["refresh"] != old["refresh"]
    assert claims_of(new["access"])["sid"] == old["session_id"]
    assert get("/api/me/", new["access"]).status_code == 200

    # The old refresh token is a replay: refused, and the whole session dies with it.
    assert_error(refresh(old["refresh"]), 401, "session_invalid")
    assert_error(refresh(new["refresh"]), 401, "session_invalid")
    assert_error(get("/api/me/", new["access"]), 401, "session_revoked")
    assert_error(get("/api/me/", old["access"]), 401, "session_revoked")
    session = LoginSession.objects.get(pk=old["session_id"])
    assert session.revoked_at is not None
    assert session.revoked_reason == "refresh_reuse"


def test_reuse_does_not_touch_the_users_other_sessions(alice):
    victim, other = obtain("alice").json(), obtain("alice").json()
    refresh(victim["refresh"])
    refresh(victim["refresh"])
    assert get("/api/me/", other["access"]).status_code == 200
    assert refresh(other["refresh"]).status_code == 200


def test_refresh_after_logout_is_401(alice):
    pair = obtain("alice").json()
    assert post("/api/auth/logout/", {"refresh": pair["refresh"]}).status_code == 204
    assert_error(refresh(pair["refresh"]), 401, "session_invalid")


@pytest.mark.parametrize(
    "raw",
    ["garbage", "access", "other key", "alg none"],
    ids=["garbage", "an access token", "signed with another key", "alg none"],
)
def test_refresh_refuses_what_is_not_a_valid_refresh_token(raw, alice):
    pair = obtain("alice").json()
    presented = {
        "garbage": "garbage",
        "access": pair["access"],
        "other key": signed_with_other_key(pair["refresh"]),
        "alg none": unsigned(pair["refresh"]),
    }[raw]
    assert_error(refresh(presented), 401, "session_invalid")
    # None of these burned the genuine refresh token.
    assert refresh(pair["refresh"]).status_code == 200


def test_refresh_without_body_is_400(db):
    response = post("/api/auth/token/refresh/", {})
    assert response.status_code == 400
    assert response.json()["code"] == "required"


# Bearer access tokens on the API -----------------------------------------------------------


def test_a_refresh_token_is_not_an_access_token(alice_api):
    _, pair = alice_api
    assert_error(get("/api/me/", pair["refresh"]), 401, "token_not_valid")


@pytest.mark.parametrize("kind", ["expired", "other key", "garbage"])
def test_invalid_access_tokens_are_401(kind, alice, alice_api):
    session, pair = alice_api
    raw = {
        "expired": expired_access(user=alice, session_id=session.pk),
        "other key": signed_with_other_key(pair["access"]),
        "garbage": "garbage",
    }[kind]
    assert_error(get("/api/me/", raw), 401, "token_not_valid")


def test_no_credentials_is_401_not_authenticated(db):
    response = APIClient().get("/api/me/")
    assert_error(response, 401, "not_authenticated")


# POST /api/auth/logout/ --------------------------------------------------------------------


def test_logout_with_refresh_ends_that_session_only(alice_api, alice_other):
    (session, pair), (_, other) = alice_api, alice_other
    response = post("/api/auth/logout/", {"refresh": pair["refresh"]})
    assert response.status_code == 204
    assert response.content == b""

    assert_error(get("/api/me/", pair["access"]), 401, "session_revoked")
    assert_error(refresh(pair["refresh"]), 401, "session_invalid")
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert get("/api/me/", other["access"]).status_code == 200


def test_logout_with_refresh_works_beside_an_expired_access_token(alice, alice_api):
    """Clients attach their (by now expired) access token to every request; the refresh token
    in the body is what proves the session, so the logout must still happen."""
    session, pair = alice_api
    stale = expired_access(user=alice, session_id=session.pk)
    assert post("/api/auth/logout/", {"refresh": pair["refresh"]}, stale).status_code == 204
    assert_error(refresh(pair["refresh"]), 401, "session_invalid")


def test_logout_without_body_still_refuses_a_bad_access_token(alice, alice_api):
    session, pair = alice_api
    stale = expired_access(user=alice, session_id=session.pk)
    assert_error(post("/api/auth/logout/", {}, stale), 401, "token_not_valid")
    assert refresh(pair["refresh"]).status_code == 200


def test_logout_without_body_ends_the_callers_session(alice_api, alice_other):
    (_, pair), (_, other) = alice_api, alice_other
    assert post("/api/auth/logout/", {}, pair["access"]).status_code == 204
    assert_error(get("/api/me/", pair["access"]), 401, "session_revoked")
    assert get("/api/me/", other["access"]).status_code == 200


def test_logout_with_a_bad_refresh_is_401(db):
    assert_error(post("/api/auth/logout/", {"refresh": "garbage"}), 401, "session_invalid")


def test_logout_with_nothing_is_401(db):
    assert_error(post("/api/auth/logout/", {}), 401, "not_authenticated")


# /api/auth/sessions/ -----------------------------------------------------------------------


def test_sessions_lists_the_callers_active_sessions_and_marks_the_current_one(
    alice, alice_api, alice_other, bob, login
):
    (mine, pair), (other, _) = alice_api, alice_other
    login(bob)
    gone, _ = login(alice)
    post("/api/auth/logout/", {"refresh": _["refresh"]})
    web = LoginSession.objects.get(django_session_key=session_key_of(web_login(alice)))

    response = get("/api/auth/sessions/", pair["access"])
    assert response.status_code == 200
    rows = {row["id"]: row for row in response.json()}
    assert set(rows) == {str(mine.pk), str(other.pk), str(web.pk)}
    assert [rows[str(s.pk)]["current"] for s in (mine, other, web)] == [True, False, False]
    assert rows[str(web.pk)]["kind"] == "web"
    assert rows[str(mine.pk)]["kind"] == "api"
    assert set(rows[str(mine.pk)]) == {
        "id",
        "kind",
        "user_agent",
        "ip",
        "created_at",
        "last_seen_at",
        "current",
    }
    assert rows[str(mine.pk)]["user_agent"] == "pytest"
    assert rows[str(mine.pk)]["created_at"].endswith("Z")


def test_session_list_marks_the_web_session_current_for_a_cookie_caller(alice, alice_api):
    browser = web_login(alice)
    web = LoginSession.objects.get(django_session_key=session_key_of(browser))
    rows = browser.get("/api/auth/sessions/").json()
    assert {row["id"]: row["current"] for row in rows} == {
        str(web.pk): True,
        str(alice_api[0].pk): False,
    }


def test_delete_own_session_revokes_it(alice_api, alice_other):
    (session, pair), (other, other_pair) = alice_api, alice_other
    response = delete(f"/api/auth/sessions/{other.pk}/", pair["access"])
    assert response.status_code == 204

    assert_error(get("/api/me/", other_pair["access"]), 401, "session_revoked")
    assert_error(refresh(other_pair["refresh"]), 401, "session_invalid")
    listed = [row["id"] for row in get("/api/auth/sessions/", pair["access"]).json()]
    assert listed == [str(session.pk)]


def test_delete_own_current_session_logs_the_caller_out(alice_api):
    session, pair = alice_api
    assert delete(f"/api/auth/sessions/{session.pk}/", pair["access"]).status_code == 204
    assert_error(get("/api/me/", pair["access"]), 401, "session_revoked")


def test_delete_another_users_session_is_404_and_changes_nothing(alice_api, bob, login):
    _, pair = alice_api
    bobs, bob_pair = login(bob)
    assert_error(delete(f"/api/auth/sessions/{bobs.pk}/", pair["access"]), 404, "not_found")
    assert get("/api/me/", bob_pair["access"]).status_code == 200
    # Indistinguishable from a session that does not exist.
    assert_error(delete(f"/api/auth/sessions/{uuid.uuid4()}/", pair["access"]), 404, "not_found")


# Another user's session with the permission accounts.manage_sessions: test_permissions.py.


def test_session_endpoints_need_authentication(alice_api):
    session, _ = alice_api
    assert_error(APIClient().get("/api/auth/sessions/"), 401, "not_authenticated")
    assert_error(APIClient().delete(f"/api/auth/sessions/{session.pk}/"), 401, "not_authenticated")


# GET /api/me/ ------------------------------------------------------------------------------


def test_me(alice, alice_api):
    assert get("/api/me/", alice_api[1]["access"]).json() == {
        "id": alice.pk,
        "username": "alice",
        "display_name": "alice",
    }


def test_me_display_name_is_the_full_name_when_set(make_user, login):
    user = make_user(username="al", first_name="Alice", last_name="Liddell")
    _, pair = login(user)
    assert get("/api/me/", pair["access"]).json()["display_name"] == "Alice Liddell"


# POST /api/auth/ws-ticket/ -----------------------------------------------------------------


def test_ws_ticket(alice_api):
    response = post("/api/auth/ws-ticket/", None, alice_api[1]["access"])
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"ticket", "expires_in"}
    assert body["expires_in"] == 30
    assert isinstance(body["ticket"], str)
    assert len(body["ticket"]) >= 32
    second = post("/api/auth/ws-ticket/", None, alice_api[1]["access"]).json()
    assert second["ticket"] != body["ticket"]


def test_ws_ticket_needs_authentication(db):
    assert_error(post("/api/auth/ws-ticket/"), 401, "not_authenticated")


def test_ws_ticket_refused_once_the_session_is_revoked(alice_api):
    _, pair = alice_api
    post("/api/auth/logout/", {"refresh": pair["refresh"]})
    assert_error(post("/api/auth/ws-ticket/", None, pair["access"]), 401, "session_revoked")


# CSRF on cookie-authenticated writes -------------------------------------------------------


@pytest.fixture
def browser(alice: Any) -> Client:
    """A signed-in browser whose POSTs are CSRF-checked, as a real one's are."""
    return web_login(alice, enforce_csrf_checks=True)


@pytest.mark.parametrize(
    ("path", "ok"), [("/api/auth/ws-ticket/", 201), ("/api/auth/logout/", 204)]
)
def test_cookie_authenticated_post_needs_the_csrf_token(path, ok, browser):
    refused = browser.post(path, {}, content_type="application/json")
    assert_error(refused, 403, "permission_denied")
    assert "CSRF" in refused.json()["detail"]

    token = browser.cookies["csrftoken"].value
    allowed = browser.post(path, {}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert allowed.status_code == ok, allowed.content


def test_a_bearer_request_needs_no_csrf_token(alice_api):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice_api[1]['access']}")
    assert client.post("/api/auth/ws-ticket/").status_code == 201
