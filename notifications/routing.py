"""WebSocket URL routes of the notifications app (CONTRACT §3: ``/ws/``)."""

from django.urls import path

from .consumers import HeraldConsumer

websocket_urlpatterns = [path("ws/", HeraldConsumer.as_asgi())]
