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
    # The room's latest change (docs/protocol.md, "Room feed"): bumped under the room's row lock
    # by every stored change, so a room's changes are numbered 1, 2, 3, ... without a gap.
    seq = models.BigIntegerField(default=0)

    class Meta:
        # The table predates the chat app (it was notifications'); keeping its name made the move
        # a state-only migration.
        db_table = "notifications_room"
        ordering = ["-pk"]
        permissions = [("moderate_room", "Can manage any room and moderate its messages")]
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
    history's cursor, its ``seq`` its place in the room's feed (the change that created it).

    ``client_id`` is the sender's uuid for the message, unique per author, so a retried
    ``message.send`` stores nothing twice. A deleted message stays as a tombstone: ``body`` ""
    and ``mentions`` [] (the text is gone from the database), ``deleted`` true. ``mentions`` is
    ``[{id, username}]`` of the members the body named when it was sent or last edited.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    body = models.TextField(max_length=MESSAGE_MAX_LENGTH)
    client_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)
    seq = models.BigIntegerField(null=True, blank=True)  # NULL only before the data migration
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted = models.BooleanField(default=False)
    reply_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    mentions = models.JSONField(default=list, blank=True)

    class Meta:
        # The table predates the chat app (it was notifications'); keeping its name made the move
        # a state-only migration.
        db_table = "notifications_message"
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["author", "client_id"], name="message_author_client_id_unique"
            ),
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
        ]
        indexes = [models.Index(fields=["room", "id"], name="message_room_id_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} in {self.room_id} by {self.author_id}"


class Reaction(models.Model):
    """One user's emoji on one message; a user gives each emoji at most once per message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions"
    )
    emoji = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="reaction_message_user_emoji_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class RoomChange(models.Model):
    """A change of a room other than a new message (those carry their ``seq`` themselves):
    an edit, a deletion, a reaction, a member joining or leaving, a rename. ``seq`` is the
    room's next change number, allocated with the room's row lock held (docs/protocol.md,
    "Room feed"); a replay merges these with the messages by ``seq``.

    ``data``: ``{emoji, action}`` for a reaction, ``{name}`` for a rename, else ``{}``.
    """

    class Kind(models.TextChoices):
        MESSAGE_UPDATED = "message.updated", "message updated"
        MESSAGE_DELETED = "message.deleted", "message deleted"
        REACTION = "reaction", "reaction"
        MEMBER_JOINED = "member.joined", "member joined"
        MEMBER_LEFT = "member.left", "member left"
        ROOM_RENAMED = "room.renamed", "room renamed"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="changes")
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="roomchange_room_seq_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.seq} in {self.room_id}"
