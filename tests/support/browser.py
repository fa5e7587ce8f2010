"""The deployment of ``tests/e2e`` and browser helpers: Debian's Chromium through Playwright.

:func:`start_site` starts (``tests.support.rig``) a private ``redis-server``, a private
database, migrated, with the users of :data:`USERS`, and two daphne processes sharing them:

- ``web``, the origin the browsers load (its socket authenticates with the session cookie and
  the ``Origin`` check); ``site.stop_web()`` / ``site.start_web()`` kill it and start it again
  on the same port;
- ``api``, where the tests play the other actors over REST (a service posting notifications, a
  bot posting messages), so that they keep working while ``web`` is down and every live
  delivery crosses processes through Redis.

Chromium is ``/usr/bin/chromium`` (``.ci/system-deps`` installs it); Playwright never downloads
a browser here. :func:`screenshot` writes to ``build/screenshots/``, or to the folder named by
``HERALD_SCREENSHOTS_DIR`` (``docs/screenshots`` for the README's pictures).
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.rig import (
    ROOT,
    Deployment,
    Server,
    create_database,
    create_users,
    server_env,
    start_redis,
    start_servers,
    temp_dir,
    user_spec,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_ENV = "HERALD_SCREENSHOTS_DIR"
PASSWORD = "e2e-Pw-herald-7d1f"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# username → (first name, last name, may send notifications). One user set per test, so that
# no test sees another's rooms or sessions.
USERS: dict[str, tuple[str, str, bool]] = {
    "svc": ("Deploy", "Bot", True),
    "amy": ("Amy", "Adams", False),
    "bo": ("Bo", "Berg", False),
    "cy": ("Cy", "Cole", False),
    "dee": ("Dee", "Dunn", False),
    "eve": ("Eve", "Ek", False),
    "fay": ("Fay", "Fox", False),
    "gus": ("Gus", "Gray", False),
    "hal": ("Hal", "Hope", False),
    "ann": ("Ann", "Lee", False),
    "ben": ("Ben", "Okafor", False),
    "chen": ("Chen", "Wei", False),
}


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """One headless Debian chromium driven by Playwright (never a downloaded browser); fails
    the test when it is missing (``bash .ci/system-deps`` installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (bash .ci/system-deps installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class Site(Deployment):
    """The deployment under test: ``web`` (the browsers' origin) and ``api`` (REST actors)."""

    web: Server
    api: Server
    stack: contextlib.ExitStack
    _tokens: dict[str, str] = field(default_factory=dict)

    def url(self, path: str = "/") -> str:
        return f"{self.web.http}{path}"

    def token(self, name: str) -> str:
        """An access token of ``name`` (one API login session per user, made on first use)."""
        if name not in self._tokens:
            self._tokens[name] = self.tokens(name, self.api).access
        return self._tokens[name]

    def rest(self, name: str, method: str, path: str, body: Any = None) -> Any:
        """A REST call as ``name`` on the ``api`` process; the JSON answer (2xx asserted)."""
        answer = httpx.request(
            method,
            f"{self.api.http}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token(name)}"},
            timeout=30,
        )
        assert answer.is_success, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    def room(self, owner: str, name: str, members: list[str]) -> int:
        """Create a group room owned by ``owner`` with ``members``; its id."""
        ids = [self.users[m].id for m in members]
        return int(self.rest(owner, "POST", "/api/rooms/", {"name": name, "members": ids})["id"])

    def post(self, name: str, room: int, body: str) -> dict[str, Any]:
        """``POST /api/rooms/{room}/messages/`` as ``name``: the stored message."""
        return self.rest(name, "POST", f"/api/rooms/{room}/messages/", {"body": body})

    def notify_user(self, recipient: str, title: str, body: str = "") -> None:
        """The service ``svc`` sends ``recipient`` a notification."""
        payload = {"recipients": [self.users[recipient].id], "title": title, "body": body}
        self.rest("svc", "POST", "/api/notifications/", payload)

    def stop_web(self) -> None:
        """Kill ``web`` (SIGKILL, like a crash or an OOM kill): its sockets drop at once. A
        SIGTERM would do too, but daphne waits for open sockets before it exits."""
        self.web.kill()

    def start_web(self) -> None:
        """Start ``web`` again on its port and wait until it is ready."""
        self.web.restart(self.stack)


def start_site(stack: contextlib.ExitStack) -> Site:
    """Redis, a migrated private database, users, daphne ``web`` and ``api``; everything stops
    when ``stack`` closes."""
    tmp = temp_dir(stack, "herald-e2e-")
    redis_url = start_redis(tmp, stack).url
    database_url = create_database(tmp, stack)
    env = server_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
    specs = [
        user_spec(name, PASSWORD, can_send=can_send, first_name=first, last_name=last)
        for name, (first, last, can_send) in USERS.items()
    ]
    users = create_users(env, tmp, specs, migrate=True)
    web, api = start_servers(["web", "api"], env, tmp, stack)
    return Site(tmp, database_url, redis_url, users, web, api, stack)


# Pages -------------------------------------------------------------------------------------------


@dataclass
class Tab:
    """A signed-in page and what went wrong in it: uncaught errors, dialogs (``alert``)."""

    page: Any
    user: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def watch(page: Any, tab: Tab) -> None:
    """Record ``page``'s uncaught errors and dialogs (dismissed) in ``tab``."""
    page.on("pageerror", lambda error: tab.errors.append(str(error)))

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)


def open_tab(tab: Tab) -> Tab:
    """Another tab of ``tab``'s browser (same cookies), on ``/``, connected."""
    page = tab.page.context.new_page()
    other = Tab(page, tab.user)
    watch(page, other)
    page.goto("/")
    wait_connected(page)
    return other


def wait_connected(page: Any, timeout: float = 10_000) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=timeout)


def screenshots_dir() -> Path:
    """``$HERALD_SCREENSHOTS_DIR`` (relative to the repository root unless absolute), else
    ``build/screenshots``: a test run leaves the tracked pictures alone."""
    return ROOT / (os.environ.get(SCREENSHOTS_ENV) or "build/screenshots")


def screenshot(page: Any, name: str) -> None:
    folder = screenshots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))
