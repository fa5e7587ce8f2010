"""The browser harness: Debian's Chromium (Playwright) against real daphne processes and Redis.

It reuses the cross-process harness (``tests/crossprocess/conftest.py``): a private
``redis-server``, a private database migrated with ``manage.py migrate``, users created by a
``manage.py shell`` subprocess, daphne through ``python -m config.serve``. Two processes share
them:

- ``web``, the origin the browsers load (its socket authenticates with the session cookie and
  the ``Origin`` check); ``site.stop_web()`` / ``site.start_web()`` kill it and start it again
  on the same port;
- ``api``, where the tests play the other actors over REST (a service posting notifications, a
  bot posting messages), so that they keep working while ``web`` is down and every live
  delivery crosses processes through Redis.

Chromium is ``/usr/bin/chromium`` (``.ci/system-deps`` installs it); Playwright never downloads
a browser here. Screenshots go to ``docs/screenshots/``.
"""

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.crossprocess.conftest import (
    PYTHON,
    START_TIMEOUT,
    Server,
    User,
    _create_database,
    _crossprocess_env,
    _manage,
    _popen,
    _start_redis,
    _start_servers,
    _stop,
    _tail,
)

ROOT = Path(__file__).resolve().parents[2]
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
SCREENSHOTS = ROOT / "docs" / "screenshots"
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

_CREATE_E2E_USERS = """
import json, os
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
perm = Permission.objects.get(codename="send_notification", content_type__app_label="notifications")
password = make_password(os.environ["E2E_PASSWORD"])  # hashing is slow on purpose: once
ids = {}
for name, (first, last, can_send) in json.loads(os.environ["E2E_USERS"]).items():
    user = get_user_model()(username=name, first_name=first, last_name=last, password=password)
    user.save()
    if can_send:
        user.user_permissions.add(perm)
    ids[name] = user.pk
print("E2E_IDS=" + json.dumps(ids))
"""


@dataclass
class Site:
    """The deployment under test: ``web`` (the browsers' origin) and ``api`` (REST actors)."""

    web: Server
    api: Server
    users: dict[str, User]
    env: dict[str, str]
    stack: contextlib.ExitStack
    _tokens: dict[str, str] = field(default_factory=dict)

    def url(self, path: str = "/") -> str:
        return f"{self.web.http}{path}"

    def token(self, name: str) -> str:
        """An access token of ``name`` (one API login session per user, made on first use)."""
        if name not in self._tokens:
            answer = httpx.post(
                f"{self.api.http}/api/auth/token/",
                json={"username": name, "password": PASSWORD},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            self._tokens[name] = answer.json()["access"]
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

    def notify(self, recipient: str, title: str, body: str = "") -> None:
        """The service ``svc`` sends ``recipient`` a notification."""
        payload = {"recipients": [self.users[recipient].id], "title": title, "body": body}
        self.rest("svc", "POST", "/api/notifications/", payload)

    def stop_web(self) -> None:
        """Kill ``web`` (SIGKILL, like a crash or an OOM kill): its sockets drop at once. A
        SIGTERM would do too, but daphne waits for open sockets before it exits."""
        self.web.process.kill()
        self.web.process.wait(10)

    def start_web(self) -> None:
        """Start ``web`` again on its port and wait until it is ready."""
        argv = [PYTHON, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(self.web.port)]
        self.web.process = _popen(argv, env=self.env, log=self.web.log)
        self.stack.callback(_stop, self.web.process)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self.web.alive():
                pytest.fail(f"daphne web did not restart:\n{_tail(self.web.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.web.http}/readyz", timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"daphne web: /readyz never answered 200:\n{_tail(self.web.log)}")
            time.sleep(0.1)


@pytest.fixture(scope="package")
def site() -> Iterator[Site]:
    """Redis, a migrated private database, users, daphne ``web`` and ``api``."""
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="herald-e2e-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        redis_url = _start_redis(tmp, stack)
        database_url = _create_database(tmp, stack)
        env = _crossprocess_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
        _manage(["migrate", "--noinput", "-v", "0"], env, tmp)
        out = _manage(
            ["shell", "-c", _CREATE_E2E_USERS],
            dict(env, E2E_USERS=json.dumps(USERS), E2E_PASSWORD=PASSWORD),
            tmp,
        )
        line = next(li for li in out.splitlines() if li.startswith("E2E_IDS="))
        ids = json.loads(line.removeprefix("E2E_IDS="))
        users = {name: User(name, ids[name], PASSWORD) for name in USERS}
        web, api = _start_servers(["web", "api"], env, tmp, stack)
        yield Site(web, api, users, env, stack)


# Package scope: Playwright's sync API keeps an event loop running in the main thread while it
# is started, and later tests that call asyncio.run() (tests/hardening) would fail beside it.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the e2e tests; each user gets their own context (cookies)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (bash .ci/system-deps installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A signed-in page and what went wrong in it: uncaught errors, dialogs (``alert``)."""

    page: Any
    user: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _watch(page: Any, tab: Tab) -> None:
    page.on("pageerror", lambda error: tab.errors.append(str(error)))

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)


@pytest.fixture
def sign_in(site: Site, browser: Any) -> Iterator[Callable[..., Tab]]:
    """``sign_in(name, viewport=DESKTOP)`` → a new browser context signed in as ``name`` through
    the sign-in form, on ``/`` with its socket connected. ``tab.page.context.new_page()``
    opens another tab of the same browser (same session). Uncaught page errors fail the test."""
    contexts: list[Any] = []
    tabs: list[Tab] = []

    def _sign_in(name: str, viewport: dict[str, int] = DESKTOP, scale: float = 1) -> Tab:
        context = browser.new_context(
            viewport=viewport, device_scale_factor=scale, base_url=site.url(""), locale="en-GB"
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page, name)
        tabs.append(tab)
        _watch(page, tab)
        page.goto("/login/")
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(site.url("/"))
        wait_connected(page)
        return tab

    yield _sign_in
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()
    errors = [f"{tab.user}: {error}" for tab in tabs for error in tab.errors]
    assert not errors, errors


def open_tab(tab: Tab) -> Tab:
    """Another tab of ``tab``'s browser (same cookies), on ``/``, connected."""
    page = tab.page.context.new_page()
    other = Tab(page, tab.user)
    _watch(page, other)
    page.goto("/")
    wait_connected(page)
    return other


def wait_connected(page: Any, timeout: float = 10_000) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=timeout)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
