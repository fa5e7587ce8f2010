"""The web sign-in and sign-out pages (docs/security.md): a web login is a login session, and
signing out revokes it and closes its sockets."""

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import LoginSession
from tests.support.auth import (
    CLOSE_4401,
    assert_refused,
    call,
    credential,
    hello_of,
    session_key_of,
    web_login,
)


@pytest.mark.django_db
def test_login_page_renders_a_form(client):
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert 'name="csrfmiddlewaretoken"' in html


@pytest.mark.django_db
def test_home_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_login_creates_a_web_login_session(alice):
    browser = Client(HTTP_USER_AGENT="Firefox/140")
    response = browser.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302
    assert response["Location"] == "/"

    session = LoginSession.objects.get(user=alice)
    assert session.kind == "web"
    assert session.user_agent == "Firefox/140"
    assert session.ip == "127.0.0.1"
    assert session.revoked_at is None
    assert session.django_session_key == session_key_of(browser)

    home = browser.get("/")
    assert home.status_code == 200
    assert "Signed in as <strong>alice</strong>" in home.content.decode()
    assert browser.get("/api/me/").json()["username"] == "alice"


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["wrong", ""])
def test_wrong_password_shows_the_form_again_and_stores_nothing(password, alice):
    browser = Client()
    response = browser.post("/login/", {"username": "alice", "password": password})
    assert response.status_code == 200
    assert not LoginSession.objects.exists()
    assert browser.get("/").status_code == 302


@pytest.mark.django_db
def test_inactive_user_cannot_sign_in(make_user):
    make_user(username="dora", is_active=False)
    response = Client().post("/login/", {"username": "dora", "password": "pw-dora"})
    assert response.status_code == 200
    assert not LoginSession.objects.exists()


@pytest.mark.django_db
def test_logout_revokes_the_web_session(alice, alice_api):
    browser = web_login(alice)
    session = LoginSession.objects.get(django_session_key=session_key_of(browser))

    response = browser.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"

    session.refresh_from_db()
    assert session.revoked_at is not None
    assert session.revoked_reason == "logout"
    assert browser.get("/").status_code == 302
    # The user's API session is another login: untouched.
    alice_api[0].refresh_from_db()
    assert alice_api[0].revoked_at is None


@pytest.mark.django_db
def test_logout_is_not_a_get(alice):
    """A GET (an <img src>) must not sign anyone out."""
    browser = web_login(alice)
    assert browser.get("/logout/").status_code == 405
    assert browser.get("/").status_code == 200


@pytest.mark.django_db
def test_revoking_the_web_session_elsewhere_signs_the_browser_out(alice, alice_api):
    browser = web_login(alice)
    session = LoginSession.objects.get(django_session_key=session_key_of(browser))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice_api[1]['access']}")
    assert client.delete(f"/api/auth/sessions/{session.pk}/").status_code == 204

    assert browser.get("/").status_code == 302
    me = browser.get("/api/me/")
    assert me.status_code == 401
    assert me.json()["code"] == "not_authenticated"


# Web sessions and sockets ------------------------------------------------------------------


@pytest.fixture
def browser(alice: Any) -> Client:
    return web_login(alice)


@pytest.mark.django_db(transaction=True)
async def test_logout_closes_the_web_sessions_sockets_4401(browser, alice_api, open_ws):
    key = session_key_of(browser)
    web_sockets = [open_ws(**credential("cookie", key)) for _ in range(2)]
    api_socket = open_ws(**credential("header", alice_api[1]["access"]))
    for comm in [*web_sockets, api_socket]:
        await hello_of(comm)

    response = await call(browser.post, "/logout/")
    assert response.status_code == 302

    for comm in web_sockets:
        assert await comm.receive_output(timeout=1) == CLOSE_4401
    assert await api_socket.receive_nothing(timeout=0.1)
    # The old cookie opens nothing any more.
    await assert_refused(open_ws(**credential("cookie", key)))


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_from_a_web_session_opens_a_socket_of_that_session(alice, open_ws):
    def ticket_for_browser() -> tuple[str, str]:
        browser = web_login(alice, enforce_csrf_checks=True)
        response = browser.post(
            "/api/auth/ws-ticket/",
            content_type="application/json",
            HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
        )
        assert response.status_code == 201
        web = LoginSession.objects.get(django_session_key=session_key_of(browser))
        return response.json()["ticket"], str(web.pk)

    ticket, session_id = await call(ticket_for_browser)
    hello = await hello_of(open_ws(**credential("ticket", ticket)))
    assert hello["session_id"] == session_id
    assert hello["expires_at"] is None
