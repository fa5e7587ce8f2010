"""HTTP routes of the tutorial baseline."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from . import views


def ready(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("readyz", ready),
    path("notify-each/", views.notify_each),
    path("broadcast/", views.broadcast),
]
