"""Reads for notifications: lists, unread counts, ``resume`` pages, idempotency look-ups."""

from django.db.models import (
    QuerySet,
)

from .models import Notification

MAX_ID = 2**63 - 1  # the largest id a database column holds; larger input matches nothing


def notification_list(
    *, user_id: int, unread: bool = False, after_seq: int | None = None
) -> QuerySet[Notification]:
    """The user's notifications, newest first; optionally only unread, or only ``seq > after_seq``."""
    qs = Notification.objects.filter(recipient_id=user_id)
    if unread:
        qs = qs.filter(read_at__isnull=True)
    if after_seq is not None:
        qs = qs.filter(seq__gt=after_seq)
    return qs.order_by("-seq")


def notification_unread_count(*, user_id: int) -> int:
    """How many of the user's notifications are unread."""
    return Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()


def notifications_since(*, user_id: int, seq: int, limit: int) -> list[Notification]:
    """Up to ``limit`` of the user's notifications with ``seq`` above ``seq``, oldest first."""
    return list(
        Notification.objects.filter(recipient_id=user_id, seq__gt=seq).order_by("seq")[:limit]
    )


def notification_batch_by_key(*, sender_id: int | None, key: str) -> list[int]:
    """Ids stored by an earlier create with this sender and idempotency key (empty if none)."""
    return list(
        Notification.objects.filter(sender_id=sender_id, idempotency_key=key)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
