"""The Origin check of a cookie-authenticated WebSocket handshake (docs/security.md, "WebSocket
credentials"): Django's CSRF Origin rules, with ``HERALD_ALLOWED_ORIGINS`` as the trusted
origins. Each variant is a real handshake through the full ASGI application; a refusal is a close
before accept, which daphne answers with HTTP 403 (``test_origin_daphne.py`` checks that)."""

from typing import Any

import pytest

from tests.support.auth import bearer, cookie_headers, hello_of, session_key_of, web_login

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web_cookie(alice: Any) -> str:
    return session_key_of(web_login(alice))


async def handshake(open_ws: Any, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the handshake is accepted (with a ``hello``), or closed before accept."""
    comm = open_ws(headers=headers)
    connected, _ = await comm.connect()
    if connected:
        assert (await comm.receive_json_from(timeout=2))["type"] == "hello"
    else:
        assert await comm.receive_nothing(timeout=0.1)
    return connected


async def test_the_page_s_own_origin_is_accepted(web_cookie, open_ws):
    comm = open_ws(headers=cookie_headers(web_cookie, "http://localhost:8000", "localhost:8000"))
    assert (await hello_of(comm))["expires_at"] is None


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:9000",  # another port
        "http://localhost",  # the default port is another port
        "https://localhost:8000",  # another scheme
        "http://127.0.0.1:8000",  # another host, even an allowed one
        "http://evil.example",
        "http://localhost.evil.example:8000",
        "HTTP://LOCALHOST:8000",  # compared exactly, as Django's CSRF check does
        "null",  # sandboxed frames, file: pages
        "",
        None,  # no Origin at all: browsers always send one
    ],
)
async def test_any_other_origin_is_refused_before_accept(origin, web_cookie, open_ws):
    assert not await handshake(open_ws, cookie_headers(web_cookie, origin, "localhost:8000"))


async def test_a_host_outside_allowed_hosts_is_never_its_own_origin(web_cookie, open_ws):
    headers = cookie_headers(web_cookie, "http://evil.example:8000", "evil.example:8000")
    assert not await handshake(open_ws, headers)


async def test_over_wss_the_own_origin_is_https(web_cookie, open_ws):
    headers = cookie_headers(web_cookie, "https://localhost:8000", "localhost:8000")
    comm = open_ws(headers=headers)
    comm.scope["scheme"] = "wss"
    assert (await comm.connect())[0]

    plain = open_ws(headers=cookie_headers(web_cookie, "http://localhost:8000", "localhost:8000"))
    plain.scope["scheme"] = "wss"
    assert not (await plain.connect())[0]


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("https://chat.example.com", True),  # listed exactly
        ("http://chat.example.com", False),  # another scheme
        ("https://chat.example.com:8443", False),  # another port
        ("https://a.chat.example.com", False),  # a subdomain of an exact entry
        ("https://team.example.org", True),  # listed wildcard subdomain
        ("https://a.b.example.org", True),
        ("https://example.org", False),  # the bare parent of a wildcard
        ("http://team.example.org", False),  # the wildcard's scheme only
        ("https://evilexample.org", False),
        ("http://localhost:8000", True),  # the own origin still is
    ],
)
async def test_allowed_origins_are_matched_as_csrf_trusted_origins(
    origin, accepted, web_cookie, open_ws, settings
):
    settings.HERALD = {
        **settings.HERALD,
        "ALLOWED_ORIGINS": ["https://chat.example.com", "https://*.example.org"],
    }
    headers = cookie_headers(web_cookie, origin, "localhost:8000")
    assert await handshake(open_ws, headers) is accepted


async def test_a_bare_parent_is_accepted_when_listed(web_cookie, open_ws, settings):
    settings.HERALD = {
        **settings.HERALD,
        "ALLOWED_ORIGINS": ["https://*.example.org", "https://example.org"],
    }
    headers = cookie_headers(web_cookie, "https://example.org", "localhost:8000")
    assert await handshake(open_ws, headers)


@pytest.mark.parametrize(
    ("forwarded", "origin", "trusted", "accepted"),
    [
        ("https", "https://chat.example.net", True, True),
        ("https", "http://chat.example.net", True, False),
        ("http", "http://chat.example.net", True, True),
        # The header means nothing unless the settings trust it.
        ("https", "https://chat.example.net", False, False),
    ],
)
async def test_behind_a_trusted_proxy_the_forwarded_scheme_counts(
    forwarded, origin, trusted, accepted, web_cookie, open_ws, settings
):
    settings.ALLOWED_HOSTS = ["chat.example.net"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if trusted else None
    headers = [
        *cookie_headers(web_cookie, origin, "chat.example.net"),
        (b"x-forwarded-proto", forwarded.encode()),
    ]
    assert await handshake(open_ws, headers) is accepted


async def test_a_token_is_not_origin_checked(alice_api, open_ws):
    """Origin guards the cookie only: a native client with a bearer token may send any."""
    comm = open_ws(headers=[*bearer(alice_api[1]["access"]), (b"origin", b"http://evil.example")])
    assert (await hello_of(comm))["user"]["username"] == "alice"


@pytest.mark.parametrize(
    "entry", ["chat.example.com", "https://chat.example.com/", "*", "https://", "https://a.com/x"]
)
def test_an_entry_that_is_not_an_origin_stops_the_process(entry):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "HERALD_ALLOWED_ORIGINS": entry,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "HERALD_ALLOWED_ORIGINS" in result.stderr
