"""``config/cache.py`` is the one module that touches Django's Redis cache internals; this pins
each private name it uses, so a Django upgrade that renames one fails here, not in production
(where it would silently fall back to one Redis connection per socket)."""

import inspect

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from config.cache import SharedRedisCache, SharedRedisCacheClient


def test_the_private_names_the_shared_cache_uses_still_exist():
    client = RedisCacheClient(["redis://127.0.0.1:1/0"])
    assert callable(client._get_connection_pool)
    assert client._client is not None
    cache = RedisCache("redis://127.0.0.1:1/0", {})
    for name in ("_servers", "_options", "_class"):
        assert hasattr(cache, name), name
    assert hasattr(inspect.getattr_static(RedisCache, "_cache"), "__get__")  # overridden


def test_instances_share_one_client_and_one_redis_per_pool():
    first = SharedRedisCache("redis://127.0.0.1:1/0", {})
    second = SharedRedisCache("redis://127.0.0.1:1/0", {})
    assert isinstance(first._cache, SharedRedisCacheClient)
    assert first._cache is second._cache
    assert first._cache.get_client() is second._cache.get_client()
