"""Django's Redis cache with one client, and so one connection pool, per process.

Django keeps cache instances per async context (``CacheHandler.thread_critical = False``), and
each ``RedisCache`` instance builds its own ``RedisCacheClient`` with its own connection pool.
Under Channels every WebSocket is its own context, so each handshake's session check opened a
new TCP connection to Redis (connect, ``PING`` health check) and each open socket then held it:
5000 idle sockets meant 5000 Redis connections (docs/performance.md, "The fast path: what each
change bought"). redis-py's pool is thread-safe, so one client per ``LOCATION`` and ``OPTIONS``
is shared here instead.

Django's client also builds a new ``redis.Redis`` around its pool for every cache call, and
redis-py 8's constructor is not cheap (argument checks, a response-callback table): 3 % of a
WebSocket handshake's CPU went there (py-spy, docs/performance.md). ``redis.Redis`` is
thread-safe for single commands (redis-py's documentation, "Thread safety"), so each pool's
``Redis`` is built once too.
"""

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[str, RedisCacheClient] = {}
_lock = threading.Lock()


class SharedRedisCacheClient(RedisCacheClient):
    """``RedisCacheClient`` that keeps one ``redis.Redis`` per connection pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._redis.get(id(pool))
        if client is None:
            with _lock:
                client = self._redis.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class SharedRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` sharing its client across instances."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedRedisCacheClient

    @property
    def _cache(self) -> Any:  # type: ignore[override]
        key = repr((self._servers, sorted(self._options.items())))
        client = _clients.get(key)
        if client is None:
            with _lock:
                client = _clients.setdefault(key, self._class(self._servers, **self._options))
        return client
