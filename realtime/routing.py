"""WebSocket URL routes: the one socket at ``/ws/`` (docs/protocol.md)."""

from django.urls import path

from .consumer import Socket

websocket_urlpatterns = [path("ws/", Socket.as_asgi())]
