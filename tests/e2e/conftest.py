"""Fixtures of the browser tests: the ``site`` (``tests.support.browser``: daphne ``web`` and
``api`` on a private Redis and database), one headless Chromium, and ``sign_in``."""

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.browser import (
    DESKTOP,
    PASSWORD,
    Site,
    Tab,
    chromium,
    start_site,
    wait_connected,
    watch,
)


@pytest.fixture(scope="package")
def site() -> Iterator[Site]:
    """Redis, a migrated private database, users, daphne ``web`` and ``api``."""
    with contextlib.ExitStack() as stack:
        yield start_site(stack)


# Package scope: Playwright's sync API keeps an event loop running in the main thread while it
# is started, and later tests that call asyncio.run() (tests/hardening) would fail beside it.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the e2e tests; each user gets their own context (cookies)."""
    with chromium() as browser:
        yield browser


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
        watch(page, tab)
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
