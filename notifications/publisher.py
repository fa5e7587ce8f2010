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
from django.db import transaction

from config import metrics

logger = logging.getLogger(__name__)

GroupEvent = tuple[str, dict[str, Any]]

# Sends in flight at once for a large fan-out: enough to hide Redis round trips, few enough
# not to open thousands of connections.
_CONCURRENCY = 64


async def apublish(events: Iterable[GroupEvent]) -> int:
    """Send each ``(group, event)`` now; return how many sends failed (each is logged)."""
    layer = get_channel_layer()
    if layer is None:
        return 0
    gate = asyncio.Semaphore(_CONCURRENCY)
    failures = 0
    # The consumer observes publish→deliver latency from this stamp (config.metrics).
    published_at = time.time()

    async def send(group: str, event: dict[str, Any]) -> None:
        nonlocal failures
        async with gate:
            try:
                await layer.group_send(group, {**event, "published_at": published_at})
            except ChannelFull:
                failures += 1
                metrics.LAYER_CAPACITY_DROPS.labels("group_send").inc()
                logger.warning("channel layer full: group=%s type=%s", group, event["type"])
            except Exception:
                failures += 1
                metrics.LAYER_ERRORS.labels("group_send").inc()
                logger.warning("channel layer send failed: group=%s type=%s", group, event["type"])

    await asyncio.gather(*(send(group, event) for group, event in events))
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
