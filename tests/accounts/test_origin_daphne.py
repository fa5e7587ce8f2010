"""The Origin check against a real daphne process: a refused cookie handshake is an HTTP 403
answer to the upgrade request, and the page's own origin (scheme, host and port) opens a socket
(docs/security.md, "WebSocket credentials")."""

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.rig import (
    Server,
    create_database,
    create_users,
    server_env,
    start_servers,
    temp_dir,
    user_spec,
)
from tests.support.ws import recv_frame

pytestmark = pytest.mark.processes

PASSWORD = "origin-Pw-7d1f-daphne"
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[Server, str, str]]:
    """One daphne process (no Redis: one process), and ``(server, session cookie, access)`` of
    a user signed in through the login form and the token API."""
    with contextlib.ExitStack() as stack:
        tmp = temp_dir(stack, "herald-origin-")
        env = server_env(DATABASE_URL=create_database(tmp, stack))
        create_users(env, tmp, [user_spec("olga", PASSWORD)], migrate=True)
        (server,) = start_servers(["web"], env, tmp, stack)
        with httpx.Client(base_url=server.http, timeout=60) as browser:
            page = browser.get("/login/")
            token = _CSRF_INPUT.search(page.text)
            assert token, page.text[:500]
            answer = browser.post(
                "/login/",
                data={"username": "olga", "password": PASSWORD, "csrfmiddlewaretoken": token[1]},
            )
            assert answer.status_code == 302, answer.text[:500]
            cookie = browser.cookies["sessionid"]
            pair = browser.post("/api/auth/token/", json={"username": "olga", "password": PASSWORD})
            assert pair.status_code == 200, pair.text
        yield server, cookie, pair.json()["access"]


async def status_of(url: str, headers: dict[str, str]) -> int:
    """101 when the handshake opens a socket (whose first frame is ``hello``), else the HTTP
    status daphne answered the upgrade request with."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=30) as ws:
            assert (await recv_frame(ws, 30))["type"] == "hello"
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def test_a_real_handshake_is_accepted_from_its_own_origin_only(web):
    server, cookie, access = web
    other_port = f"http://127.0.0.1:{server.port + 1}"
    assert (
        await status_of(server.ws, {"Cookie": f"sessionid={cookie}", "Origin": server.http}) == 101
    )
    for origin in (
        other_port,
        server.http.replace("http:", "https:"),
        "http://evil.example",
        "null",
    ):
        headers = {"Cookie": f"sessionid={cookie}", "Origin": origin}
        assert await status_of(server.ws, headers) == 403, origin
    assert await status_of(server.ws, {"Cookie": f"sessionid={cookie}"}) == 403
    # A token is not origin-checked.
    headers = {"Authorization": f"Bearer {access}", "Origin": "http://evil.example"}
    assert await status_of(server.ws, headers) == 101
