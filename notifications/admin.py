"""Django admin for notifications, and a form to send one."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from . import services, webhooks
from .models import (
    Notification,
    Preferences,
    PushSubscription,
    WebhookDelivery,
    WebhookEndpoint,
)
from .serializers import MAX_DATA_BYTES, MAX_RECIPIENTS

SEND_PERMISSION = "notifications.send_notification"


class SendNotificationForm(forms.Form):
    """Who gets it (users by id, a group, or everyone active) and what it says."""

    users = forms.CharField(
        required=False,
        help_text="User ids, separated by commas or spaces (the users action fills this in).",
    )
    group = forms.ModelChoiceField(Group.objects.order_by("name"), required=False)
    everyone = forms.BooleanField(required=False, help_text="Every active user.")
    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    data = forms.JSONField(
        required=False, initial=dict, help_text="A JSON object delivered with it (optional)."
    )

    def clean_users(self) -> list[int]:
        raw = self.cleaned_data["users"].replace(",", " ").split()
        try:
            return sorted({int(pk) for pk in raw})
        except ValueError as error:
            raise forms.ValidationError("Give user ids (numbers).", code="invalid") from error

    def clean_data(self) -> dict[str, Any]:
        value = self.cleaned_data["data"] or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("data must be a JSON object.", code="invalid")
        if len(json.dumps(value)) > MAX_DATA_BYTES:
            raise forms.ValidationError(f"data must encode to at most {MAX_DATA_BYTES} bytes.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        chosen = [
            bool(data.get("users")),
            data.get("group") is not None,
            bool(data.get("everyone")),
        ]
        if sum(chosen) != 1:
            raise forms.ValidationError("Choose exactly one of: users, a group, everyone.")
        return data

    def recipient_ids(self) -> list[int]:
        """Active users of the chosen audience, ascending."""
        users = get_user_model().objects.filter(is_active=True)
        if self.cleaned_data.get("users"):
            users = users.filter(pk__in=self.cleaned_data["users"])
        elif self.cleaned_data.get("group") is not None:
            users = users.filter(groups=self.cleaned_data["group"])
        return list(users.order_by("pk").values_list("pk", flat=True))


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Notifications, searchable by recipient and title; "Send notification" stores and pushes
    through ``services.notification_create``, the service behind ``POST /api/notifications/``.

    Adding one through the model form is off: it would bypass the per-user ``seq`` and the push.
    """

    list_display = ["id", "recipient", "seq", "title", "created_at", "read_at", "sender"]
    list_filter = [("read_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["title", "recipient__username", "sender__username", "idempotency_key"]
    raw_id_fields = ["recipient", "sender"]
    readonly_fields = ["seq", "created_at"]
    list_select_related = ["recipient", "sender"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        send = path(
            "send/",
            self.admin_site.admin_view(self.send_view),
            name="notifications_notification_send",
        )
        return [send, *super().get_urls()]

    def send_view(self, request: HttpRequest) -> HttpResponse:
        """The form: on a valid POST, one ``notification_create`` per 10 000 recipients."""
        if not request.user.has_perm(SEND_PERMISSION):
            raise PermissionDenied
        if request.method == "POST":
            form = SendNotificationForm(request.POST)
            if form.is_valid():
                ids = form.recipient_ids()
                if not ids:
                    form.add_error(None, "No active user matches.")
                else:
                    stored = 0
                    for start in range(0, len(ids), MAX_RECIPIENTS):
                        batch = services.notification_create(
                            recipient_ids=ids[start : start + MAX_RECIPIENTS],
                            title=form.cleaned_data["title"],
                            body=form.cleaned_data["body"],
                            data=form.cleaned_data["data"],
                            sender_id=request.user.pk,
                        )
                        stored += batch.count
                    self.message_user(request, f"Sent to {stored} user(s).", level=messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:notifications_notification_changelist")
                    )
        else:
            form = SendNotificationForm(initial={"users": request.GET.get("users", "")})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Send a notification",
            "form": form,
        }
        return TemplateResponse(request, "admin/notifications/notification/send.html", context)


class WebhookDeliveryInline(admin.TabularInline):
    """An endpoint's latest deliveries, read only."""

    model = WebhookDelivery
    extra = 0
    can_delete = False
    max_num = 0
    fields = [
        "event_type",
        "status",
        "attempts",
        "status_code",
        "latency_ms",
        "error",
        "created_at",
    ]
    readonly_fields = fields
    ordering = ["-id"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Services' webhook endpoints (docs/protocol.md, "Webhooks"); the secret never shows."""

    list_display = ["id", "url", "owner", "enabled", "failure_count", "disabled_at", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "owner__username"]
    list_select_related = ["owner"]
    exclude = ["secret"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    readonly_fields = ["owner", "failure_count", "disabled_at", "created_at"]
    inlines = [WebhookDeliveryInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # registered by services through the API, which shows the secret once

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if obj.enabled and "enabled" in form.changed_data:
            obj.failure_count, obj.disabled_at = 0, None  # re-enabled: a fresh start
        super().save_model(request, obj, form, change)
        webhooks.endpoints_changed()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        webhooks.endpoints_changed()

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        super().delete_queryset(request, queryset)
        webhooks.endpoints_changed()


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every delivery and how it went: attempts, last status code, latency, error."""

    list_display = [
        "id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "status_code",
        "latency_ms",
        "created_at",
        "last_attempt_at",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["event_id", "endpoint__url"]
    list_select_related = ["endpoint"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Preferences)
class PreferencesAdmin(admin.ModelAdmin):
    """Users' notification preferences (docs/protocol.md, "Preferences and Web Push")."""

    list_display = ["user", "push", "email_digest", "quiet_start", "quiet_end", "quiet_timezone"]
    list_filter = ["push", "email_digest"]
    search_fields = ["user__username"]
    raw_id_fields = ["user"]
    filter_horizontal = ["muted_rooms"]


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    """Browsers subscribed to Web Push; deleting one stops pushes to that browser."""

    list_display = ["user", "user_agent", "created_at"]
    search_fields = ["user__username", "endpoint"]
    readonly_fields = ["user", "endpoint", "p256dh", "auth", "user_agent", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # only a browser can subscribe itself
