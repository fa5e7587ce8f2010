"""The user model and the login session that every JWT and web login belongs to
(docs/security.md, "Login sessions")."""

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey

# The permission to revoke other users' login sessions (``DELETE /api/auth/sessions/{id}/``, the
# admin's revoke action); the group "Moderators" holds it (migration 0002).
MANAGE_SESSIONS = "accounts.manage_sessions"
MODERATORS_GROUP = "Moderators"


class User(AbstractUser):
    """A Herald user: Django's ``AbstractUser``, swappable from day one.

    It remembers ``is_active`` and the password hash as loaded (or last saved), so that
    :meth:`credential_changes` can tell a receiver what a save changed: deactivating a user
    revokes all their login sessions, a new password all but the request's own
    (``accounts.receivers``, docs/security.md). ``QuerySet.update`` bypasses this, as it
    bypasses every ``save``.
    """

    # A service account (docs/security.md, "Service keys"): a program, not a person. It acts
    # through its ``ServiceKey``s; it has no usable password.
    # db_default: rows inserted without the column (older code, historical models in data
    # migrations) are people.
    is_service = models.BooleanField(
        default=False,
        db_default=False,
        help_text="A service account: authenticates with API keys (Authorization: Api-Key).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remember_credentials()

    def remember_credentials(self) -> None:
        """Take the current ``is_active`` and password hash as the saved ones."""
        # __dict__, not the attributes: a deferred field must not cost a query here.
        self._saved_active = self.__dict__.get("is_active")
        self._saved_password = self.__dict__.get("password")

    def credential_changes(self) -> tuple[bool, bool]:
        """``(deactivated, password_changed)`` since loaded or last remembered."""
        deactivated = bool(self._saved_active) and not self.is_active
        password_changed = (
            self._saved_password is not None
            and "password" in self.__dict__
            and self.password != self._saved_password
        )
        return deactivated, password_changed

    @property
    def display_name(self) -> str:
        """The full name when set, else the username."""
        return self.get_full_name() or self.username


class LoginSession(models.Model):
    """One login, by the web form or ``POST /api/auth/token/``
    (docs/security.md, "Login sessions").

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
    # jti of the one refresh token that may still be used; an older one is a reuse,
    # which revokes the session (refresh token rotation, RFC 9700 §4.14.2).
    refresh_jti = models.CharField(max_length=64, blank=True, default="")
    # When the current refresh token expires; a session past it is dead (herald_prune).
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    # The Django session of a web login, deleted when the login session is revoked.
    django_session_key = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "revoked_at"])]
        permissions = [("manage_sessions", "Can revoke other users' login sessions")]

    def __str__(self) -> str:
        return f"{self.kind} session {self.id} of {self.user_id}"

    @property
    def is_active(self) -> bool:
        """True while the session is not revoked."""
        return self.revoked_at is None


class Scope(models.TextChoices):
    """What a service key may do (docs/security.md, "Service keys")."""

    NOTIFICATIONS_SEND = "notifications:send", "send notifications"
    ROOMS_POST = "rooms:post", "post messages to the rooms its service user belongs to"
    WEBHOOKS_MANAGE = "webhooks:manage", "register and delete webhook endpoints"


def validate_scopes(value: Any) -> None:
    """Raise ``ValidationError`` unless ``value`` is a list of known scope names."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Scopes are a list of scope names.", code="invalid")
    unknown = sorted(set(value) - set(Scope.values))
    if unknown:
        raise ValidationError(
            f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(Scope.values)}.",
            code="unknown_scope",
        )


class ServiceKey(AbstractAPIKey):
    """An API key of a service account: ``Authorization: Api-Key <prefix>.<secret>``.

    djangorestframework-api-key stores only a hash of the key and its 8-character ``prefix``
    (shown in the admin and used to revoke it); the key itself is shown once, when created.
    ``scopes`` lists what the key may do (:class:`Scope`); ``last_used_at`` moves at most once
    a minute. A revoked key cannot be un-revoked (the library refuses).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="service_keys",
        limit_choices_to={"is_service": True},
    )
    scopes = models.JSONField(default=list, validators=[validate_scopes])
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "service key"
        verbose_name_plural = "service keys"
