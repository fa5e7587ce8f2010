"""Email digests of what a person missed (docs/protocol.md, "Email digests").

A notification still unread ``HERALD_EMAIL_AFTER`` seconds after it was stored goes into its
recipient's next digest: one email per user per period (``hourly`` or ``daily``, their
``email_digest`` preference; ``off`` sends none). A digest goes out as soon as one is due, and
the next not before a period after the last.

Nothing polls. Storing notifications enqueues one :func:`send_digests` task for the whole batch
with ``run_after`` = now + ``HERALD_EMAIL_AFTER``; a user whose period has not passed yet gets a
task of their own at the time it does. Each user's :class:`DigestState` row is locked while
their digest is built and sent, so concurrent workers never send the same notifications twice,
and its ``last_seq`` watermark keeps a notification out of every later digest.

Each digest has a one-click unsubscribe link (RFC 8058 ``List-Unsubscribe-Post``), signed with
the secret key, that turns digests off without a login.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from config.tasks import background_task, enqueue_on_commit

from .models import DigestState, Notification

log = logging.getLogger(__name__)

PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}
MAX_ITEMS = 50  # notifications listed in one email; the rest are counted
_UNSUBSCRIBE_SALT = "herald.digest.unsubscribe"


def email_after() -> timedelta:
    """How long a notification stays unread before it is due for a digest
    (``HERALD_EMAIL_AFTER``, seconds)."""
    return timedelta(seconds=settings.HERALD["EMAIL_AFTER"])


def unsubscribe_token(user_id: int) -> str:
    """A signed token naming ``user_id``, for the one-click unsubscribe link. It does not
    expire: an old email's link must still work (the action only turns email off)."""
    return signing.dumps(user_id, salt=_UNSUBSCRIBE_SALT, compress=True)


def user_of_unsubscribe_token(token: str) -> int | None:
    """The user id a token from :func:`unsubscribe_token` names, or ``None`` if it was not
    signed with this deployment's key."""
    try:
        return int(signing.loads(token, salt=_UNSUBSCRIBE_SALT))
    except (signing.BadSignature, TypeError, ValueError):
        return None


def unsubscribe_url(user_id: int) -> str:
    """The absolute unsubscribe link for ``user_id`` (``HERALD_PUBLIC_URL`` + path)."""
    path = reverse("digest-unsubscribe", args=[unsubscribe_token(user_id)])
    return settings.HERALD["PUBLIC_URL"].rstrip("/") + path


def schedule_for(user_ids: list[int]) -> None:
    """After commit, enqueue one :func:`send_digests` for ``user_ids``, to run when their new
    notifications become due. Called by ``notification_create``; costs one queue insert per
    batch, whatever its size."""
    if not user_ids:
        return
    run_after = timezone.now() + email_after()
    enqueue_on_commit(send_digests.using(run_after=run_after), sorted(user_ids))


def _period_of(user_id: int) -> timedelta | None:
    from .preferences import email_digest_of  # the one place preferences are read

    return PERIODS.get(email_digest_of(user_id))


def send_digest(user_id: int, *, now: datetime | None = None) -> datetime | None:
    """Send ``user_id`` their digest if one is due now; return when to look again, or
    ``None`` when nothing is left to do.

    Due: at least one notification unread, not in an earlier digest, and stored at least
    ``HERALD_EMAIL_AFTER`` ago, and the user's period since the last digest has passed. A user
    without an email address, or with digests ``off``, gets nothing. Raises what the email
    backend raises (``smtplib.SMTPException``, ``OSError``): the row lock is released, nothing
    is marked sent, and the task is retried.
    """
    now = now or timezone.now()
    period = _period_of(user_id)
    if period is None:
        return None
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.email:
        return None
    with transaction.atomic():
        state, _ = DigestState.objects.get_or_create(user_id=user_id)
        state = DigestState.objects.select_for_update().get(pk=state.pk)
        pending = Notification.objects.filter(
            recipient_id=user_id,
            read_at__isnull=True,
            seq__gt=state.last_seq,
            created_at__lte=now - email_after(),
        ).order_by("seq")
        count = pending.count()
        if not count:
            return None
        if state.last_sent_at is not None and now < state.last_sent_at + period:
            return state.last_sent_at + period
        items = list(pending[:MAX_ITEMS])
        last_seq = pending.values_list("seq", flat=True).last()
        _email(user, items, count)
        state.last_sent_at = now
        state.last_seq = last_seq
        state.save(update_fields=["last_sent_at", "last_seq"])
    log.info("digest sent", extra={"user": user_id, "notifications": count})
    return None


def _email(user: Any, items: list[Notification], count: int) -> None:
    base = settings.HERALD["PUBLIC_URL"].rstrip("/")
    unsubscribe = unsubscribe_url(user.pk)
    context = {
        "user": user,
        "items": items,
        "count": count,
        "more": count - len(items),
        "open_url": base + "/",
        "settings_url": base + "/settings/",
        "unsubscribe_url": unsubscribe,
    }
    subject = f"You have {count} unread notification{'s' if count != 1 else ''} on Herald"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifications/email/digest.txt", context),
        to=[user.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    message.attach_alternative(
        render_to_string("notifications/email/digest.html", context), "text/html"
    )
    message.send()


@background_task(max_attempts=8, backoff=30, max_backoff=3600)
def send_digests(user_ids: list[int]) -> None:
    """Send each user in ``user_ids`` the digest that is due; a user whose period has not
    passed yet gets a task of their own when it has (a task of the queue: docs/deployment.md,
    "Workers")."""
    for user_id in user_ids:
        again = send_digest(user_id)
        if again is not None:
            send_digests.using(run_after=again).enqueue([user_id])
