"""The server side of the web UI: the chat page's shell and the user search behind "start a
direct message" (``GET /api/users/``). The page itself is tested in Chromium (tests/e2e)."""

import json
import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_chat_page_hands_its_module_the_user_and_forbids_inline_script(alice):
    response = signed_in(alice).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    config = json.loads(
        re.search(r'<script id="herald-config" type="application/json">(.*?)</script>', html)[1]
    )
    assert config["user"] == {"id": alice.pk, "username": "alice", "display_name": "alice"}
    assert config["loginUrl"] == "/login/"
    assert config["csrfToken"]
    assert 'type="module" src="/static/herald/app.js"' in html
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_the_client_modules_are_served_and_never_write_html(alice):
    client = signed_in(alice)
    for name in ("client.js", "app.js", "herald.css"):
        response = client.get(f"/static/herald/{name}")
        assert response.status_code == 200, name
        body = b"".join(response.streaming_content) if response.streaming else response.content
        for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write"):
            assert sink not in body, (name, sink)


def test_user_search_matches_username_or_name_and_leaves_the_caller_out(make_user, alice):
    bob = make_user(username="bob", first_name="Robert", last_name="Stone")
    make_user(username="bobby")
    make_user(username="carol", is_active=False)
    client = signed_in(alice)

    assert [u["username"] for u in client.get("/api/users/?q=bob").json()] == ["bob", "bobby"]
    assert client.get("/api/users/?q=stone rob").json() == [
        {"id": bob.pk, "username": "bob", "display_name": "Robert Stone"}
    ]
    assert client.get("/api/users/?q=alice").json() == []  # the caller
    assert client.get("/api/users/?q=carol").json() == []  # inactive
    everyone = client.get("/api/users/").json()
    assert [u["username"] for u in everyone] == ["bob", "bobby"]
    assert set(everyone[0]) == {"id", "username", "display_name"}


def test_user_search_needs_a_login_and_a_sane_query(alice):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/users/?q=a").status_code == 401
    answer = signed_in(alice).get("/api/users/", {"q": "x" * 151})
    assert answer.status_code == 400
    assert answer.json()["code"]
