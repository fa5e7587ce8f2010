"""App configuration for realtime, the WebSocket transport every feature uses."""

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The ``/ws/`` consumer, the frame registry, the publisher and the channel layer adapter.

    ``ready`` imports every installed app's ``ws_handlers`` module, as Django's admin imports
    ``admin`` modules (``django.utils.module_loading.autodiscover_modules``), so an app adds
    frames and events without realtime importing it. It also refuses a malformed
    ``HERALD_ALLOWED_ORIGINS`` (``handshake.check_allowed_origins``).
    """

    name = "realtime"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from .handshake import check_allowed_origins

        check_allowed_origins()  # a malformed entry stops the process, as a bad setting

        autodiscover_modules("ws_handlers")
