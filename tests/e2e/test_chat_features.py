"""Rooms and messages beyond sending, in two real browsers against daphne and Redis: creating
and managing a group room (the other member's room list follows live, without a reload),
editing, deleting, reactions, replies, mentions and search.

Each test signs its own users in (created here, one set per test) through the sign-in form, in
their own browser contexts. Every assertion is something one of them sees on the page.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import PASSWORD, Site, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PEOPLE = ["alice", "bob", "cleo", "ada", "bert", "sam"]
LIVE = 3_000  # ms: a live change shows within this, or the test fails


@pytest.fixture(scope="module")
def people(site: Site) -> Site:
    """The users of this module, created once in one process."""
    missing = [name for name in PEOPLE if name not in site.users]
    if missing:
        site.create_users(missing, password=PASSWORD)
    return site


def msg(page, body):
    """The message of the open room whose body contains ``body``."""
    return page.locator("#message-list .msg").filter(has=page.locator(".msg-body", has_text=body))


def send(page, body):
    composer = page.get_by_label("Message", exact=True)
    composer.fill(body)
    composer.press("Enter")
    expect(msg(page, body).and_(page.locator(".msg:not(.pending)"))).to_have_count(1)


def open_room(page, name):
    page.locator(".room-link", has_text=name).click()
    expect(page.locator("#room-title")).to_have_text(f"# {name}")
    wait_connected(page)


def mark_page(page):
    """Tag the document, so that a later check can tell the page was never reloaded."""
    page.evaluate("document.documentElement.dataset.probe = 'still-here'")


def assert_not_reloaded(page):
    expect(page.locator("html")).to_have_attribute("data-probe", "still-here")


def test_a_new_room_and_its_changes_reach_the_other_member_live(people: Site, sign_in):
    alice, bob = sign_in("alice"), sign_in("bob")
    mark_page(bob.page)
    expect(bob.page.locator("#rooms-empty")).to_be_visible()

    # Alice creates "launch" with Bob and Cleo, picking them with the user search.
    page = alice.page
    page.get_by_role("button", name="+ New room").click()
    dialog = page.get_by_role("dialog", name="New room")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    dialog.get_by_role("button", name="Create room").click()  # no name yet
    expect(dialog.get_by_role("alert")).to_have_text("Give the room a name.")
    dialog.get_by_label("Name").fill("launch")
    people_field = dialog.get_by_label("Add people")
    for name in ("bob", "cleo"):
        people_field.fill(name)
        dialog.locator(f'#new-room-results button[data-user="{people.users[name].id}"]').click()
    expect(dialog.locator("#new-room-chosen .chip")).to_have_text(["bob×", "cleo×"])
    dialog.get_by_role("button", name="Create room").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#room-title")).to_have_text("# launch")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()

    # Bob's room list shows it at once, without a reload, and the room works for him.
    link = bob.page.locator(".room-link", has_text="launch")
    expect(link).to_have_count(1, timeout=LIVE)
    assert_not_reloaded(bob.page)
    link.click()
    expect(bob.page.locator("#room-title")).to_have_text("# launch")
    send(page, "welcome aboard")
    expect(msg(bob.page, "welcome aboard")).to_have_count(1, timeout=LIVE)

    # Alice (an owner) sees the members, renames the room, removes Cleo.
    page.get_by_role("button", name="Members & settings").click()
    settings = page.get_by_role("dialog", name="Members & settings")
    expect(settings.locator("#member-list .member-name")).to_have_text(["alice", "bob", "cleo"])
    settings.get_by_label("Room name").fill("launch-v2")
    settings.get_by_label("Room name").press("Enter")
    expect(settings.get_by_role("status")).to_have_text("Renamed.")
    expect(bob.page.locator(".room-link .room-name", has_text="launch")).to_have_text(
        "launch-v2", timeout=LIVE
    )
    expect(bob.page.locator("#room-title")).to_have_text("# launch-v2")
    settings.get_by_role("button", name="Remove cleo").click()
    expect(settings.locator("#member-list .member-name")).to_have_text(["alice", "bob"])
    bob.page.locator("#presence-count").click()  # who is in the room, for Bob
    expect(bob.page.locator("#presence-list li")).to_have_count(2, timeout=LIVE)
    expect(bob.page.locator("#presence-count")).to_contain_text("of 2 online")
    page.keyboard.press("Escape")  # closes the dialog, focus back on its button
    expect(settings).to_be_hidden()
    expect(page.get_by_role("button", name="Members & settings")).to_be_focused()

    # Bob, a plain member, cannot rename or remove; he leaves, and Alice sees him go.
    bob.page.get_by_role("button", name="Members & settings").click()
    bob_settings = bob.page.get_by_role("dialog", name="Members & settings")
    expect(bob_settings.get_by_role("button", name="Rename")).to_be_hidden()
    expect(bob_settings.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    bob_settings.get_by_role("button", name="Leave room").click()
    expect(bob.page.locator(".room-link", has_text="launch")).to_have_count(0)
    expect(bob.page.locator("#view-home")).to_be_visible()
    page.locator("#presence-count").click()
    expect(page.locator("#presence-list li")).to_have_count(1, timeout=LIVE)
    expect(page.locator("#presence-count")).to_contain_text("of 1 online")

    # Alice adds Bob again: his list gains the room live, still without a reload.
    page.get_by_role("button", name="Members & settings").click()
    settings.get_by_label("Add people").fill("bob")
    settings.locator(f'#add-member-results button[data-user="{people.users["bob"].id}"]').click()
    expect(settings.locator("#member-list .member-name")).to_have_text(["alice", "bob"])
    expect(bob.page.locator(".room-link", has_text="launch-v2")).to_have_count(1, timeout=LIVE)
    assert_not_reloaded(bob.page)

    # A direct message Alice starts shows in Bob's list at once, before she writes anything.
    page.keyboard.press("Escape")
    page.get_by_label("Direct message").fill("bob")
    page.locator(f'#dm-results button[data-user="{people.users["bob"].id}"]').click()
    expect(page.locator("#room-title")).to_have_text("@ bob")
    direct = bob.page.locator(".room-link").filter(has=bob.page.get_by_text("alice", exact=True))
    expect(direct).to_have_count(1, timeout=LIVE)
    expect(direct.locator(".room-last")).to_have_text("No messages yet")
    assert_not_reloaded(bob.page)


def test_edit_delete_react_reply_and_mention(people: Site, sign_in):
    room = people.room("ada", "kitchen", ["bert"])
    ada, bert = sign_in("ada"), sign_in("bert")
    open_room(ada.page, "kitchen")
    open_room(bert.page, "kitchen")
    mark_page(bert.page)

    # Edit: inline, Enter saves; Bert sees the new text and the "edited" marker live.
    send(ada.page, "Lunch at noon?")
    first = msg(ada.page, "Lunch at noon?")
    first.hover()
    first.get_by_role("button", name="Edit").click()
    editor = ada.page.get_by_label("Edit message")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Lunch at noon?")
    editor.fill("Lunch at 12:30?")
    editor.press("Enter")
    for page in (ada.page, bert.page):
        edited = msg(page, "Lunch at 12:30?")
        expect(edited).to_have_count(1, timeout=LIVE)
        expect(edited.locator(".edited")).to_have_text("(edited)")
    expect(msg(bert.page, "Lunch at noon?")).to_have_count(0)

    # Escape leaves an edit without saving.
    parent = msg(ada.page, "Lunch at 12:30?")
    parent.get_by_role("button", name="Edit").click()
    ada.page.get_by_label("Edit message").fill("never saved")
    ada.page.get_by_label("Edit message").press("Escape")
    expect(parent.locator(".msg-body")).to_have_text("Lunch at 12:30?")

    # React: Bert picks 👍 from the picker; Ada sees the count and who reacted.
    on_bert = msg(bert.page, "Lunch at 12:30?")
    on_bert.hover()
    on_bert.get_by_role("button", name="Add a reaction").click()
    bert.page.get_by_role("button", name="React with 👍").click()
    expect(on_bert.locator(".reaction")).to_have_text(["👍 1"], timeout=LIVE)
    expect(on_bert.locator(".reaction")).to_have_attribute("aria-pressed", "true")
    reaction = parent.locator(".reaction")
    expect(reaction).to_have_text(["👍 1"], timeout=LIVE)
    expect(reaction).to_have_attribute("title", "bert")
    expect(reaction).to_have_attribute("aria-pressed", "false")
    reaction.click()  # Ada adds hers by pressing the count
    expect(on_bert.locator(".reaction")).to_have_text(["👍 2"], timeout=LIVE)
    expect(on_bert.locator(".reaction")).to_have_attribute(
        "title", re.compile("^(bert, ada|ada, bert)$")
    )
    on_bert.locator(".reaction").click()  # Bert takes his back
    expect(reaction).to_have_text(["👍 1"], timeout=LIVE)
    expect(reaction).to_have_attribute("title", "ada")

    # The keyboard alone: the action bar's button opens the picker, focus moves into it, Tab
    # and Enter pick; Escape closes the picker and gives the focus back.
    react_button = parent.get_by_role("button", name="Add a reaction")
    react_button.focus()
    expect(parent.locator(".msg-actions")).to_have_css("opacity", "1")
    react_button.press("Enter")
    expect(ada.page.get_by_role("button", name="React with 👍")).to_be_focused()
    ada.page.keyboard.press("Tab")
    ada.page.keyboard.press("Enter")
    expect(on_bert.locator(".reaction")).to_have_text(["👍 1", "❤️ 1"], timeout=LIVE)
    expect(react_button).to_be_focused()
    react_button.press("Enter")
    expect(ada.page.get_by_role("group", name="Pick a reaction")).to_be_visible()
    ada.page.keyboard.press("Escape")
    expect(ada.page.get_by_role("group", name="Pick a reaction")).to_have_count(0)
    expect(react_button).to_be_focused()

    # Reply: enough messages come in that the parent scrolls out of sight.
    for i in range(30):
        people.post("ada", room, f"filler {i}")
    expect(msg(bert.page, "filler 29")).to_have_count(1, timeout=LIVE)
    expect(msg(ada.page, "filler 29")).to_have_count(1, timeout=LIVE)
    # Bert scrolls back up to the parent and replies to it.
    on_bert.scroll_into_view_if_needed()
    on_bert.hover()
    on_bert.get_by_role("button", name="Reply").click()
    preview = bert.page.locator("#reply-preview")
    expect(preview).to_contain_text("Replying to ada")
    expect(preview).to_contain_text("Lunch at 12:30?")
    composer = bert.page.get_by_label("Message", exact=True)
    expect(composer).to_be_focused()
    composer.fill("Works for me")
    composer.press("Enter")
    expect(preview).to_be_hidden()
    reply = msg(ada.page, "Works for me")
    expect(reply.locator(".reply-quote")).to_have_text("adaLunch at 12:30?", timeout=LIVE)
    expect(parent).not_to_be_in_viewport()
    reply.locator(".reply-quote").click()
    expect(parent).to_be_in_viewport()
    expect(parent).to_have_class(re.compile(r"\bhighlight\b"))
    expect(parent).to_be_focused()

    # Delete: Ada confirms; both see a tombstone in its place, and the reply's quote follows.
    parent.hover()
    parent.get_by_role("button", name="Delete").click()
    expect(parent.get_by_role("button", name="Cancel")).to_be_focused()
    parent.get_by_role("button", name="Yes, delete it").click()
    for page in (ada.page, bert.page):
        tomb = page.locator("#message-list .msg.deleted")
        expect(tomb).to_have_count(1, timeout=LIVE)
        expect(tomb.locator(".msg-body")).to_have_text("message deleted")
        expect(tomb.locator(".reaction")).to_have_count(0)
        expect(msg(page, "Works for me").locator(".reply-quote")).to_have_text(
            "adamessage deleted", timeout=LIVE
        )
    expect(msg(bert.page, "Lunch at 12:30?")).to_have_count(0)
    # Bert may not delete Ada's message: no button offers it.
    expect(
        msg(bert.page, "filler 29").get_by_role("button", name="Delete", exact=True)
    ).to_have_count(0)

    # Mention: Bert is elsewhere; his bell rings, and its notification opens the message.
    bert.page.get_by_role("link", name="Herald").click()
    expect(bert.page.locator("#view-home")).to_be_visible()
    send(ada.page, "@bert can you book the table?")
    expect(msg(ada.page, "can you book").locator(".mention")).to_have_text("@bert")
    expect(bert.page.locator("#bell-count")).to_have_text("1", timeout=LIVE)
    expect(bert.page.locator("#bell-button")).to_have_class(re.compile(r"\bring\b"))
    bert.page.get_by_role("button", name="Notifications, 1 unread").click()
    notification = bert.page.locator(".notif", has_text="ada mentioned you in kitchen")
    expect(notification).to_contain_text("can you book the table?")
    notification.get_by_role("link", name=re.compile("Show the message")).click()
    expect(bert.page.locator("#room-title")).to_have_text("# kitchen")
    mention = msg(bert.page, "can you book")
    expect(mention).to_be_in_viewport()
    expect(mention).to_have_class(re.compile(r"\bhighlight\b"))
    expect(mention.locator(".mention-me")).to_have_text("@bert")
    expect(bert.page.locator("#bell-count")).to_be_hidden(timeout=LIVE)  # read by opening it
    assert_not_reloaded(bert.page)


def test_search_opens_the_room_at_an_old_message(people: Site, sign_in):
    room = people.room("sam", "archive", ["alice"])
    target = people.post("alice", room, "the blue harbour plan, version two")
    for i in range(100):
        people.post("alice", room, f"later note {i}")
    sam = sign_in("sam")
    page = sam.page
    box = page.get_by_label("Search messages")

    box.fill("zebra")
    box.press("Enter")
    expect(page.locator("#search-status")).to_have_text("No messages match “zebra”.")

    box.fill("harbour")
    box.press("Enter")
    results = page.locator("#search-results .search-result")
    expect(results).to_have_count(1)
    expect(results.locator(".search-room")).to_have_text("# archive")
    expect(results.locator(".search-body")).to_have_text("the blue harbour plan, version two")
    results.click()
    expect(page.locator("#search-panel")).to_be_hidden()
    expect(page.locator("#room-title")).to_have_text("# archive")
    found = page.locator(f'#message-list .msg[data-id="{target["id"]}"]')
    expect(found).to_be_in_viewport()
    expect(found).to_have_class(re.compile(r"\bhighlight\b"))
    # The newest messages are loaded too; the hole between them fills on request.
    expect(msg(page, "later note 99")).to_have_count(1)
    gap = page.get_by_role("button", name="Show newer messages")
    for _ in range(5):
        if not gap.count():
            break
        gap.click()
        page.wait_for_timeout(300)
    for i in (0, 24, 25, 50, 99):
        expect(msg(page, f"later note {i}")).to_have_count(1)
    expect(page.locator("#message-list .msg")).to_have_count(101)

    # Escape closes the results; the same result link works again.
    box.press("Enter")
    expect(results).to_have_count(1)
    box.press("Escape")
    expect(page.locator("#search-panel")).to_be_hidden()
