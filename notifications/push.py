"""Web Push: browsers' push subscriptions, and the push of a notification to a user who has no
open socket (docs/protocol.md, "Web Push"; docs/security.md, "Web Push").

Pushes are sent by pywebpush: the payload is encrypted for the browser (RFC 8291, content
encoding ``aes128gcm``, RFC 8188) and the request signed with the deployment's VAPID key
(RFC 8292, ``Authorization: vapid t=<ES256 JWT>, k=<public key>``).

Nothing here is on the path of a live notification. ``notification_create`` calls
:func:`schedule_for` inside its transaction; after commit (and after the live publish, which was
registered first) it enqueues one :func:`deliver` task for the recipients that have a
subscription and push on: one query and one queue insert per batch, none when nobody has a
subscription. The worker that runs it asks every process which of those users has an open
socket (``realtime.census``, over the channel layer: every socket of the user, on any process,
answers); a user with one already got the notification live and is not pushed. The others are
pushed unless they are in quiet hours or muted the notification's room (``data.room``). A push
service answering 404 or 410 has dropped the subscription: it is deleted. Any other failure is
retried through the queue (:func:`retry`).

Without ``REDIS_URL`` the worker shares no channel layer with the server, sees no socket and
pushes every notification to subscribed users (development only: one process).
"""

import asyncio
import base64
import binascii
import functools
import ipaddress
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from py_vapid import Vapid
from pywebpush import WebPushException, webpush
from requests import RequestException

from config.tasks import background_task
from realtime.census import asocket_census

from . import preferences
from .models import Notification, Preferences, PushSubscription

logger = logging.getLogger(__name__)

P256DH_BYTES = 65  # an uncompressed P-256 point (RFC 8291 §3.1)
AUTH_BYTES = 16  # the authentication secret (RFC 8291 §3.2)
TTL = 86_400  # s a push service keeps an undelivered push (RFC 8030 §5.2)
SEND_TIMEOUT = 10  # s for one push service request
CENSUS_CONCURRENCY = 50  # users asked about at once
RETRY_FIRST = timedelta(seconds=5)  # before the first retry; retry() backs off from there
GONE = (404, 410)  # the push service dropped the subscription (RFC 8030 §6.2, §7.3)


class SubscriptionError(ValueError):
    """A subscription that cannot be stored: ``field`` names the bad part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PushFailed(Exception):
    """A push service refused or could not be reached; the push is retried."""


# VAPID -------------------------------------------------------------------------------------------


@functools.cache
def vapid() -> Vapid:
    """The deployment's VAPID key (``HERALD_VAPID_PRIVATE_KEY``: base64url of the raw 32-byte
    P-256 private key, base64 DER, or PEM)."""
    key = settings.HERALD["VAPID_PRIVATE_KEY"].strip()
    if key.startswith("-----BEGIN"):
        return Vapid.from_pem(key.encode())
    return Vapid.from_string(key)


def vapid_public_key() -> str:
    """The application server key a browser subscribes with (``applicationServerKey`` of the
    Push API): base64url, no padding, of the uncompressed public point (65 bytes)."""
    raw = vapid().public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Subscriptions -----------------------------------------------------------------------------------


def _b64url(field: str, value: str, length: int) -> None:
    try:
        if not value.isascii() or any(c in value for c in "+/ \n"):
            raise ValueError
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        raise SubscriptionError(field, f"{field} must be base64url") from None
    if len(raw) != length:
        raise SubscriptionError(field, f"{field} must encode {length} bytes, not {len(raw)}")
    if field == "keys.p256dh":
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise SubscriptionError(field, "keys.p256dh must be a P-256 public key") from None


def check_endpoint(endpoint: str) -> None:
    """Raise :class:`SubscriptionError` unless ``endpoint`` is an ``https`` URL with a host, or
    plain ``http`` to a loopback address where ``HERALD["PUSH_ALLOW_LOOPBACK"]`` allows it
    (``HERALD_WEBHOOK_ALLOW_PRIVATE=1``, DEBUG, tests: a local push service)."""
    # A URI is ASCII (RFC 3986 §2); anything else (a lone surrogate, a control character)
    # could not even be stored.
    if not endpoint.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in endpoint):
        raise SubscriptionError("endpoint", "endpoint must be an https URL")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise SubscriptionError("endpoint", "endpoint must be an https URL") from None
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and settings.HERALD["PUSH_ALLOW_LOOPBACK"]:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return
    raise SubscriptionError("endpoint", "endpoint must be an https URL")


def subscription_save(
    *, user_id: int, endpoint: str, p256dh: str, auth: str, user_agent: str = ""
) -> tuple[PushSubscription, bool]:
    """Store a browser's subscription for ``user_id``; ``(subscription, created)``.

    Raises :class:`SubscriptionError` for an endpoint :func:`check_endpoint` refuses, or keys
    that are not base64url of the right lengths (``p256dh``: a 65-byte P-256 point, ``auth``:
    16 bytes; RFC 8291 §3). An endpoint already stored (the same browser again, maybe signed in
    as someone else now) moves to ``user_id`` with the new keys.
    """
    check_endpoint(endpoint)
    _b64url("keys.p256dh", p256dh, P256DH_BYTES)
    _b64url("keys.auth", auth, AUTH_BYTES)
    return PushSubscription.objects.update_or_create(
        endpoint=endpoint,
        defaults={
            "user_id": user_id,
            "p256dh": p256dh,
            "auth": auth,
            "user_agent": user_agent[:512],
        },
    )


def subscription_delete(*, user_id: int, endpoint: str) -> bool:
    """Delete the user's subscription with this endpoint; whether there was one."""
    if not endpoint.isascii():  # never stored (check_endpoint), and unsafe to query with
        return False
    deleted, _ = PushSubscription.objects.filter(user_id=user_id, endpoint=endpoint).delete()
    return bool(deleted)


# Sending -----------------------------------------------------------------------------------------


def schedule_for(rows: list[Notification]) -> None:
    """After the current transaction commits, enqueue one :func:`deliver` for those of
    ``rows`` whose recipient has a push subscription and push on. Must be called inside the
    transaction that stores ``rows``; costs nothing before commit, one query (and one queue
    insert when someone may get a push) after."""
    pairs = [(n.pk, n.recipient_id) for n in rows]

    def enqueue_push() -> None:  # robust: a failure is logged; the notification stands
        _enqueue(pairs)

    if pairs:
        transaction.on_commit(enqueue_push, robust=True)


def _enqueue(pairs: list[tuple[int, int]]) -> None:
    users = {user for _, user in pairs}
    wanting = set(
        PushSubscription.objects.filter(user_id__in=users)
        .exclude(user__notification_preferences__push=False)
        .values_list("user_id", flat=True)
        .distinct()
    )
    ids = [pk for pk, user in pairs if user in wanting]
    if ids:
        deliver.enqueue(ids)


async def _online(user_ids: list[int]) -> set[int]:
    """Which of ``user_ids`` have an open socket on any process (one census each, at most
    ``CENSUS_CONCURRENCY`` at once)."""
    limit = asyncio.Semaphore(CENSUS_CONCURRENCY)

    async def one(user_id: int) -> int | None:
        async with limit:
            return user_id if await asocket_census(user_id=user_id) else None

    found = await asyncio.gather(*(one(pk) for pk in user_ids))
    return {pk for pk in found if pk is not None}


def payload(notification: Notification) -> dict[str, Any]:
    """What the service worker shows: ``{title, body, url, id, tag}``. ``url`` is the
    notification's ``data.url`` when it is an ``http(s)`` URL or a path, else the web UI
    (``/``)."""
    url = notification.data.get("url") if isinstance(notification.data, dict) else None
    if not isinstance(url, str) or not (
        url.startswith(("https://", "http://")) or (url.startswith("/") and "//" not in url[:2])
    ):
        url = "/"
    return {
        "title": notification.title,
        "body": notification.body[:1000],
        "url": url,
        "id": notification.pk,
        "tag": f"herald-{notification.pk}",
    }


def _room_of(notification: Notification) -> int | None:
    room = notification.data.get("room") if isinstance(notification.data, dict) else None
    return room if isinstance(room, int) and not isinstance(room, bool) else None


@dataclass(frozen=True)
class Delivery:
    """What one :func:`deliver` did: pushes sent, subscriptions deleted, sends retried later,
    users skipped because a socket of theirs is open."""

    sent: int = 0
    deleted: int = 0
    retried: int = 0
    online: int = 0


def send(subscription: PushSubscription, notification: Notification) -> bool:
    """Push ``notification`` to ``subscription`` now; ``False`` when the push service answered
    404/410 and the subscription was deleted. Raises :class:`PushFailed` for any other refusal
    or a network error."""
    info = {
        "endpoint": subscription.endpoint,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    try:
        webpush(
            info,
            json.dumps(payload(notification)),
            vapid_private_key=vapid(),
            vapid_claims={"sub": settings.HERALD["VAPID_SUBJECT"]},
            ttl=TTL,
            timeout=SEND_TIMEOUT,
            headers={"Urgency": "normal"},
        )
    except WebPushException as error:
        status = error.response.status_code if error.response is not None else None
        if status in GONE:
            subscription.delete()
            logger.info("push subscription %s gone (%s): deleted", subscription.pk, status)
            return False
        raise PushFailed(f"push service answered {status}") from error
    except RequestException as error:
        raise PushFailed(f"push service unreachable: {error!r}") from error
    return True


def push_notifications(notification_ids: list[int]) -> Delivery:
    """Push each of the notifications to its recipient's subscriptions, unless it was read
    meanwhile or the recipient has an open socket now, push off, quiet hours now, or muted the
    notification's room (``data.room``). A send that fails for another reason than 404/410 is retried through the
    queue (:func:`retry`, first after ``RETRY_FIRST``)."""
    # Read meanwhile (on another device, or by the API): nothing to tell.
    notifications = list(Notification.objects.filter(pk__in=notification_ids, read_at__isnull=True))
    users = sorted({n.recipient_id for n in notifications})
    prefs = {
        p.user_id: p
        for p in Preferences.objects.filter(user_id__in=users).prefetch_related("muted_rooms")
    }
    subscriptions: dict[int, list[PushSubscription]] = {}
    for sub in PushSubscription.objects.filter(user_id__in=users):
        subscriptions.setdefault(sub.user_id, []).append(sub)
    now = timezone.now()
    due = [
        n
        for n in notifications
        if subscriptions.get(n.recipient_id)
        and preferences.push_wanted(prefs.get(n.recipient_id), room_id=_room_of(n), now=now)
    ]
    online = async_to_sync(_online)(sorted({n.recipient_id for n in due})) if due else set()
    sent = deleted = retried = 0
    for notification in due:
        if notification.recipient_id in online:
            continue
        for sub in subscriptions[notification.recipient_id]:
            try:
                if send(sub, notification):
                    sent += 1
                else:
                    deleted += 1
            except PushFailed as error:
                logger.warning(
                    "push %s to subscription %s failed: %s", notification.pk, sub.pk, error
                )
                retry.using(run_after=now + RETRY_FIRST).enqueue(sub.pk, notification.pk)
                retried += 1
    result = Delivery(sent, deleted, retried, len(online))
    logger.info("push delivery: %s", result)
    return result


@background_task(max_attempts=1)
def deliver(notification_ids: list[int]) -> dict[str, int]:
    """The queue's task of :func:`push_notifications`; its counts are stored on the task's row.
    Not retried as a whole: each failed send is retried on its own."""
    return push_notifications(notification_ids).__dict__


@background_task(max_attempts=6, backoff=10, max_backoff=600)
def retry(subscription_id: int, notification_id: int) -> bool:
    """Push one notification to one subscription again (after :func:`deliver`'s attempt
    failed); the queue retries it with a growing delay while it raises :class:`PushFailed`. A
    subscription or notification deleted meanwhile is skipped. Whether a push was sent."""
    sub = PushSubscription.objects.filter(pk=subscription_id).first()
    notification = Notification.objects.filter(pk=notification_id).first()
    if sub is None or notification is None:
        return False
    return send(sub, notification)
