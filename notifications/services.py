"""Writes for notifications: create with a per-user ``seq``, mark read.

Every service runs in ``transaction.atomic`` and publishes through ``realtime.publisher`` after
commit.
"""

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from realtime import publisher
from realtime.groups import user_group

from . import digests, events, preferences, push, selectors, webhooks
from .models import Notification, NotificationCounter
from .serializers import notification_payload
from .webhooks import emit_event  # chat raises webhook events through this module

_BATCH = 1000


@dataclass(frozen=True)
class NotificationBatch:
    """What ``notification_create`` stored: ``count`` rows with these ``ids``."""

    count: int
    ids: list[int]


def _allocate_seqs(user_ids: list[int]) -> dict[int, int]:
    """Give each user (ids ascending) the next ``seq`` of their notifications; return
    ``{user_id: seq}``. Must run inside ``transaction.atomic``.

    One upsert per 1000 users, ``INSERT … ON CONFLICT (user_id) DO UPDATE SET last_seq =
    last_seq + 1 RETURNING`` (PostgreSQL 9.5+, SQLite 3.35+): it creates a missing counter at 1
    and locks and increments an existing one, so concurrent creators for the same user queue
    on its row instead of taking the same number, and two batches, locking in ``user_id``
    order, cannot deadlock. Where the database has no such statement, the same in four
    statements (insert missing, lock in order, increment, read back).
    """
    seqs: dict[int, int] = {}
    if connection.vendor not in ("postgresql", "sqlite"):
        return _allocate_seqs_portable(user_ids)
    quote = connection.ops.quote_name
    table = quote(NotificationCounter._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(user_ids), _BATCH):
            chunk = user_ids[start : start + _BATCH]
            values = ", ".join(["(%s, 1)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({quote('user_id')}, {quote('last_seq')}) "  # noqa: S608
                f"VALUES {values} ON CONFLICT ({quote('user_id')}) DO UPDATE SET "
                f"{quote('last_seq')} = {table}.{quote('last_seq')} + 1 "
                f"RETURNING {quote('user_id')}, {quote('last_seq')}",
                chunk,
            )
            seqs.update((int(user), int(seq)) for user, seq in cursor.fetchall())
    return seqs


def _allocate_seqs_portable(user_ids: list[int]) -> dict[int, int]:
    NotificationCounter.objects.bulk_create(
        [NotificationCounter(user_id=pk) for pk in user_ids],
        ignore_conflicts=True,
        batch_size=_BATCH,
    )
    seqs: dict[int, int] = {}
    for start in range(0, len(user_ids), _BATCH):
        chunk = NotificationCounter.objects.filter(user_id__in=user_ids[start : start + _BATCH])
        list(chunk.select_for_update().order_by("pk").values_list("pk"))  # lock, in order
        chunk.update(last_seq=F("last_seq") + 1)
        seqs.update(chunk.values_list("user_id", "last_seq"))
    return seqs


def notification_create(
    *,
    recipient_ids: list[int],
    title: str,
    body: str = "",
    data: dict[str, Any] | None = None,
    sender_id: int | None = None,
    idempotency_key: str | None = None,
) -> NotificationBatch:
    """Store one notification per recipient, then push each to ``user.<id>`` after commit.

    ``recipient_ids``: 1..10 000 distinct existing user ids. With an ``idempotency_key`` already
    used by this sender, nothing is stored and the first call's batch is returned
    (docs/protocol.md, "HTTP API").
    """
    if idempotency_key is not None:
        previous = selectors.notification_batch_by_key(sender_id=sender_id, key=idempotency_key)
        if previous:
            return NotificationBatch(count=len(previous), ids=previous)
    recipient_ids = sorted(set(recipient_ids))
    try:
        with transaction.atomic():
            seqs = _allocate_seqs(recipient_ids)
            rows = Notification.objects.bulk_create(
                [
                    Notification(
                        recipient_id=pk,
                        seq=seqs[pk],
                        title=title,
                        body=body,
                        data=data or {},
                        sender_id=sender_id,
                        idempotency_key=idempotency_key,
                    )
                    for pk in recipient_ids
                ],
                batch_size=_BATCH,
            )
            if rows and rows[0].pk is None:  # a backend that cannot return ids from bulk inserts
                rows = list(
                    Notification.objects.filter(
                        recipient_id__in=recipient_ids, seq__in=set(seqs.values())
                    )
                )
                rows = [n for n in rows if seqs[n.recipient_id] == n.seq]
            publisher.publish_on_commit(
                (user_group(n.recipient_id), events.notification_created(notification_payload(n)))
                for n in rows
            )
            digests.schedule_for([n.recipient_id for n in rows])
            push.schedule_for(rows)  # after commit, after the live publish: never in its way
    except IntegrityError:
        # A concurrent call with the same idempotency key won the race: answer with its batch.
        if idempotency_key is None:
            raise
        previous = selectors.notification_batch_by_key(sender_id=sender_id, key=idempotency_key)
        return NotificationBatch(count=len(previous), ids=previous)
    return NotificationBatch(count=len(rows), ids=[n.pk for n in rows])


def notify_mention(
    *, user_ids: list[int], title: str, body: str, data: dict[str, Any]
) -> NotificationBatch:
    """Notify users that a chat message names them (``@username``): one stored notification
    each, numbered and pushed to every socket like any other (:func:`notification_create`).

    ``data`` is ``{kind: "mention", room, message}``. The one place a mention becomes a
    notification, so that a user's preferences apply here: whoever muted ``data["room"]`` is
    left out (docs/protocol.md, "Preferences").
    """
    if user_ids and data.get("room") is not None:
        muted = preferences.muted_user_ids(room_id=int(data["room"]), user_ids=user_ids)
        user_ids = [pk for pk in user_ids if pk not in muted]
    if not user_ids:
        return NotificationBatch(count=0, ids=[])
    return notification_create(recipient_ids=user_ids, title=title[:200], body=body, data=data)


def _publish_read(*, user_id: int, ids: list[int] | None) -> int:
    unread = selectors.notification_unread_count(user_id=user_id)
    publisher.publish_on_commit(
        [(user_group(user_id), events.notification_read(ids=ids, unread_count=unread))]
    )
    return unread


def _emit_read(*, user_id: int, ids: list[int] | None) -> None:
    """``notification.read`` for the endpoints of the services that sent the notifications
    just read (``ids``, or every unread one): each learns only of its own notifications."""
    if not webhooks.wanted("notification.read"):
        return
    unread = Notification.objects.filter(recipient_id=user_id, sender__isnull=False)
    unread = unread.filter(pk__in=ids) if ids is not None else unread.filter(read_at__isnull=True)
    by_sender: dict[int, list[int]] = {}
    for pk, sender_id in unread.values_list("pk", "sender_id"):
        by_sender.setdefault(sender_id, []).append(pk)
    for sender_id, read in by_sender.items():
        data = {"user": {"id": user_id}, "ids": sorted(read), "all": ids is None}
        emit_event("notification.read", data, owner_ids=[sender_id])


@receiver(webhooks.endpoint_disabled)
def _notify_endpoint_disabled(
    sender: Any, endpoint: Any, failures: int, error: str, **_: Any
) -> None:
    """Tell a webhook endpoint's owner that it was disabled (docs/protocol.md, "Webhooks")."""
    notification_create(
        recipient_ids=[endpoint.owner_id],
        title="Webhook endpoint disabled",
        body=f"{endpoint.url} failed {failures} times in a row (last: {error}). "
        "Fix it, then register it again.",
        data={"webhook_endpoint": endpoint.pk, "url": endpoint.url},
    )


def notification_mark_read(*, user_id: int, ids: list[int]) -> int:
    """Mark the user's notifications ``ids`` read; return the unread count after.

    Ids of other users' notifications are ignored (they are not the caller's to read). Every
    socket of the user gets ``notification.read {ids, unread_count}``
    (docs/protocol.md, "Notifications").
    """
    with transaction.atomic():
        mine = list(
            Notification.objects.filter(recipient_id=user_id, pk__in=ids).values_list(
                "pk", flat=True
            )
        )
        _emit_read(user_id=user_id, ids=mine)
        Notification.objects.filter(pk__in=mine, read_at__isnull=True).update(
            read_at=timezone.now()
        )
        return _publish_read(user_id=user_id, ids=sorted(mine))


def notification_mark_all_read(*, user_id: int) -> int:
    """Mark every notification of the user read; return the unread count after (0)."""
    with transaction.atomic():
        _emit_read(user_id=user_id, ids=None)
        Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).update(
            read_at=timezone.now()
        )
        return _publish_read(user_id=user_id, ids=None)


def is_room_muted(user_id: int, room_id: int) -> bool:
    """Whether the user muted the room (their preferences' ``muted_rooms``): a mention there
    must not notify them, and nothing about it is pushed (docs/protocol.md, "Preferences")."""
    return bool(preferences.muted_user_ids(room_id=room_id, user_ids=[user_id]))


def muted_user_ids(*, room_id: int, user_ids: list[int]) -> set[int]:
    """Which of ``user_ids`` muted the room, in one query: the recipients a mention in it
    leaves out (docs/protocol.md, "Preferences")."""
    return preferences.muted_user_ids(room_id=room_id, user_ids=user_ids)
