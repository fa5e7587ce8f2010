"""Web routes of notifications (outside ``/api/``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("email/unsubscribe/<str:token>/", views.unsubscribe, name="digest-unsubscribe"),
]
