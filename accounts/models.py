"""The user model and the login session that every JWT and web login belongs to (CONTRACT §5)."""

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A Herald user: Django's ``AbstractUser`` (CONTRACT §1.1), swappable from day one.

    Saving a user who was active as inactive revokes all their login sessions (sockets close
    with 4403); saving a new password revokes all but the request's own (4401). Both happen in
    ``save`` so that every path, the admin form and a plain ``save()`` included, obeys CONTRACT
    §5; ``QuerySet.update`` bypasses it, as it bypasses every ``save``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._was_active = self.is_active

    def save(self, *args: Any, **kwargs: Any) -> None:
        existing = not self._state.adding
        password_changed = existing and self._password is not None
        deactivated = existing and self._was_active and not self.is_active
        super().save(*args, **kwargs)
        self._was_active = self.is_active
        if deactivated or password_changed:
            from . import services  # services import this module

            services.user_changed_credentials(
                user=self, deactivated=deactivated, password_changed=password_changed
            )

    @property
    def display_name(self) -> str:
        """The full name when set, else the username."""
        return self.get_full_name() or self.username


class LoginSession(models.Model):
    """One login, by the web form or ``POST /api/auth/token/`` (CONTRACT §5).

    Its ``id`` is the JWT claim ``sid`` and names the channel-layer group ``session.<id>`` that
    every socket opened under it joins. ``revoked_at`` set means: refresh and access tokens of
    this session fail, and its sockets are closed.
    """

    class Kind(models.TextChoices):
        WEB = "web", "web"
        API = "api", "api"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="login_sessions"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    user_agent = models.CharField(max_length=400, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=32, blank=True, default="")
    # jti of the one refresh token that may still be used; an older one is a reuse (issue 4).
    refresh_jti = models.CharField(max_length=64, blank=True, default="")
    # When the current refresh token expires; a session past it is dead (herald_prune).
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    # The Django session of a web login, deleted when the login session is revoked.
    django_session_key = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.kind} session {self.id} of {self.user_id}"

    @property
    def is_active(self) -> bool:
        """True while the session is not revoked."""
        return self.revoked_at is None
