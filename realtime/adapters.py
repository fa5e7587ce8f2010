"""Every use of a library's private attributes, in this one module.

- :class:`PubSubLayer`: channels-redis's pub/sub layer (``channels_redis/pubsub.py``, 4.3) with
  a pipelined fan-out, joins that skip the layer's per-host lock, a ``receive`` whose
  cancellation cleans up quietly, and access to its subscriber connections for the reconnect
  watch (``realtime.resilience``).
- :func:`outgoing_backlog`: how many bytes daphne's Twisted transport still holds for a socket.

``tests/realtime/test_adapters.py`` pins each private name used here, so an upgrade of
channels-redis, redis-py or Twisted that renames one fails there, loudly, instead of silently
degrading.
"""

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer

logger = logging.getLogger(__name__)

# PUBLISH commands per Redis round trip in :meth:`PubSubLayer.group_send_many` (a few hundred
# KiB at most).
PIPELINE = 500


class PubSubLayer(RedisPubSubChannelLayer):
    """channels-redis's ``RedisPubSubChannelLayer``, named in ``CHANNEL_LAYERS``.

    Same wire format and group semantics as the parent (any process running either reads the
    other's messages); what changes is how this process talks to Redis:

    - :meth:`group_send_many` sends many group events in pipelines instead of one locked
      round trip each.
    - :meth:`group_add` does not queue on the per-host lock when this process already receives
      the group, or when the group's ``SUBSCRIBE`` is already in flight.
    - :meth:`receive` cleans up after a cancelled receive without an ERROR traceback.
    - :meth:`subscriber_connections` exposes the redis-py connections the layer receives on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The slow ``group_add`` (a Redis SUBSCRIBE) in flight, per (loop layer, group channel).
        self._subscribing: dict[tuple[int, str], asyncio.Future[Any]] = {}
        # ``group_discard`` calls in flight that empty a group locally, and so UNSUBSCRIBE it.
        self._leaving: Counter[tuple[int, str]] = Counter()

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of ``channel`` (of this process), as the parent's ``receive``.

        A cancelled receive is the normal end of a consumer (a disconnect, daphne's shutdown,
        a ``/readyz`` check that gave up) and, as in the parent, it drops the channel and
        ``UNSUBSCRIBE``s it. The parent logs any failure of that clean-up as an ERROR with a
        traceback (``Unexpected exception while cleaning-up channel``), which happened for
        every cancelled receive while Redis was down and when the clean-up itself was
        cancelled at shutdown. Here a failed ``UNSUBSCRIBE`` is a warning without traceback (the
        subscription lapses with the connection; messages to a dropped channel are discarded),
        and a second cancellation ends the clean-up silently. A ``SUBSCRIBE`` that fails leaves
        no queue behind: the parent kept it, so the next receive skipped the ``SUBSCRIBE`` and
        waited on a channel nobody published to.
        """
        loop_layer = self._get_layer()
        if channel not in loop_layer.channels:
            try:
                await loop_layer._subscribe_to_channel(channel)
            except BaseException:
                loop_layer.channels.pop(channel, None)
                raise
        queue = loop_layer.channels[channel]
        try:
            message = await queue.get()
        except (asyncio.CancelledError, GeneratorExit):
            if loop_layer.channels.get(channel) is queue:
                del loop_layer.channels[channel]
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await loop_layer._get_shard(channel).unsubscribe(channel)
                    except Exception as error:
                        logger.warning(
                            "channel layer: could not unsubscribe a closed channel: %s: %s",
                            type(error).__name__,
                            error,
                        )
            raise
        return self.deserialize(message)

    async def group_send_many(self, events: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """``group_send`` of each ``(group, event)``; returns how many events failed.

        The parent's ``group_send`` is one ``PUBLISH`` round trip per event, each under a lock
        that its ``SUBSCRIBE``s share (``RedisSingleShardConnection.publish``): a
        1000-recipient notification waited for 1000 round trips in a row, and handshakes queued
        behind them. Here the same ``PUBLISH`` (same channel name, same serializer) goes through
        the shard's client, ``PIPELINE`` commands per round trip, without that lock. A failed
        pipeline counts all its events as failed; it does not raise.
        """
        loop_layer = self._get_layer()
        by_shard: dict[Any, list[tuple[str, bytes]]] = {}
        for group, event in events:
            channel = loop_layer._get_group_channel_name(group)
            by_shard.setdefault(loop_layer._get_shard(channel), []).append(
                (channel, self.serialize(event))
            )
        failures = 0
        for shard, messages in by_shard.items():
            shard._ensure_redis()
            for start in range(0, len(messages), PIPELINE):
                chunk = messages[start : start + PIPELINE]
                try:
                    async with shard._redis.pipeline(transaction=False) as pipe:
                        for channel, data in chunk:
                            pipe.publish(channel, data)
                        await pipe.execute()
                except Exception:
                    failures += len(chunk)
        return failures

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` (of this process) to ``group``.

        The parent takes one lock per Redis host for every ``group_add``, even when this process
        already receives the group and nothing goes to Redis. Each hand-over of that lock costs
        an event-loop iteration, so a burst of ``subscribe``s to busy rooms (every client of a
        restarted server coming back) queued for seconds (docs/performance.md). Here a socket
        joining a group the process already receives is added in memory, the parent's own step,
        and sockets joining a group whose ``SUBSCRIBE`` is in flight wait for that one. The lock
        is still taken when an ``UNSUBSCRIBE`` of the group is pending.
        """
        loop_layer = self._get_layer()
        name = loop_layer._get_group_channel_name(group)
        key = (id(loop_layer), name)
        if channel not in loop_layer.channels or self._leaving[key]:
            await loop_layer.group_add(group, channel)
            return
        members = loop_layer.groups.get(name)
        if members and name in loop_layer._get_shard(name)._subscribed_to:
            members.add(channel)
            return
        inflight = self._subscribing.get(key)
        if inflight is not None and members:
            members.add(channel)  # the SUBSCRIBE in flight covers every local member
        else:
            inflight = self._subscribing[key] = asyncio.ensure_future(
                loop_layer.group_add(group, channel)
            )

            def forget(done: asyncio.Future[Any]) -> None:
                if self._subscribing.get(key) is done:
                    del self._subscribing[key]

            inflight.add_done_callback(forget)
        # Shielded: a caller that gives up (a timeout) must not cancel other members' SUBSCRIBE.
        await asyncio.shield(inflight)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; marks the group while its ``UNSUBSCRIBE`` is
        pending, so that :meth:`group_add` meanwhile takes the parent's locked path."""
        loop_layer = self._get_layer()
        name = loop_layer._get_group_channel_name(group)
        if loop_layer.groups.get(name) != {channel}:  # others stay: no Redis call, no lock
            await loop_layer.group_discard(group, channel)
            return
        key = (id(loop_layer), name)
        self._leaving[key] += 1
        try:
            await loop_layer.group_discard(group, channel)
        finally:
            self._leaving[key] -= 1
            if not self._leaving[key]:
                del self._leaving[key]

    async def new_channel_in_groups(self, groups: list[str], prefix: str = "specific.") -> str:
        """A new channel of this process, already in ``groups``: one ``SUBSCRIBE`` per Redis
        host for the channel and every group this process does not receive yet, where the
        parent's ``new_channel`` and one ``group_add`` per group took a locked round trip each.
        """
        loop_layer = self._get_layer()
        channel = f"{loop_layer.prefix}{prefix}{uuid.uuid4().hex}"
        loop_layer.channels[channel] = asyncio.Queue()
        names = [channel]
        for group in groups:
            name = loop_layer._get_group_channel_name(group)
            loop_layer.groups.setdefault(name, set()).add(channel)
            names.append(name)
        by_shard: dict[Any, list[str]] = {}
        for name in names:
            by_shard.setdefault(loop_layer._get_shard(name), []).append(name)
        try:
            for shard, wanted in by_shard.items():
                async with shard._lock:
                    missing = [n for n in wanted if n not in shard._subscribed_to]
                    if missing:
                        shard._ensure_redis()
                        shard._ensure_receiver()
                        await shard._pubsub.subscribe(*missing)
                        shard._subscribed_to.update(missing)
        except BaseException:
            await self.discard_channel_and_groups(channel, groups)
            raise
        return channel

    async def discard_channel_and_groups(self, channel: str, groups: list[str]) -> None:
        """Take ``channel`` out of ``groups`` and drop it: one ``UNSUBSCRIBE`` per Redis host
        for the channel and every group it leaves empty in this process."""
        loop_layer = self._get_layer()
        loop_layer.channels.pop(channel, None)
        names = [channel]
        for group in groups:
            name = loop_layer._get_group_channel_name(group)
            members = loop_layer.groups.get(name)
            if members is not None and channel in members:
                members.discard(channel)
                if not members:
                    del loop_layer.groups[name]
                    names.append(name)
        by_shard: dict[Any, list[str]] = {}
        for name in names:
            by_shard.setdefault(loop_layer._get_shard(name), []).append(name)
        for shard, wanted in by_shard.items():
            async with shard._lock:
                # A group joined again meanwhile stays subscribed.
                gone = [
                    n for n in wanted if n in shard._subscribed_to and n not in loop_layer.groups
                ]
                if gone:
                    shard._ensure_redis()
                    shard._ensure_receiver()
                    await shard._pubsub.unsubscribe(*gone)
                    shard._subscribed_to.difference_update(gone)

    def subscriber_connections(self) -> list[tuple[Any, Any]]:
        """``(redis-py connection, its pool)`` this event loop receives on, one per host that
        has been used; the pool is the one the layer also publishes through."""
        found = []
        for shard in self._get_layer()._shards:
            connection = getattr(shard._pubsub, "connection", None)
            pool = getattr(shard._redis, "connection_pool", None)
            if connection is not None:
                found.append((connection, pool))
        return found


def outgoing_backlog(send: Any) -> int | None:
    """Bytes written to this socket that the client has not taken yet, as far as daphne knows.

    daphne hands the application ``functools.partial(server.handle_reply, protocol)`` as
    ``send``; the protocol's Twisted transport buffers what the kernel would not take
    (``twisted.internet.abstract.FileDescriptor``: ``dataBuffer`` from ``offset``, plus
    ``_tempDataLen``). ``None`` when that is not what ``send`` is (another server, TLS
    wrapping, the test communicator): the caller then cannot tell, and does not act.
    """
    args = getattr(send, "args", ())
    transport = getattr(args[0], "transport", None) if args else None
    try:
        pending = len(transport.dataBuffer) - transport.offset + transport._tempDataLen  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        return None
    return pending if isinstance(pending, int) else None
