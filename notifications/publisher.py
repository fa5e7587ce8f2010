"""The one place that talks to the channel layer (STYLE rule 3).

Services call :func:`publish_on_commit`; the events go out only after the transaction that stored
their rows commits (CONTRACT §4: stored first), so a client never sees a row that rolls back.
A failed send is logged and dropped, never raised into the caller: the data is stored, and a
client recovers it with ``resume`` / ``subscribe since`` (docs/reliability.md).
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.db import transaction

from config import metrics

logger = logging.getLogger(__name__)

GroupEvent = tuple[str, dict[str, Any]]

# Sends in flight at once for a large fan-out: enough to hide Redis round trips, few enough
# not to open thousands of connections.
_CONCURRENCY = 64
# PUBLISH commands per Redis round trip on the pub/sub layer (a few hundred KiB at most).
_PIPELINE = 500


async def apublish(events: Iterable[GroupEvent]) -> int:
    """Send each ``(group, event)`` now; return how many sends failed (each is logged).

    On the Redis pub/sub layer the events go out in pipelines (:func:`_pipelined`); on any
    other layer through ``group_send``, at most ``_CONCURRENCY`` at a time (that many workers
    take the next event from one shared iterator).
    """
    layer = get_channel_layer()
    batch = list(events)
    if layer is None or not batch:
        return 0
    # The consumer observes publish→deliver latency from this stamp (config.metrics).
    published_at = time.time()
    stamped = [(group, {**event, "published_at": published_at}) for group, event in batch]
    if isinstance(layer, RedisPubSubChannelLayer):
        return await _pipelined(layer, stamped)
    pending = iter(stamped)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for group, event in pending:  # asyncio: each next() runs alone, no lock needed
            try:
                await layer.group_send(group, event)
            except ChannelFull:
                failures += 1
                metrics.LAYER_CAPACITY_DROPS.labels("group_send").inc()
                logger.warning("channel layer full: group=%s type=%s", group, event["type"])
            except Exception:
                failures += 1
                metrics.LAYER_ERRORS.labels("group_send").inc()
                logger.warning("channel layer send failed: group=%s type=%s", group, event["type"])

    await asyncio.gather(*(worker() for _ in range(min(_CONCURRENCY, len(stamped)))))
    return failures


async def _pipelined(layer: RedisPubSubChannelLayer, events: list[GroupEvent]) -> int:
    """``group_send`` of each event on channels-redis's pub/sub layer, in Redis pipelines.

    The layer's own ``group_send`` is one ``PUBLISH`` round trip per event, each under a lock
    that its ``SUBSCRIBE``s share (channels_redis 4.3 ``pubsub.py``,
    ``RedisSingleShardConnection.publish``): a 1000-recipient notification waited for 1000
    round trips in a row, and handshakes and ``subscribe``s queued behind them. Here the same
    ``PUBLISH`` (same channel name, same serializer) goes through the layer's publish pool,
    ``_PIPELINE`` commands per round trip, without that lock. Returns how many events failed.
    """
    loop_layer = layer._get_layer()
    by_shard: dict[Any, list[tuple[str, bytes]]] = {}
    for group, event in events:
        channel = loop_layer._get_group_channel_name(group)
        by_shard.setdefault(loop_layer._get_shard(channel), []).append(
            (channel, layer.serialize(event))
        )
    failures = 0
    for shard, messages in by_shard.items():
        shard._ensure_redis()
        for start in range(0, len(messages), _PIPELINE):
            chunk = messages[start : start + _PIPELINE]
            try:
                async with shard._redis.pipeline(transaction=False) as pipe:
                    for channel, data in chunk:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except Exception as error:
                failures += len(chunk)
                metrics.LAYER_ERRORS.labels("group_send").inc(len(chunk))
                logger.warning(
                    "channel layer send failed: %d event(s) lost live (stored; resume "
                    "recovers them): %s",
                    len(chunk),
                    type(error).__name__,
                )
    return failures


def publish(events: Iterable[GroupEvent]) -> int:
    """Synchronous twin of :func:`apublish`, for code outside the event loop."""
    return async_to_sync(apublish)(list(events))


def publish_on_commit(events: Iterable[GroupEvent]) -> None:
    """Send the events once the current transaction commits (at once outside one).

    ``events`` is a list of ``(group name, event dict)`` from ``groups`` and ``events``.
    """
    batch = list(events)
    if batch:
        transaction.on_commit(lambda: publish(batch), robust=True)
