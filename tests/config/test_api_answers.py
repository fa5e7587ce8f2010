"""What every ``/api/`` answer guarantees (docs/protocol.md, "HTTP API"): JSON errors whatever
the URL and the method, ``Cache-Control: no-store`` (and ``Pragma: no-cache`` on tokens), and
room membership refusals that do not tell which accounts exist."""

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from chat.models import Membership, Room
from tests.support.auth import web_login

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
UNKNOWN = ("/api/nope/", "/api/rooms/1/nope/", "/api/me", "/api/auth/token/x/")


def json_error(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.content[:500]
    assert answer["Content-Type"].startswith("application/json"), answer["Content-Type"]
    body = answer.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str), body
    return body


# JSON errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", UNKNOWN)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("credential", ["none", "bearer", "cookie"])
def test_an_unknown_api_url_is_a_json_404_for_every_method(method, url, credential, alice, login):
    if credential == "bearer":
        client: Any = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {login(alice)[1]['access']}")
    elif credential == "cookie":
        client = web_login(alice, enforce_csrf_checks=True)
    else:
        client = Client(enforce_csrf_checks=True)
    if method == "get":
        answer = client.get(url)
    else:
        answer = getattr(client, method)(url, data="{}", content_type="application/json")
    json_error(answer, 404, "not_found")
    assert "no-store" in answer["Cache-Control"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("put", "/api/me/"),
        ("delete", "/api/rooms/"),
        ("patch", "/api/notifications/unread-count/"),
        ("post", "/api/asyncapi.json"),  # a plain Django view
        ("delete", "/api/schema/"),
    ],
)
def test_a_wrong_method_on_a_known_route_is_a_json_405(method, url, alice, as_user):
    answer = getattr(as_user(alice), method)(url, data={}, format="json")
    body = json_error(answer, 405, "method_not_allowed")
    assert method.upper() in body["detail"]
    assert answer["Allow"]


def test_a_cookie_write_without_csrf_token_is_a_json_403(alice):
    browser = web_login(alice, enforce_csrf_checks=True)
    body = json_error(
        browser.post("/api/rooms/", {"name": "x"}, content_type="application/json"),
        403,
        "permission_denied",
    )
    assert "CSRF" in body["detail"]
    # The asyncapi view is a plain Django view: Django's CSRF check answers it, as JSON too.
    json_error(browser.post("/api/asyncapi.json"), 403, "permission_denied")
    # Outside /api/, Django's own page.
    assert browser.post("/logout/").status_code == 403
    assert not browser.post("/logout/")["Content-Type"].startswith("application/json")


# Cache-Control ---------------------------------------------------------------------------------


def test_token_answers_are_no_store_and_no_cache(alice, login):
    client = APIClient()
    pair = client.post(
        "/api/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json"
    )
    assert pair.status_code == 200, pair.content
    refreshed = client.post(
        "/api/auth/token/refresh/", {"refresh": pair.json()["refresh"]}, format="json"
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    ticket = client.post("/api/auth/ws-ticket/")
    refused = APIClient().post(
        "/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json"
    )
    for answer in (pair, refreshed, ticket, refused):
        assert answer["Cache-Control"] == "no-store", answer.headers
        assert answer["Pragma"] == "no-cache"


def test_authenticated_answers_are_no_store(alice, as_user):
    client = as_user(alice)
    for url in ("/api/me/", "/api/rooms/", "/api/notifications/", "/api/auth/sessions/"):
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.content)
        assert "no-store" in answer["Cache-Control"], url
    assert "no-store" in APIClient().get("/api/me/")["Cache-Control"]  # the 401 too
    browser = web_login(alice)
    assert "no-store" in browser.get("/api/me/")["Cache-Control"]


# Room members ----------------------------------------------------------------------------------


@pytest.fixture
def inactive(make_user: Any) -> Any:
    return make_user(username="gone", is_active=False)


def test_unknown_and_inactive_members_get_one_answer_and_nothing_is_created(
    alice, bob, inactive, as_user
):
    client = as_user(alice)
    answers = [
        client.post("/api/rooms/", {"name": "r", "members": members}, format="json")
        for members in ([bob.pk, 999_999], [bob.pk, inactive.pk], [inactive.pk])
    ]
    bodies = [json_error(a, 400, "invalid") for a in answers]
    expected = {"code": "invalid", "detail": "members: some users cannot be added"}
    assert bodies == [expected] * 3
    assert not Room.objects.exists()


def test_member_add_and_direct_rooms_refuse_inactive_users_as_unknown_ones(
    alice, bob, inactive, as_user
):
    client = as_user(alice)
    room = client.post("/api/rooms/", {"name": "r", "members": [bob.pk]}, format="json").json()
    adds = [
        client.post(f"/api/rooms/{room['id']}/members/", {"user_id": pk}, format="json")
        for pk in (inactive.pk, 999_999)
    ]
    assert [json_error(a, 400, "invalid") for a in adds] == [
        {"code": "invalid", "detail": "user_id: this user cannot be added"}
    ] * 2
    directs = [
        client.post("/api/rooms/", {"direct_with": pk}, format="json")
        for pk in (inactive.pk, 999_999)
    ]
    assert [json_error(a, 400, "invalid") for a in directs] == [
        {"code": "invalid", "detail": "direct_with: this user cannot be added"}
    ] * 2
    assert not Membership.objects.filter(user=inactive).exists()
    assert Room.objects.count() == 1
    # Active users still join.
    carol = type(bob).objects.create_user(username="carol", password="pw-carol")
    added = client.post(f"/api/rooms/{room['id']}/members/", {"user_id": carol.pk}, format="json")
    assert added.status_code == 201, added.content
