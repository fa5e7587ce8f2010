"""Test data written straight through the models or the services (set-up, not under test)."""

from typing import Any

from chat import services as chat_services
from chat.models import Room
from notifications.models import Notification, NotificationCounter


def notifications_bulk(user: Any, count: int, *, start: int = 1) -> list[Notification]:
    """Store ``count`` notifications of ``user`` with seqs ``start..`` (test data set-up only)."""
    rows = Notification.objects.bulk_create(
        Notification(recipient=user, seq=seq, title=f"n{seq}")
        for seq in range(start, start + count)
    )
    NotificationCounter.objects.update_or_create(
        user=user, defaults={"last_seq": start + count - 1}
    )
    return rows


def send_as(user: Any, room: Room, body: str) -> int:
    """Store (and publish) a message of ``user`` through the service; its id."""
    return chat_services.room_message_send(room_id=room.pk, author_id=user.pk, body=body).pk
