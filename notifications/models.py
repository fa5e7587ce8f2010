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
