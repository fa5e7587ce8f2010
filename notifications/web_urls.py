"""Web routes of notifications (outside ``/api/``)."""

from django.urls import path

from . import settings_views, views

urlpatterns = [
    path("email/unsubscribe/<str:token>/", views.unsubscribe, name="digest-unsubscribe"),
    path("settings/", settings_views.settings_page, name="notification-settings"),
    path("push-sw.js", settings_views.service_worker, name="push-service-worker"),
]
