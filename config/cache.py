"""Django's Redis cache with one client, and so one connection pool, per process.

Django keeps cache instances per async context (``CacheHandler.thread_critical = False``), and
each ``RedisCache`` instance builds its own ``RedisCacheClient`` with its own connection pool.
Under Channels every WebSocket is its own context, so each handshake's session check opened a
new TCP connection to Redis (connect, ``PING`` health check) and each open socket then held it:
5000 idle sockets meant 5000 Redis connections (docs/performance.md, "Handshake"). redis-py's
pool is thread-safe, so one client per ``LOCATION`` and ``OPTIONS`` is shared here instead.
"""

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[str, RedisCacheClient] = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` sharing its client across instances."""

    @property
    def _cache(self) -> Any:  # type: ignore[override]
        key = repr((self._servers, sorted(self._options.items())))
        client = _clients.get(key)
        if client is None:
            with _lock:
                client = _clients.setdefault(key, self._class(self._servers, **self._options))
        return client
