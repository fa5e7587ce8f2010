"""Chat rooms, their members and their messages (docs/protocol.md)."""

from django.conf import settings
from django.db import models

MESSAGE_MAX_LENGTH = 4000  # characters, after trimming (``message.send``, docs/protocol.md)


class Room(models.Model):
    """A chat room: a named ``group`` room, or the one ``direct`` room of a pair of users.

    ``direct_key`` is ``"<lower user id>:<higher user id>"`` for a direct room and NULL for a
    group room; its unique constraint is what makes "one direct room per pair" hold under
    concurrent creation (docs/protocol.md, chat "HTTP API").
    """

    class Kind(models.TextChoices):
        GROUP = "group", "group"
        DIRECT = "direct", "direct"

    name = models.CharField(max_length=100, blank=True, default="")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.GROUP)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="created_rooms",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # NULL, not "", for group rooms: the conditional unique constraint skips them.
    direct_key = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="rooms"
    )

    class Meta:
        # The table predates the chat app (it was notifications'); keeping its name made the move
        # a state-only migration.
        db_table = "notifications_room"
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["direct_key"],
                condition=models.Q(direct_key__isnull=False),
                name="room_direct_pair_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name or f"{self.kind} room {self.pk}"


class Membership(models.Model):
    """A user's place in a room: role, and how far they have read (``room.read``)."""

    class Role(models.TextChoices):
        OWNER = "owner", "owner"
        MEMBER = "member", "member"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    # The newest message the member has read; only moves forward. SET_NULL: a deleted message
    # (admin) must not delete the membership.
    last_read_message = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        # The table predates the chat app (it was notifications'); keeping its name made the move
        # a state-only migration.
        db_table = "notifications_membership"
        ordering = ["room", "joined_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_room_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id} ({self.role})"


class Message(models.Model):
    """A chat message, stored before it is pushed (docs/reliability.md); its ``id`` is the
    cursor.

    ``client_id`` is the sender's uuid for the message, unique per author, so a retried
    ``message.send`` stores nothing twice. Within a room, ids are allocated and committed in
    increasing order (``room_message_send`` locks the room row), so "every message with
    id > since" has no hole that a later commit could fill.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    body = models.TextField(max_length=MESSAGE_MAX_LENGTH)
    client_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The table predates the chat app (it was notifications'); keeping its name made the move
        # a state-only migration.
        db_table = "notifications_message"
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["author", "client_id"], name="message_author_client_id_unique"
            )
        ]
        indexes = [models.Index(fields=["room", "id"], name="message_room_id_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} in {self.room_id} by {self.author_id}"
