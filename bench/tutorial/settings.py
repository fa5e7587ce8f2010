"""Settings of the tutorial baseline: Herald's production settings, the core channel layer."""

from config.settings.production import *  # noqa: F403
from config.settings.production import REDIS_URL

ROOT_URLCONF = "bench.tutorial.urls"
ASGI_APPLICATION = "bench.tutorial.asgi.application"
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # The two changes from the tutorials, without which there is no baseline to measure:
        # redis-py 8's default pool of 100 connections fails 1000 sockets with "Too many
        # connections", and its 5 s socket timeout kills idle sockets' receive loops (1011).
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "max_connections": 10_000, "socket_timeout": 30}]
        },
    }
}
