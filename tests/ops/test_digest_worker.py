"""Email digests as deployed: a notification stored by one process, a real ``herald_worker``
sending the digest when it is due, to a real SMTP server named by ``EMAIL_URL``."""

import contextlib
import email
import email.policy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.queue import Queue, start_queue, wait_until
from tests.support.rig import free_port

pytestmark = pytest.mark.processes

EMAIL_AFTER = 2  # s


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def mail() -> Iterator[tuple[Queue, _Inbox]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    with contextlib.ExitStack() as stack:
        stack.callback(controller.stop)
        queue = start_queue(
            stack,
            EMAIL_URL=f"smtp://127.0.0.1:{port}",
            HERALD_EMAIL_AFTER=str(EMAIL_AFTER),
            HERALD_PUBLIC_URL="https://herald.example",
        )
        yield queue, inbox


def test_a_notification_left_unread_is_emailed_by_a_worker_and_a_read_one_is_not(
    mail: tuple[Queue, _Inbox],
) -> None:
    queue, inbox = mail
    queue.shell(
        "from django.contrib.auth import get_user_model\n"
        "from notifications import services\n"
        "U = get_user_model()\n"
        "away = U.objects.create_user('away', 'away@example.com', 'pw')\n"
        "back = U.objects.create_user('back', 'back@example.com', 'pw')\n"
        "services.notification_create(recipient_ids=[away.pk, back.pk], title='Disk 91% full')\n"
        "services.notification_mark_all_read(user_id=back.pk)\n"
    )
    stored = time.monotonic()
    worker = queue.start_worker()
    wait_until(lambda: inbox.messages, timeout=EMAIL_AFTER + 15, what="a digest", logs=[worker])
    assert time.monotonic() - stored >= EMAIL_AFTER - 0.5  # not before it is due
    time.sleep(1)  # a second (wrong) email would arrive now
    [(recipients, message)] = inbox.messages
    assert recipients == ["away@example.com"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Disk 91% full" in text
    assert "https://herald.example/email/unsubscribe/" in text
    [row] = queue.rows("notifications.digests.send_digests")
    assert row["status"] == "SUCCESSFUL"
