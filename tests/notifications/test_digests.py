"""Email digests through a real SMTP server (aiosmtpd on a free port), configured from
``EMAIL_URL`` as a deployment would configure it."""

import email
import email.policy
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import environ
import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from notifications import digests, services
from notifications.models import Notification
from tests.factories import UserFactory
from tests.support.rig import free_port

pytestmark = pytest.mark.django_db


class _Inbox:
    """An aiosmtpd handler keeping every message it accepts, parsed."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def smtp(settings: Any) -> Iterator[_Inbox]:
    """A real SMTP server; the settings point Django's email at it through ``EMAIL_URL``."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    config = environ.Env.email_url_config(f"smtp://127.0.0.1:{port}")
    for key, value in config.items():
        setattr(settings, key, value)
    settings.HERALD = {**settings.HERALD, "PUBLIC_URL": "https://herald.example"}
    try:
        yield inbox
    finally:
        controller.stop()


def _notify(user: Any, title: str, body: str = "") -> Notification:
    batch = services.notification_create(recipient_ids=[user.pk], title=title, body=body)
    return Notification.objects.get(pk=batch.ids[0])


def _parts(message: email.message.EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def test_unread_notifications_go_out_as_one_digest_with_text_html_and_unsubscribe(
    smtp: _Inbox,
) -> None:
    alice = UserFactory(username="alice", email="alice@example.com")
    _notify(alice, "Deploy finished", "web-3 is live")
    _notify(alice, "Build <broken>", "main is red")
    read = _notify(alice, "Already seen")
    services.notification_mark_read(user_id=alice.pk, ids=[read.pk])

    assert digests.send_digest(alice.pk) is None  # too fresh: nothing yet
    assert smtp.messages == []

    later = timezone.now() + timedelta(seconds=901)
    assert digests.send_digest(alice.pk, now=later) is None
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert smtp.recipients == [["alice@example.com"]]
    assert message["Subject"] == "You have 2 unread notifications on Herald"
    text, html = _parts(message)
    assert "Deploy finished" in text
    assert "web-3 is live" in text
    assert "Build <broken>" in text  # plain text is not HTML-escaped
    assert "Build &lt;broken&gt;" in html  # and the HTML is
    assert "Already seen" not in text
    unsubscribe = message["List-Unsubscribe"].strip().strip("<>")
    assert unsubscribe.startswith("https://herald.example/email/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in text
    assert unsubscribe in html

    # Sent once: the same notifications never go out again.
    assert digests.send_digest(alice.pk, now=later + timedelta(days=2)) is None
    assert len(smtp.messages) == 1


def test_the_next_digest_waits_a_period_after_the_last(smtp: _Inbox) -> None:
    bob = UserFactory(username="bob", email="bob@example.com")
    from notifications.preferences import preferences_update

    preferences_update(user_id=bob.pk, changes={"email_digest": "hourly"})
    _notify(bob, "first")
    sent_at = timezone.now() + timedelta(minutes=16)
    digests.send_digest(bob.pk, now=sent_at)
    assert len(smtp.messages) == 1

    _notify(bob, "second")
    again = digests.send_digest(bob.pk, now=sent_at + timedelta(minutes=20))
    assert again == sent_at + timedelta(hours=1)  # due, but not yet allowed: when to look again
    assert len(smtp.messages) == 1
    digests.send_digest(bob.pk, now=again)
    assert len(smtp.messages) == 2
    text, _ = _parts(smtp.messages[1])
    assert "second" in text
    assert "first" not in text


def test_digests_off_or_no_address_sends_nothing(smtp: _Inbox) -> None:
    from notifications.preferences import preferences_update

    carol = UserFactory(username="carol", email="carol@example.com")
    preferences_update(user_id=carol.pk, changes={"email_digest": "off"})
    nomail = UserFactory(username="nomail", email="")
    for user in (carol, nomail):
        _notify(user, "hello")
        digests.send_digest(user.pk, now=timezone.now() + timedelta(days=1))
    assert smtp.messages == []


def test_the_unsubscribe_link_turns_digests_off_in_one_click_without_login(
    smtp: _Inbox, client: Any
) -> None:
    from notifications.preferences import email_digest_of

    dave = UserFactory(username="dave", email="dave@example.com")
    url = digests.unsubscribe_url(dave.pk).removeprefix("https://herald.example")

    page = client.get(url)  # a link prefetcher: changes nothing
    assert page.status_code == 200
    assert b"Unsubscribe" in page.content
    assert email_digest_of(dave.pk) == "daily"

    answer = client.post(url, {"List-Unsubscribe": "One-Click"})  # RFC 8058, no cookie, no CSRF
    assert answer.status_code == 200
    assert email_digest_of(dave.pk) == "off"

    _notify(dave, "after unsubscribing")
    digests.send_digest(dave.pk, now=timezone.now() + timedelta(days=1))
    assert smtp.messages == []

    forged = url.replace(url.split("/")[-2], url.split("/")[-2][:-2] + "xx")
    assert client.post(forged).status_code == 400


def test_a_failing_smtp_server_leaves_the_digest_due(settings: Any) -> None:
    erin = UserFactory(username="erin", email="erin@example.com")
    port = free_port()  # nothing listens here
    for key, value in environ.Env.email_url_config(f"smtp://127.0.0.1:{port}").items():
        setattr(settings, key, value)
    settings.EMAIL_TIMEOUT = 2
    _notify(erin, "important")
    later = timezone.now() + timedelta(hours=1)
    with pytest.raises(ConnectionRefusedError):
        digests.send_digest(erin.pk, now=later)
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        digests.send_digest(erin.pk, now=later)  # the retry
        deadline = time.monotonic() + 5
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    assert "important" in _parts(inbox.messages[0])[0]
