"""Django admin for users (login sessions and open sockets inline), login sessions and service
keys."""

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from realtime.census import asocket_census

from . import services
from .models import MANAGE_SESSIONS, LoginSession, ServiceKey, User


def _census(user: User) -> dict[str, int]:
    """``{login session id: open sockets}`` of ``user`` on every process, asked once per page
    (cached on the instance the admin loaded for this request)."""
    if not hasattr(user, "_herald_census"):
        user._herald_census = async_to_sync(asocket_census)(user_id=user.pk)  # type: ignore[attr-defined]
    return user._herald_census  # type: ignore[attr-defined,no-any-return]


class LoginSessionInline(admin.TabularInline):
    """A user's login sessions, read only, with each one's open sockets right now."""

    model = LoginSession
    extra = 0
    can_delete = False
    fields = [
        "id",
        "kind",
        "user_agent",
        "ip",
        "created_at",
        "last_seen_at",
        "revoked_at",
        "open_sockets",
    ]
    readonly_fields = fields
    census: dict[str, int] = {}  # set per request by UserAdmin.get_inline_instances

    @admin.display(description="open sockets")
    def open_sockets(self, session: LoginSession) -> int:
        return self.census.get(str(session.pk), 0)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Django's user admin with the user's login sessions and open sockets (a census over the
    channel layer: every socket of the user, on any process, answers) inline, and an action
    to send the selected users a notification."""

    inlines = [LoginSessionInline]
    fieldsets = [
        *BaseUserAdmin.fieldsets,  # type: ignore[misc]
        ("Service account", {"fields": ["is_service"]}),
        ("Live", {"fields": ["open_sockets"]}),
    ]
    list_filter = [*BaseUserAdmin.list_filter, "is_service"]
    readonly_fields = ["open_sockets"]
    actions = ["send_notification"]

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        inlines = super().get_inline_instances(request, obj)
        if obj is not None:
            for inline in inlines:
                if isinstance(inline, LoginSessionInline):
                    inline.census = _census(obj)
        return inlines

    @admin.display(description="open sockets (all processes)")
    def open_sockets(self, user: User) -> int:
        return sum(_census(user).values()) if user.pk else 0

    @admin.action(description="Send a notification to the selected users")
    def send_notification(
        self, request: HttpRequest, queryset: QuerySet[User]
    ) -> HttpResponseRedirect:
        """Opens the notifications app's "Send notification" form with these users filled in
        (by its URL name: accounts does not import notifications)."""
        ids = ",".join(str(pk) for pk in sorted(queryset.values_list("pk", flat=True)))
        return HttpResponseRedirect(
            f"{reverse('admin:notifications_notification_send')}?users={ids}"
        )


@admin.register(LoginSession)
class LoginSessionAdmin(admin.ModelAdmin):
    """Login sessions, filterable by kind and state; revoking closes their sockets."""

    actions = ["revoke"]

    list_display = ["id", "user", "kind", "ip", "created_at", "last_seen_at", "revoked_at"]
    list_filter = ["kind", ("revoked_at", admin.EmptyFieldListFilter), "revoked_reason"]
    search_fields = ["user__username", "ip", "user_agent"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "id",
        "user",
        "kind",
        "user_agent",
        "ip",
        "created_at",
        "last_seen_at",
        "revoked_at",
        "revoked_reason",
        "refresh_jti",
        "django_session_key",
    ]

    @admin.action(
        description="Revoke selected login sessions (their sockets close)",
        permissions=["manage_sessions"],
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[LoginSession]) -> None:
        """Revoke each selected session through the same service as logout, so its sockets
        close as they do on logout (docs/security.md, "Login sessions"). Offered only to users
        with ``accounts.manage_sessions``."""
        sessions = list(queryset.filter(revoked_at__isnull=True))
        services.login_sessions_revoke(sessions=sessions, reason="admin")
        self.message_user(request, f"Revoked {len(sessions)} login session(s).")

    def has_manage_sessions_permission(self, request: HttpRequest) -> bool:
        """Whether ``request.user`` may revoke others' login sessions (the action above)."""
        return bool(request.user.has_perm(MANAGE_SESSIONS))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# Herald's keys are ServiceKeys; the library's own APIKey model is unused.
admin.site.unregister(APIKey)


@admin.register(ServiceKey)
class ServiceKeyAdmin(APIKeyModelAdmin):
    """Service keys (docs/security.md, "Service keys"): djangorestframework-api-key's admin, so
    a key added here is shown once in a message, and revoking is ticking "revoked" (final).
    The account must be a service account; scopes are a JSON list of scope names."""

    list_display = [
        "prefix",
        "name",
        "user",
        "scopes",
        "created",
        "last_used_at",
        "expiry_date",
        "_has_expired",
        "revoked",
    ]
    list_filter = ["revoked", "created"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), "last_used_at")

    @admin.action(description="Revoke selected service keys (final)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceKey]) -> None:
        count = queryset.filter(revoked=False).update(revoked=True)
        self.message_user(request, f"Revoked {count} service key(s).")
