"""App configuration for chat."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Rooms, members, messages, presence and typing, and the web UI's script."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"
