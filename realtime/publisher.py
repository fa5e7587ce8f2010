"""The one place services send channel-layer events from.

Services call :func:`publish_on_commit`; the events go out only after the transaction that stored
their rows commits (stored first, docs/architecture.md), so a client never sees a row that rolls
back.
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

from . import metrics

logger = logging.getLogger(__name__)

GroupEvent = tuple[str, dict[str, Any]]

# Sends in flight at once for a large fan-out: enough to hide Redis round trips, few enough
# not to open thousands of connections.
_CONCURRENCY = 64


async def apublish(events: Iterable[GroupEvent]) -> int:
    """Send each ``(group, event)`` now; return how many sends failed (each is logged).

    A layer with ``group_send_many`` (``realtime.adapters.PubSubLayer``) sends them in
    pipelines; any other layer through ``group_send``, at most ``_CONCURRENCY`` at a time (that
    many workers take the next event from one shared iterator).
    """
    layer = get_channel_layer()
    batch = list(events)
    if layer is None or not batch:
        return 0
    # The consumer observes publish→deliver latency from this stamp (realtime.metrics.delivered).
    published_at = time.time()
    stamped = [(group, {**event, "published_at": published_at}) for group, event in batch]
    send_many = getattr(layer, "group_send_many", None)
    if send_many is not None:
        failures = await send_many(stamped)
        if failures:
            metrics.LAYER_ERRORS.labels("group_send").inc(failures)
            logger.warning(
                "channel layer send failed: %d event(s) lost live (stored; resume recovers them)",
                failures,
            )
        return failures
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


class _Outbox:
    """Events handed over by threads, sent by one task on the server's event loop.

    A service runs in a worker thread (a REST view, ``database_sync_to_async``). Waiting there
    for the publish (``async_to_sync``) held that thread, which Django's ASGI handler shares
    among all sync views, for a Redis round trip per write: 10 concurrent single-recipient
    ``POST``s ran one after the other. The thread now queues the events and goes on; one task
    on the loop sends whatever has queued, in order and in one pipeline (docs/architecture.md).
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: list[GroupEvent] = []
        self.draining = False

    def put(self, batch: list[GroupEvent]) -> bool:
        """Queue ``batch`` from another thread; ``False`` when no serving loop is known."""
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        try:
            loop.call_soon_threadsafe(self._take, batch)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    def _take(self, batch: list[GroupEvent]) -> None:
        self.pending.extend(batch)
        if not self.draining:
            self.draining = True
            task = asyncio.ensure_future(self._drain())
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    await apublish(batch)
                except Exception:  # an event that cannot be sent must not stop the others
                    metrics.LAYER_ERRORS.labels("group_send").inc(len(batch))
                    logger.exception("publishing %d queued event(s) failed", len(batch))
        finally:
            self.draining = False


_outbox = _Outbox()
_tasks: set[asyncio.Task[None]] = set()


class ServingLoop:
    """ASGI middleware that tells the publisher which event loop serves the application
    (``config/asgi.py`` wraps the application in it): threads then hand their events to it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        _outbox.loop = asyncio.get_running_loop()
        return await self.app(scope, receive, send)


def publish(events: Iterable[GroupEvent]) -> None:
    """Send the events from code outside the event loop, in order.

    In a server (a loop known through :class:`ServingLoop`) the events are queued to that loop
    and this returns at once; elsewhere (a management command, a sync test) it sends them and
    waits (``async_to_sync``).
    """
    batch = list(events)
    if not batch:
        return
    try:
        in_loop = asyncio.get_running_loop() is _outbox.loop
    except RuntimeError:
        in_loop = False
    if in_loop:  # a sync call inside the loop itself: schedule, never block the loop
        _outbox._take(batch)
    elif not _outbox.put(batch):
        async_to_sync(apublish)(batch)


def publish_on_commit(events: Iterable[GroupEvent]) -> None:
    """Send the events once the current transaction commits (at once outside one).

    ``events`` is a list of ``(group name, event dict)``: names from ``realtime.groups`` or an
    app's ``events`` module, events built there too.
    """
    batch = list(events)
    if batch:
        transaction.on_commit(lambda: publish(batch), robust=True)
