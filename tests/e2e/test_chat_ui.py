"""The chat web UI in a real browser: live messages, the bell, reconnects, revocation, escaping.

Every test signs its own users in through the sign-in form, in their own browser contexts, on
the ``web`` daphne process; the other actors (a notifying service, a bot posting messages)
work over REST on the ``api`` process, so each live delivery crosses processes through Redis.
"""

import time

import pytest
from playwright.sync_api import expect

from tests.support.browser import PHONE, Site, open_tab, screenshot, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

XSS = "<img src=x onerror=alert(1)>"


def message(page, body):
    """The message bodies of the open room equal to ``body``."""
    return page.locator("#message-list .msg-body").filter(has_text=body)


def test_a_message_reaches_the_other_member_live(site: Site, sign_in):
    room = site.room("amy", "lunch", ["bo"])
    amy, bo = sign_in("amy"), sign_in("bo")

    # Bo is on the rooms list: the new message shows there as unread, with its text.
    amy.page.locator(f'[data-room="{room}"]').click()
    wait_connected(amy.page)
    composer = amy.page.get_by_label("Message", exact=True)
    composer.fill("first!")
    composer.press("Enter")
    link = bo.page.locator(f'[data-room="{room}"]')
    expect(link.locator(".badge")).to_have_text("1", timeout=2_000)
    expect(link.locator(".room-last")).to_have_text("amy: first!")

    # Opening the room shows the history, clears the badge, and shows who is online.
    link.click()
    expect(message(bo.page, "first!")).to_have_count(1)
    expect(link.locator(".badge")).to_have_count(0)
    expect(
        bo.page.locator(f'#presence-list li.online[data-user="{site.users["amy"].id}"]')
    ).to_have_count(1)

    # Typing shows; Shift+Enter is a newline, Enter sends; Bo sees it within 2 s, no reload.
    time.sleep(2.1)  # the server forwards one typing frame per 2 s; "first!" used the last one
    composer.press_sequentially("line one")
    expect(bo.page.locator("#typing")).to_have_text("amy is typing…", timeout=2_000)
    composer.press("Shift+Enter")
    composer.press_sequentially("line two")
    sent_at = time.monotonic()
    composer.press("Enter")
    expect(message(bo.page, "line one")).to_have_text("line one\nline two", timeout=2_000)
    assert time.monotonic() - sent_at < 2.0
    expect(bo.page.locator("#typing")).to_have_text("")

    # Amy's optimistic copy was confirmed by the ack, and nobody sees anything twice.
    expect(amy.page.locator("#message-list .msg.pending")).to_have_count(0)
    for page in (amy.page, bo.page):
        expect(page.locator("#message-list .msg")).to_have_count(2)


def test_a_direct_message_starts_from_a_user_search(site: Site, sign_in):
    hal = sign_in("hal")
    hal.page.get_by_label("Direct message").fill("gray")  # Gus Gray, by his last name
    result = hal.page.locator(f'#dm-results button[data-user="{site.users["gus"].id}"]')
    expect(result).to_contain_text("Gus Gray")
    result.click()
    expect(hal.page.locator("#room-title")).to_have_text("@ gus")
    composer = hal.page.get_by_label("Message", exact=True)
    composer.fill("hi Gus")
    composer.press("Enter")
    expect(hal.page.locator("#message-list .msg:not(.pending) .msg-body")).to_have_text("hi Gus")

    gus = sign_in("gus")
    link = gus.page.locator(".room-link", has_text="hal")
    expect(link.locator(".badge")).to_have_text("1")
    link.click()
    expect(message(gus.page, "hi Gus")).to_have_count(1)


def test_the_bell_counts_live_and_read_state_follows_in_other_tabs(site: Site, sign_in):
    one = sign_in("cy")
    two = open_tab(one)
    for tab in (one, two):
        expect(tab.page.locator("#bell-count")).to_be_hidden()

    site.notify_user("cy", "Build #41 passed", "main is green")
    site.notify_user("cy", "Disk almost full", "db-2 at 91 %")
    for tab in (one, two):
        expect(tab.page.locator("#bell-count")).to_have_text("2", timeout=2_000)

    one.page.get_by_role("button", name="Notifications, 2 unread").click()
    item = one.page.locator(".notif", has_text="Build #41 passed")
    expect(item).to_have_class("notif unread")
    item.get_by_role("button", name='Mark "Build #41 passed" read').click()
    for tab in (one, two):  # the other tab follows through the notification.read frame
        expect(tab.page.locator("#bell-count")).to_have_text("1", timeout=2_000)

    two.page.locator("#bell-button").click()
    expect(two.page.locator(".notif.unread")).to_have_count(1)
    two.page.get_by_role("button", name="Mark all read").click()
    for tab in (one, two):
        expect(tab.page.locator("#bell-count")).to_be_hidden(timeout=2_000)
        expect(tab.page.locator(".notif.unread")).to_have_count(0)
    two.page.keyboard.press("Escape")
    expect(two.page.locator("#bell-panel")).to_be_hidden()


def test_a_server_restart_reconnects_and_loses_nothing(site: Site, sign_in):
    room = site.room("dee", "ops", ["svc"])
    before = site.post("svc", room, "before the restart")
    dee = sign_in("dee")
    page = dee.page
    page.locator(f'[data-room="{room}"]').click()
    expect(message(page, "before the restart")).to_have_count(1)

    site.stop_web()
    try:
        expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        expect(page.locator("#conn")).to_contain_text("Reconnecting")
        # Meanwhile: a bot posts over REST on the other process, and Dee writes one herself.
        site.post("svc", room, "during the restart")
        reactions = f"/api/rooms/{room}/messages/{before['id']}/reactions/"
        site.rest("svc", "POST", reactions, {"emoji": "👀"})
        composer = page.get_by_label("Message", exact=True)
        composer.fill("written offline")
        composer.press("Enter")
        pending = page.locator("#message-list .msg.pending")
        expect(pending.locator(".msg-body")).to_have_text("written offline")
        expect(pending.locator(".msg-status")).to_have_text("Sending…")
    finally:
        site.start_web()

    wait_connected(page, timeout=20_000)
    for body in ("before the restart", "during the restart", "written offline"):
        expect(message(page, body)).to_have_count(1)
    expect(page.locator("#message-list .msg.pending")).to_have_count(0)
    # The resume replayed every change of the room's feed, not only new messages.
    first = page.locator("#message-list .msg").filter(
        has=page.locator(".msg-body", has_text="before the restart")
    )
    expect(first.locator(".reaction")).to_have_text(["👀 1"])
    # The retried send was stored once (same client_id), as the server's history shows.
    history = site.rest("dee", "GET", f"/api/rooms/{room}/messages/")["results"]
    assert [m["body"] for m in reversed(history)] == [
        "before the restart",
        "during the restart",
        "written offline",
    ]


def test_revoking_a_device_signs_that_browser_out(site: Site, sign_in):
    laptop, phone = sign_in("eve"), sign_in("eve", viewport=PHONE)
    laptop.page.get_by_role("link", name="Your devices").click()
    devices = laptop.page.locator("#device-list .device")
    expect(devices).to_have_count(2)
    expect(devices.filter(has_text="This device")).to_have_count(1)

    devices.filter(has_not_text="This device").get_by_role("button", name="Revoke").click()
    phone.page.wait_for_url("**/login/**", timeout=5_000)
    expect(phone.page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(devices).to_have_count(1)
    expect(laptop.page.locator("#conn")).to_have_attribute("data-state", "connected")


def test_user_content_is_text_never_markup(site: Site, sign_in):
    room = site.room("fay", XSS, ["gus"])
    fay, gus = sign_in("fay"), sign_in("gus")
    gus.page.locator(f'[data-room="{room}"]').click()
    fay.page.locator(f'[data-room="{room}"]').click()
    composer = fay.page.get_by_label("Message", exact=True)
    composer.fill(XSS)
    composer.press("Enter")
    site.notify_user("gus", XSS, XSS)

    live = message(gus.page, XSS)
    expect(live).to_have_count(1, timeout=2_000)  # arrived live, over the socket
    gus.page.reload()
    wait_connected(gus.page)
    expect(message(gus.page, XSS)).to_have_count(1)  # and from the REST history
    gus.page.locator("#bell-button").click()
    for tab in (fay, gus):
        page = tab.page
        expect(page.locator("#room-title")).to_have_text(f"# {XSS}")
        expect(page.locator(f'[data-room="{room}"] .room-name')).to_have_text(XSS)
        assert page.locator("#message-list .msg-body").last.inner_text() == XSS
        assert page.locator("main img, aside img, #bell-panel img").count() == 0
    expect(gus.page.locator(".notif-title")).to_have_text(XSS)
    time.sleep(0.3)  # an onerror handler would have fired by now
    assert fay.dialogs == []
    assert gus.dialogs == []


def test_screenshots(site: Site, sign_in, browser):
    """The main pages, with a little conversation, for the README: written to
    ``build/screenshots/``, or to ``$HERALD_SCREENSHOTS_DIR`` (``docs/screenshots`` for the
    README's pictures)."""
    general = site.room("ann", "general", ["ben", "chen"])
    design = site.room("ben", "design", ["ann", "chen"])
    site.rest("chen", "POST", "/api/rooms/", {"direct_with": site.users["ann"].id})
    posted = {}
    for author, body in [
        ("ben", "Morning! The release branch is cut."),
        ("chen", "Nice. I'll run the migration dry-run on staging."),
        ("ann", "Thanks both. Anything blocking?"),
        ("ben", "Only the changelog.\nI'll have it done before lunch."),
        ("chen", "wrong window, sorry"),
        ("chen", "Dry-run is clean: 3 migrations, 0.4 s."),
    ]:
        posted[body] = site.post(author, general, body)
    # An edit, a deletion, reactions, a reply and a mention: what the room shows of each.
    thanks = posted["Thanks both. Anything blocking?"]["id"]
    site.rest(
        "ann",
        "PATCH",
        f"/api/rooms/{general}/messages/{thanks}/",
        {"body": "Thanks both! Anything blocking?"},
    )
    oops = posted["wrong window, sorry"]["id"]
    site.rest("chen", "DELETE", f"/api/rooms/{general}/messages/{oops}/")
    clean = posted["Dry-run is clean: 3 migrations, 0.4 s."]["id"]
    for name, emoji in [("ann", "🎉"), ("ben", "🎉"), ("ben", "👍")]:
        site.rest(
            name, "POST", f"/api/rooms/{general}/messages/{clean}/reactions/", {"emoji": emoji}
        )
    cut = posted["Morning! The release branch is cut."]["id"]
    body = {"body": "Which commit did you cut it from?", "reply_to": cut}
    site.rest("chen", "POST", f"/api/rooms/{general}/messages/", body)
    site.post("chen", design, "New icons are in the Figma file.")
    site.post("ben", design, "Looks great, shipping them with 2.4.")
    site.notify_user("ann", "Deploy finished", "herald 2.4.0 is live on production.")
    site.notify_user("ann", "Build #142 passed", "All 318 tests green on main.")
    site.token("ann")  # an API login session, so "Your devices" lists two

    # The sign-in page, before anyone signs in.
    context = browser.new_context(viewport={"width": 900, "height": 560}, base_url=site.url(""))
    page = context.new_page()
    page.goto("/login/")
    screenshot(page, "sign-in")
    context.close()

    ann = sign_in("ann")
    ben = sign_in("ben", viewport=PHONE, scale=2)  # online in the rooms ann looks at
    site.post("ben", general, "@ann changelog is up for review.")
    page = ann.page
    page.locator(f'[data-room="{general}"]').click()
    expect(message(page, "changelog is up for review.")).to_have_count(1)
    expect(page.locator("#history-start")).to_be_visible()  # the history is loaded
    expect(page.locator("#message-list .mention-me")).to_have_text("@ann")
    expect(page.locator("#message-list .reaction")).to_have_count(2)
    page.get_by_label("Message", exact=True).fill("Reviewing now")
    page.locator("#presence-count").click()  # who is here
    expect(page.locator("#presence-list li.online")).to_have_count(2)
    message(page, "Dry-run is clean").hover()  # its actions: react, reply, …
    screenshot(page, "room")
    page.locator("#presence-count").click()

    page.get_by_role("button", name="Notifications, 3 unread").click()
    expect(page.locator("#bell-panel .notif")).to_have_count(3)
    expect(page.locator("#bell-panel .notif-open")).to_have_count(1)
    screenshot(page, "notifications")
    page.keyboard.press("Escape")

    search = page.get_by_label("Search messages")
    search.fill("changelog")
    search.press("Enter")
    expect(page.locator("#search-results .search-result")).to_have_count(2)
    screenshot(page, "search")
    search.press("Escape")

    page.get_by_role("button", name="Members & settings").click()
    expect(page.locator("#member-list .member")).to_have_count(3)
    screenshot(page, "room-settings")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="+ New room").click()
    dialog = page.get_by_role("dialog", name="New room")
    dialog.get_by_label("Name").fill("release-2.5")
    for name in ("ben", "chen"):
        dialog.get_by_label("Add people").fill(name)
        dialog.locator(f'#new-room-results button[data-user="{site.users[name].id}"]').click()
    dialog.get_by_label("Add people").fill("a")
    expect(dialog.locator("#new-room-results button")).not_to_have_count(0)
    screenshot(page, "new-room")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    page.get_by_role("link", name="Your devices").click()
    expect(page.locator("#device-list .device")).to_have_count(2)
    screenshot(page, "devices")

    expect(ben.page.locator(f'[data-room="{general}"] .room-last')).to_contain_text("changelog")
    screenshot(ben.page, "phone-rooms")
    ben.page.locator(f'[data-room="{general}"]').click()
    expect(message(ben.page, "changelog is up for review.")).to_have_count(1)
    expect(ben.page.locator("#history-start")).to_be_visible()  # the history is loaded
    ben.page.mouse.move(0, 0)  # a phone has no hover
    screenshot(ben.page, "phone-room")
