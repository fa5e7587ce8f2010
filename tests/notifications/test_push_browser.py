"""The settings page and the push service worker in headless Chromium (Debian's, through
Playwright; ``tests.support.browser``), against daphne processes on Redis.

Chromium's push messaging needs the vendor's push service, which a test cannot reach, so the
push itself comes through the DevTools protocol (``ServiceWorker.deliverPushMessage``): the
registered worker receives it as a browser would, shows the notification, and the test reads
it back with ``registration.getNotifications()``.
"""

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    DESKTOP,
    PASSWORD,
    Site,
    chromium,
    screenshot,
    start_site,
)

pytestmark = [pytest.mark.processes, pytest.mark.e2e]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with contextlib.ExitStack() as stack:
        yield start_site(stack)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(site: Site, browser: Any) -> Iterator[Any]:
    """``amy`` signed in, on ``/``; uncaught page errors fail the test."""
    context = browser.new_context(viewport=DESKTOP, base_url=site.url(""), locale="en-GB")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/login/")
    page.get_by_label("Username").fill("amy")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site.url("/"))
    yield page
    context.close()
    assert errors == []


def open_settings(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/settings/")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")


def test_preferences_are_saved_from_the_page(site: Site, page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Settings").click()
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    page.get_by_label("How often").select_option("hourly")
    expect(page.locator("#save-status")).to_have_text("Saved.")
    page.get_by_label("Use quiet hours").check()
    expect(page.locator("#save-status")).to_have_text("Quiet hours saved.")
    page.get_by_label("Time zone").fill("Mars/Olympus")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-status")).to_contain_text("IANA time zone")
    page.get_by_label("Time zone").fill("Asia/Tokyo")
    page.get_by_label("From").fill("23:15")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-status")).to_have_text("Quiet hours saved.")

    stored = site.rest("amy", "GET", "/api/me/preferences/")
    assert stored["email_digest"] == "hourly"
    assert stored["quiet_hours"] == {"start": "23:15", "end": "07:00", "timezone": "Asia/Tokyo"}
    page.reload()
    expect(page.get_by_label("How often")).to_have_value("hourly")
    expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
    screenshot(page, "settings")


def test_mute_from_the_room_menu_and_unmute_in_settings(site: Site, page: Any) -> None:
    from playwright.sync_api import expect

    room = site.room("amy", "deploys", ["bo"])
    page.goto(f"/#/rooms/{room}")
    page.get_by_label("Room menu").click()
    page.get_by_role("button", name="Mute room").click()
    mute = page.locator("#room-mute")
    expect(mute).to_have_text("Unmute room")  # once saved; the menu has closed
    expect(mute).to_be_hidden()
    page.get_by_label("Room menu").click()
    expect(mute).to_be_visible()
    assert site.rest("amy", "GET", "/api/me/preferences/")["muted_rooms"] == [room]

    open_settings(page)
    muted = page.locator("#muted-list li")
    expect(muted).to_have_count(1)
    expect(muted).to_contain_text("deploys")
    muted.get_by_role("button", name="Unmute").click()
    expect(page.locator("#muted-list li")).to_have_count(0)
    expect(page.locator("#muted-empty")).to_be_visible()
    assert site.rest("amy", "GET", "/api/me/preferences/")["muted_rooms"] == []


def test_service_worker_shows_a_push_and_opens_its_link(site: Site, page: Any) -> None:
    page.context.grant_permissions(["notifications"], origin=site.url(""))
    cdp = page.context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(e["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    open_settings(page)
    scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
    assert scope == site.url("/")  # root scope: every page of the site

    deadline = time.monotonic() + 10
    while not [r for r in registrations if r["scopeURL"] == scope and not r["isDeleted"]]:
        assert time.monotonic() < deadline, registrations
        page.wait_for_timeout(50)
    (registration,) = {r["registrationId"] for r in registrations if r["scopeURL"] == scope}
    message = {
        "title": "Deploy done",
        "body": "web-3 is live",
        "url": "/#/rooms/1",
        "tag": "herald-9",
    }
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": site.url(""), "registrationId": registration, "data": json.dumps(message)},
    )
    shown = []
    while not shown:
        assert time.monotonic() < deadline + 10
        page.wait_for_timeout(100)
        shown = page.evaluate(
            """navigator.serviceWorker.ready
                 .then((r) => r.getNotifications())
                 .then((ns) => ns.map((n) => [n.title, n.body, n.tag, n.data.url]))"""
        )
    assert shown == [["Deploy done", "web-3 is live", "herald-9", "/#/rooms/1"]]
