"""Failed-login lockout (django-axes; docs/security.md, "Limits"): wrong passwords for one
username from one IP lock that pair out on the token endpoint, the web login and the admin's
login, with 429 and ``Retry-After``; the right password is refused meanwhile; a success resets
the count, and another IP's failures never lock a user out."""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import LoginSession

pytestmark = pytest.mark.django_db

LIMIT = 5  # HERALD_LOGIN_FAILURES's default, which the test settings keep
LOCKOUT = "900"  # HERALD_LOGIN_LOCKOUT's default, in Retry-After


def token(username: str, password: str, ip: str = "127.0.0.1") -> Any:
    return APIClient(REMOTE_ADDR=ip).post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )


def web(browser: Client, path: str, username: str, password: str) -> Any:
    return browser.post(path, {"username": username, "password": password})


def assert_throttled_json(response: Any) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "throttled"
    assert body["detail"]
    assert response["Retry-After"] == LOCKOUT


def test_the_defaults_are_the_documented_ones():
    assert settings.AXES_FAILURE_LIMIT == LIMIT
    assert settings.AXES_COOLOFF_TIME == timedelta(seconds=int(LOCKOUT))


def test_brute_force_on_the_token_endpoint_is_locked_out(alice):
    answers = [token("alice", f"guess-{n}").status_code for n in range(LIMIT + 3)]
    # The LIMIT-th failure starts the lockout; every attempt after it is refused unchecked.
    assert answers == [401] * (LIMIT - 1) + [429] * 4
    right = token("alice", "pw-alice")
    assert_throttled_json(right)
    assert not LoginSession.objects.filter(user=alice).exists()


def test_another_ips_failures_never_lock_the_user_out(alice):
    for n in range(LIMIT + 2):
        token("alice", f"guess-{n}", ip="203.0.113.9")
    assert token("alice", "pw-alice", ip="203.0.113.9").status_code == 429
    assert token("alice", "pw-alice", ip="198.51.100.7").status_code == 200


def test_brute_force_on_the_web_login_gets_a_readable_429_page(alice):
    browser = Client()
    answers = [web(browser, "/login/", "alice", f"guess-{n}").status_code for n in range(LIMIT)]
    assert answers == [200] * (LIMIT - 1) + [429]  # 200: the form again, with its error
    locked = web(browser, "/login/", "alice", "pw-alice")
    assert locked.status_code == 429
    assert locked["Retry-After"] == LOCKOUT
    assert locked["Content-Type"].startswith("text/html")
    page = locked.content.decode()
    assert "Too many failed sign-in attempts" in page
    assert "15 minutes" in page
    assert browser.get("/").status_code == 302  # not signed in
    assert not LoginSession.objects.filter(user=alice).exists()


def test_brute_force_on_the_admin_login_is_locked_out(make_user):
    make_user(username="root", is_staff=True, is_superuser=True)
    browser = Client()
    for n in range(LIMIT):
        web(browser, "/admin/login/", "root", f"guess-{n}")
    locked = web(browser, "/admin/login/", "root", "pw-root")
    assert locked.status_code == 429
    assert locked["Retry-After"] == LOCKOUT
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert browser.get("/admin/").status_code == 302  # still asked to sign in


def test_one_lockout_covers_every_login_form(alice):
    for n in range(LIMIT):
        token("alice", f"guess-{n}")
    assert web(Client(), "/login/", "alice", "pw-alice").status_code == 429
    assert web(Client(), "/admin/login/", "alice", "pw-alice").status_code == 429


def test_two_typos_then_the_right_password_is_never_locked_out(alice, bob):
    # alice is locked out (same IP): bob, on the same machine, is not.
    for n in range(LIMIT):
        token("alice", f"guess-{n}")
    for _ in range(3):  # 6 typos in all, more than LIMIT, each pair followed by a success
        browser = Client()  # the web UI in one tab, an API client in the other
        assert web(browser, "/login/", "bob", "pw-bob-typo").status_code == 200
        assert token("bob", "pw-bbo").status_code == 401
        assert web(browser, "/login/", "bob", "pw-bob").status_code == 302
        assert browser.get("/").status_code == 200
    assert token("bob", "wrong").status_code == 401
    assert token("bob", "wrong").status_code == 401
    assert token("bob", "pw-bob").status_code == 200
    assert token("alice", "pw-alice").status_code == 429


@override_settings(AXES_COOLOFF_TIME=timedelta(seconds=2))
def test_the_lockout_ends_after_its_window_even_if_the_attacker_keeps_trying(alice):
    for n in range(LIMIT):
        token("alice", f"guess-{n}")
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # failures during the lockout do not extend it
        assert token("alice", "still-guessing").status_code == 429
        time.sleep(0.1)
    time.sleep(max(0.0, 2.3 - (time.monotonic() - started)))
    assert token("alice", "pw-alice").status_code == 200


def test_an_operator_lets_a_locked_out_user_in_early(alice):
    for n in range(LIMIT):
        token("alice", f"guess-{n}")
    assert token("alice", "pw-alice").status_code == 429
    call_command("axes_reset_ip_username", "127.0.0.1", "alice", verbosity=0)
    assert token("alice", "pw-alice").status_code == 200
