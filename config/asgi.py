"""The ASGI entry point: ``daphne config.asgi:application`` (docs/deployment.md).

HTTP goes to Django; ``websocket`` goes through ``accounts.ws_auth.HeraldAuthMiddleware`` to the
one consumer, ``realtime.consumer.Socket`` (``realtime.routing``).
Production settings unless ``DJANGO_SETTINGS_MODULE`` says otherwise.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.ws_auth import HeraldAuthMiddleware  # noqa: E402
from realtime.publisher import ServingLoop  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ServingLoop(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": HeraldAuthMiddleware(URLRouter(websocket_urlpatterns)),
        }
    )
)
