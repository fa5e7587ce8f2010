"""Outbound webhooks: service accounts' endpoints, events, signed deliveries through the queue
(docs/protocol.md, "Webhooks"; docs/security.md, "Webhooks").

- :func:`emit_event` is the one way the apps raise an event (``message.created``,
  ``member.joined``, ...). With no enabled endpoint anywhere it costs no query: a flag in the
  cache says so, and each process remembers the flag for ``FLAG_TTL`` s. Otherwise it selects
  the endpoints subscribed to the event whose owner may see it, and once the caller's
  transaction commits, stores one :class:`WebhookDelivery` per endpoint and enqueues
  :func:`deliver` for it. Nothing waits for a receiver on the request path.
- :func:`deliver` (a task of ``config.tasks``) POSTs ``{type, timestamp, data}`` signed per
  Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; the
  ``standardwebhooks`` library signs), with a timeout, no redirects, and to an address checked
  again at delivery time (a DNS answer can change after registration: DNS rebinding); the
  connection goes to the very address checked. A non-2xx answer or an error is a failed attempt:
  retried with exponential backoff by the queue, up to ``HERALD_WEBHOOK_ATTEMPTS``; after
  ``HERALD_WEBHOOK_DISABLE_AFTER`` failed attempts in a row the endpoint is disabled and its
  owner gets a notification.
- :func:`check_url` refuses URLs that are not http(s) or whose host resolves to a loopback,
  private, link-local, multicast, reserved or otherwise non-global address (SSRF), unless
  ``HERALD_WEBHOOK_ALLOW_PRIVATE=1``.
"""

import base64
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from config.tasks import PermanentFailure, background_task, enqueue

from .models import WebhookDelivery, WebhookEndpoint

logger = logging.getLogger("herald.webhooks")

EVENT_TYPES = (
    "message.created",
    "message.updated",
    "message.deleted",
    "member.joined",
    "member.left",
    "notification.read",
)
_FLAG_KEY = "herald:webhooks:any-endpoint"
FLAG_TTL = 1.0  # s a process trusts its copy of the flag; a new endpoint waits at most this
_SHARED_FLAG_TTL = 3600  # s; every change of endpoints deletes it anyway
_local_flag: tuple[bool, float] | None = None  # (value, monotonic expiry)

Data = dict[str, Any] | Callable[[], dict[str, Any]]

# Sent (sender: WebhookEndpoint, endpoint=, failures=, error=) when an endpoint is disabled for
# failing; ``notifications.services`` notifies its owner.
endpoint_disabled = Signal()


class InvalidWebhookURL(ValueError):
    """A URL refused for webhooks; ``str()`` says why. Code ``invalid_url``."""

    code = "invalid_url"


def _settings() -> dict[str, Any]:
    return settings.HERALD  # type: ignore[no-any-return]


# Endpoints ---------------------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret in Standard Webhooks' format: ``whsec_`` + base64 of 32 random bytes
    (the library reads this format and ships no generator; we check it reads ours)."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    Webhook(secret)  # the library accepts it, or this raises
    return secret


def check_url(url: str) -> list[str]:
    """The addresses ``url``'s host resolves to, once each is allowed; else
    :class:`InvalidWebhookURL`.

    Only ``http``/``https`` with a host. Every address must be global (``ipaddress``'s
    ``is_global``, not multicast): loopback, private (RFC 1918, fc00::/7), link-local,
    shared (100.64/10), reserved, unspecified and multicast are refused, including
    IPv4-mapped IPv6 forms, unless ``HERALD_WEBHOOK_ALLOW_PRIVATE`` is set.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookURL("Webhook URLs are http:// or https:// URLs with a host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError) as error:
        raise InvalidWebhookURL(f"Cannot resolve the host {parts.hostname!r}.") from error
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not _settings()["WEBHOOK_ALLOW_PRIVATE"]:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            mapped = getattr(ip, "ipv4_mapped", None)
            ip = mapped or ip
            if not ip.is_global or ip.is_multicast:
                raise InvalidWebhookURL(
                    f"The host {parts.hostname!r} resolves to {address}, a non-public address."
                )
    if not addresses:
        raise InvalidWebhookURL(f"Cannot resolve the host {parts.hostname!r}.")
    return addresses


def _flag_changed() -> None:
    """Forget the "any endpoint?" flag, here and in the shared cache."""
    global _local_flag
    _local_flag = None
    try:
        cache.delete(_FLAG_KEY)
    except Exception:  # cache down: the flag's TTL bounds how stale it can be
        logger.warning("could not reset the webhook flag in the cache")


def endpoint_create(*, owner_id: int, url: str, events: Iterable[str]) -> WebhookEndpoint:
    """Register an endpoint of the service account ``owner_id`` for ``events``; its
    ``secret`` is generated here (return it to the caller once). Raises
    :class:`InvalidWebhookURL`; ``events`` must be known types (the serializer checks)."""
    check_url(url)
    endpoint = WebhookEndpoint.objects.create(
        owner_id=owner_id, url=url, events=sorted(set(events)), secret=new_secret()
    )
    transaction.on_commit(_flag_changed)
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint and its deliveries; queued deliveries then do nothing."""
    endpoint.delete()
    transaction.on_commit(_flag_changed)


def endpoints_changed() -> None:
    """Tell :func:`emit_event` that endpoints changed outside these services (the admin)."""
    transaction.on_commit(_flag_changed)


def _any_endpoint() -> bool:
    global _local_flag
    now = time.monotonic()
    if _local_flag is not None and _local_flag[1] > now:
        return _local_flag[0]
    try:
        value = cache.get(_FLAG_KEY)
    except Exception:
        value = None
    if value is None:
        value = WebhookEndpoint.objects.filter(enabled=True).exists()
        try:
            cache.set(_FLAG_KEY, value, _SHARED_FLAG_TTL)
        except Exception:
            logger.warning("could not store the webhook flag in the cache")
    _local_flag = (bool(value), now + FLAG_TTL)
    return bool(value)


# Events ------------------------------------------------------------------------------------------


def wanted(event_type: str) -> bool:
    """Whether any endpoint might want events now: ``False`` costs no query (see
    :func:`emit_event`). For callers that must query to build an event's audience."""
    return event_type in EVENT_TYPES and _any_endpoint()


def emit_event(
    event_type: str,
    data: Data,
    *,
    room_member_ids: Callable[[set[int]], Iterable[int]] | None = None,
    owner_ids: Iterable[int] | None = None,
) -> int:
    """Raise ``event_type`` (one of :data:`EVENT_TYPES`) with ``data`` (a JSON object, or a
    function returning it, called only when an endpoint wants the event); the number of
    deliveries it will make.

    Who receives it: enabled endpoints subscribed to ``event_type`` whose owner is among
    ``room_member_ids(owner ids)`` (room events: the caller answers which of those service
    accounts belong to the room) and among ``owner_ids`` when given. Neither given: nobody.
    The audience is decided now (inside the caller's transaction); the deliveries are stored
    and enqueued once it commits, and not at all if it rolls back. No enabled endpoint: no
    query.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown webhook event type {event_type!r}.")
    if (room_member_ids is None and owner_ids is None) or not _any_endpoint():
        return 0
    endpoints = WebhookEndpoint.objects.filter(enabled=True)
    if owner_ids is not None:
        endpoints = endpoints.filter(owner_id__in=list(owner_ids))
    candidates = [
        (e.pk, e.owner_id)
        for e in endpoints.only("id", "owner_id", "events")
        if event_type in e.events
    ]
    if candidates and room_member_ids is not None:
        members = set(room_member_ids({owner for _, owner in candidates}))
        candidates = [(pk, owner) for pk, owner in candidates if owner in members]
    if not candidates:
        return 0
    body = {
        "type": event_type,
        "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "data": data() if callable(data) else data,
    }
    endpoint_ids = [pk for pk, _ in candidates]
    transaction.on_commit(lambda: _store_and_enqueue(endpoint_ids, event_type, body))
    return len(endpoint_ids)


def _store_and_enqueue(endpoint_ids: list[int], event_type: str, body: dict[str, Any]) -> None:
    with transaction.atomic():
        rows = WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    endpoint_id=pk,
                    event_id=f"msg_{uuid.uuid4().hex}",
                    event_type=event_type,
                    payload=body,
                )
                for pk in endpoint_ids
            ]
        )
        ids = [row.pk for row in rows]
        if any(pk is None for pk in ids):  # a database without RETURNING on bulk inserts
            ids = list(
                WebhookDelivery.objects.filter(event_id__in=[r.event_id for r in rows]).values_list(
                    "pk", flat=True
                )
            )
        for pk in ids:
            enqueue(deliver, pk)


# Delivery ----------------------------------------------------------------------------------------


def sign(secret: str, *, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` (the exact bytes sent, as text): ``webhook-id``,
    ``webhook-timestamp`` (Unix seconds), ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body),
    }


def _pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``url`` with its host replaced by the checked ``address``, the ``Host`` header and the
    TLS server name (SNI, and the certificate's expected name) of the original host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    ip = f"[{address}]" if ":" in address else address
    netloc = ip + (f":{parts.port}" if parts.port else "")
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, {"Host": host_header}, extensions


def _attempt(delivery: WebhookDelivery) -> tuple[int | None, str]:
    """POST the delivery once; ``(status code or None, error text or "")``."""
    endpoint = delivery.endpoint
    try:
        address = check_url(endpoint.url)[0]
    except InvalidWebhookURL as error:
        return None, str(error)
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Herald-Webhooks/1",
        **sign(endpoint.secret, msg_id=delivery.event_id, timestamp=datetime.now(UTC), body=body),
    }
    url, host, extensions = _pinned_request(endpoint.url, address)
    try:
        with httpx.Client(timeout=_settings()["WEBHOOK_TIMEOUT"], follow_redirects=False) as http:
            answer = http.post(
                url, content=body.encode(), headers={**headers, **host}, extensions=extensions
            )
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:500]
    if 200 <= answer.status_code < 300:
        return answer.status_code, ""
    return answer.status_code, f"HTTP {answer.status_code}"


class DeliveryFailed(Exception):
    """A failed attempt; the queue retries it."""


def _record_failure(delivery: WebhookDelivery) -> bool:
    """Count a failed attempt on the endpoint; disable it (and notify its owner) when it reaches
    the limit. Whether the endpoint is now disabled."""
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
        failure_count=F("failure_count") + 1
    )
    limit = _settings()["WEBHOOK_DISABLE_AFTER"]
    disabled = WebhookEndpoint.objects.filter(
        pk=delivery.endpoint_id, enabled=True, failure_count__gte=limit
    ).update(enabled=False, disabled_at=timezone.now())
    if disabled:
        endpoint = delivery.endpoint
        logger.warning(
            "webhook endpoint %s disabled after %d failed attempts in a row", endpoint.pk, limit
        )
        endpoint_disabled.send(
            WebhookEndpoint, endpoint=endpoint, failures=limit, error=delivery.error
        )
        _flag_changed()
    return (
        bool(disabled)
        or not WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, enabled=True).exists()
    )


@background_task(
    max_attempts=int(settings.HERALD["WEBHOOK_ATTEMPTS"]),
    backoff=float(settings.HERALD["WEBHOOK_BACKOFF"]),
    max_backoff=3600.0,
)
def deliver(delivery_id: int) -> str:
    """Attempt one delivery (a task; retried with backoff by ``config.tasks``); returns its
    status. A deleted delivery or a disabled endpoint ends it without a retry."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return "gone" if delivery is None else delivery.status
    if not delivery.endpoint.enabled:
        delivery.status, delivery.error = WebhookDelivery.Status.FAILED, "endpoint disabled"
        delivery.save(update_fields=["status", "error"])
        return delivery.status
    started = time.monotonic()
    status_code, error = _attempt(delivery)
    delivery.attempts += 1
    delivery.status_code = status_code
    delivery.latency_ms = int((time.monotonic() - started) * 1000)
    delivery.error = error
    delivery.last_attempt_at = timezone.now()
    logger.info(
        "webhook delivery %s (%s) to endpoint %s, attempt %d: %s in %d ms",
        delivery.pk,
        delivery.event_type,
        delivery.endpoint_id,
        delivery.attempts,
        error or status_code,
        delivery.latency_ms,
    )
    fields = ["attempts", "status_code", "latency_ms", "error", "last_attempt_at", "status"]
    if not error:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = delivery.last_attempt_at
        delivery.save(update_fields=[*fields, "delivered_at"])
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(failure_count=0)
        return delivery.status
    last = delivery.attempts >= int(_settings()["WEBHOOK_ATTEMPTS"])
    delivery.save(update_fields=fields)
    if _record_failure(delivery) or last:
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.save(update_fields=["status"])
        raise PermanentFailure(error)
    raise DeliveryFailed(error)
