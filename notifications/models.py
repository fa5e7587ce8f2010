"""Stored notifications and the per-user counter that numbers them (docs/protocol.md,
"Notifications"; every notification is stored before it is pushed: docs/reliability.md)."""

from django.conf import settings
from django.db import models


class Notification(models.Model):
    """A notification to one user, stored before it is pushed (docs/reliability.md).

    ``seq`` numbers a user's notifications 1, 2, 3... without gaps; ``resume`` and the
    ``after_seq`` filter use it as the cursor. ``idempotency_key`` is unique per sender and
    recipient, so a retried ``POST /api/notifications/`` stores nothing twice.
    """

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    seq = models.PositiveBigIntegerField()
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sent_notifications",
    )
    # NULL, not "", means "no key": the conditional unique constraint skips it.
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["-seq"]
        permissions = [("send_notification", "Can send notifications to users")]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "seq"], name="notification_seq_unique"),
            models.UniqueConstraint(
                fields=["sender", "idempotency_key", "recipient"],
                condition=models.Q(idempotency_key__isnull=False),
                name="notification_idempotency_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["recipient", "seq"],
                condition=models.Q(read_at__isnull=True),
                name="notification_unread_idx",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.seq} to {self.recipient_id}: {self.title}"


class NotificationCounter(models.Model):
    """The last ``seq`` given to a user's notifications; its row lock serializes allocation."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last_seq}"


class DigestState(models.Model):
    """Where a user's email digests stand (``notifications.digests``): when the last went
    out, and the highest notification ``seq`` it covered, so no notification is emailed twice.
    Its row lock serializes the workers that might send the same user's digest."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last_sent_at}"


class DigestChoice(models.TextChoices):
    """How often a user's unread notifications are emailed (docs/protocol.md, "Preferences")."""

    OFF = "off", "Off"
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"


class Preferences(models.Model):
    """How a user wants to be notified outside an open socket (docs/protocol.md,
    "Preferences"). A user without a row has the defaults: push on, daily digests, no quiet
    hours, no muted rooms.

    Quiet hours are ``quiet_start``..``quiet_end`` wall-clock time in ``quiet_timezone`` (an
    IANA name); the end is exclusive and may be before the start (over midnight). All three are
    set or all are empty.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="notification_preferences",
    )
    push = models.BooleanField(default=True)
    email_digest = models.CharField(
        max_length=8, choices=DigestChoice.choices, default=DigestChoice.DAILY
    )
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    quiet_timezone = models.CharField(max_length=64, blank=True, default="")
    # A string reference: the chat app sits above notifications and is never imported here.
    muted_rooms = models.ManyToManyField("chat.Room", blank=True, related_name="+")

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"preferences of {self.user_id}"


class PushSubscription(models.Model):
    """One browser's Web Push subscription (the W3C Push API's ``PushSubscription``): the push
    service's ``endpoint`` and the keys that encrypt for it (RFC 8291: ``p256dh`` is the
    browser's P-256 public key, 65 bytes uncompressed; ``auth`` its 16-byte secret; both
    base64url). An endpoint belongs to one browser, so it is unique: the last user to
    subscribe it owns it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions"
    )
    endpoint = models.URLField(max_length=2048, unique=True)
    p256dh = models.CharField(max_length=128)
    auth = models.CharField(max_length=64)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"push subscription {self.pk} of {self.user_id}"


class WebhookEndpoint(models.Model):
    """Where a service account wants events POSTed (docs/protocol.md, "Webhooks").

    ``secret`` (``whsec_`` + base64 of 32 random bytes, Standard Webhooks) signs every delivery;
    it is stored as is, because signing needs it, and shown to the service once.
    ``failure_count`` counts failed attempts in a row; at ``HERALD_WEBHOOK_DISABLE_AFTER`` the
    endpoint is disabled and its owner notified.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    failure_count = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["enabled", "owner"])]

    def __str__(self) -> str:
        return f"{self.url} ({self.owner_id})"


class WebhookDelivery(models.Model):
    """One event for one endpoint, and how its delivery went: ``attempts`` so far, the last
    attempt's ``status_code``, ``latency_ms`` and ``error``. ``event_id`` is the
    ``webhook-id`` header: the same on every retry, so a receiver can drop duplicates."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"  # every attempt failed, or the endpoint was disabled

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["endpoint", "-id"])]

    def __str__(self) -> str:
        return f"{self.event_type} → endpoint {self.endpoint_id} ({self.status})"
