"""``/api/`` routes of notifications (docs/protocol.md)."""

from django.urls import path

from . import api, api_preferences, api_webhooks

urlpatterns = [
    path("notifications/", api.NotificationListView.as_view(), name="notifications"),
    path(
        "notifications/read-all/",
        api.NotificationReadAllView.as_view(),
        name="notifications-read-all",
    ),
    path(
        "notifications/unread-count/",
        api.UnreadCountView.as_view(),
        name="notifications-unread-count",
    ),
    path(
        "notifications/<int:notification_id>/read/",
        api.NotificationReadView.as_view(),
        name="notification-read",
    ),
    path("me/preferences/", api_preferences.PreferencesView.as_view(), name="preferences"),
    path(
        "push/vapid-public-key/",
        api_preferences.VapidPublicKeyView.as_view(),
        name="push-vapid-public-key",
    ),
    path(
        "push/subscriptions/",
        api_preferences.PushSubscriptionsView.as_view(),
        name="push-subscriptions",
    ),
    path("webhooks/", api_webhooks.WebhookListView.as_view(), name="webhooks"),
    path("webhooks/<int:endpoint_id>/", api_webhooks.WebhookDetailView.as_view(), name="webhook"),
]
