"""What a socket does when the channel layer or its own client fails (docs/reliability.md).

Three mechanisms, each ending in close code 4503 ("reconnect with backoff, then resume",
CONTRACT §3.3), because every live frame is stored first and ``resume`` / ``subscribe since``
replay whatever a socket missed (CONTRACT §4):

- :func:`bounded`: a channel-layer call that does not answer within ``LAYER_TIMEOUT`` raises
  :class:`LayerUnavailable` instead of hanging a handshake or a handler (Redis stopped).
  :func:`group_add` / :func:`group_discard` wrap the layer's own with it, and keep joins off
  the layer's per-host lock where the process already receives the group.
- :data:`reconnects`: redis-py's ``PubSub`` re-subscribes on its own when its connection comes
  back (``PubSub.on_connect``), so a socket keeps receiving after a Redis restart, but whatever
  was published while the connection was down is gone. Sockets that were open across such a
  gap are closed so that their clients resume, and the layer's idle publish connections, stale
  since the restart, are dropped.
- :func:`outgoing_backlog`: ASGI ``send`` never blocks, so a client that stops reading makes
  daphne's write buffer grow without bound. The consumer waits for it to drain and closes a
  socket whose backlog does not (a slow consumer).

``counters`` holds this process's totals of each outcome (for metrics); every one is also
logged as a warning.
"""

import asyncio
import contextlib
import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

LAYER_TIMEOUT = 2.0  # s: a channel-layer call slower than this counts as the layer being down
# s: the same for a ``subscribe``'s ``group_add``, which under a burst of subscriptions waits
# its turn behind others on a busy event loop (see group_add); a handshake still fails fast.
JOIN_TIMEOUT = 10.0

T = TypeVar("T")

# Process totals: ``layer_unavailable`` (handshakes and subscribes refused with 4503),
# ``layer_reconnect_closes`` (sockets closed after the subscriber connection was re-established),
# ``slow_consumer_closes`` (sockets closed because their client stopped reading).
counters: Counter[str] = Counter()


class LayerUnavailable(Exception):
    """The channel layer failed or did not answer within ``LAYER_TIMEOUT``."""


async def bounded(call: Awaitable[T], limit: float = LAYER_TIMEOUT) -> T:
    """Await a channel-layer call for at most ``limit`` s (``LAYER_TIMEOUT``).

    Raises :class:`LayerUnavailable` on a timeout or any error of the layer (a refused or reset
    Redis connection raises redis-py's ``ConnectionError``, a hung one nothing at all).
    """
    try:
        return await asyncio.wait_for(call, limit)
    except Exception as error:
        counters["layer_unavailable"] += 1
        raise LayerUnavailable(f"{type(error).__name__}: {error}") from error


# ``group_discard`` calls in flight that empty a group locally, and so UNSUBSCRIBE it, per
# (loop layer, group channel): see group_add.
_leaving: Counter[tuple[int, str]] = Counter()


def _group_state(layer: Any, group: str) -> tuple[Any, str, tuple[int, str]] | None:
    """``(loop layer, group channel, key)`` on channels-redis's pub/sub layer, else ``None``."""
    get_layer = getattr(layer, "_get_layer", None)
    if get_layer is None:  # the in-memory layer: no lock, no Redis
        return None
    loop_layer = get_layer()
    name = loop_layer._get_group_channel_name(group)
    return loop_layer, name, (id(loop_layer), name)


# The slow ``group_add`` (a Redis ``SUBSCRIBE``) in flight per (loop layer, group channel).
_subscribing: dict[tuple[int, str], asyncio.Future[Any]] = {}


async def group_add(layer: Any, group: str, channel: str, limit: float = LAYER_TIMEOUT) -> None:
    """``layer.group_add(group, channel)``, :func:`bounded` by ``limit`` s; raises
    :class:`LayerUnavailable`.

    channels-redis's pub/sub layer takes one lock per Redis host for every ``group_add``, even
    when this process already receives the group and nothing goes to Redis
    (``RedisSingleShardConnection.subscribe``, channels_redis 4.3). Each hand-over of that lock
    costs an event-loop iteration, so under a burst of ``subscribe``s to busy rooms (every
    client of a restarted server coming back) the queue outlasted ``LAYER_TIMEOUT`` and sockets
    were closed with 4503 (`make bench`, docs/performance.md). Here a socket joining a group
    the process already receives is added in memory, the layer's own step, and sockets joining
    a group whose ``SUBSCRIBE`` is in flight wait for that one; neither takes the lock. The
    lock is still taken when an ``UNSUBSCRIBE`` of the group is pending (:func:`group_discard`).
    """
    state = _group_state(layer, group)
    if state is None or channel not in state[0].channels or _leaving[state[2]]:
        await bounded(layer.group_add(group, channel), limit)
        return
    loop_layer, name, key = state
    members = loop_layer.groups.get(name)
    if members and name in loop_layer._get_shard(name)._subscribed_to:
        members.add(channel)
        return
    inflight = _subscribing.get(key)
    if inflight is not None and members:
        members.add(channel)  # the SUBSCRIBE in flight covers every local member
    else:
        inflight = _subscribing[key] = asyncio.ensure_future(layer.group_add(group, channel))

        def forget(done: asyncio.Future[Any]) -> None:
            if _subscribing.get(key) is done:
                del _subscribing[key]

        inflight.add_done_callback(forget)
    await bounded(asyncio.shield(inflight), limit)


async def group_discard(layer: Any, group: str, channel: str) -> None:
    """``layer.group_discard(group, channel)``, :func:`bounded`; raises
    :class:`LayerUnavailable`. Marks the group while its ``UNSUBSCRIBE`` is pending."""
    state = _group_state(layer, group)
    if state is None:
        await bounded(layer.group_discard(group, channel))
        return
    loop_layer, name, key = state
    if loop_layer.groups.get(name) != {channel}:  # others stay: no Redis call, no lock
        await bounded(layer.group_discard(group, channel))
        return
    _leaving[key] += 1
    try:
        await bounded(layer.group_discard(group, channel))
    finally:
        _leaving[key] -= 1
        if not _leaving[key]:
            del _leaving[key]


def _subscriber_connections(layer: Any) -> list[tuple[Any, Any]]:
    """``(connection, pool)`` the pub/sub layer receives on in this event loop (one per host);
    ``[]`` for any other layer (the in-memory one has no connection to lose)."""
    get_layer = getattr(layer, "_get_layer", None)
    if get_layer is None:
        return []
    found = []
    for shard in getattr(get_layer(), "_shards", ()):
        connection = getattr(getattr(shard, "_pubsub", None), "connection", None)
        pool = getattr(getattr(shard, "_redis", None), "connection_pool", None)
        if connection is not None:
            found.append((connection, pool))
    return found


class ReconnectWatch:
    """Closes this process's sockets when the layer's subscriber connection is re-established.

    ``channels_redis.pubsub`` holds one redis-py ``PubSub`` per host and event loop; its
    connection object survives reconnects, and redis-py calls every registered connect callback
    after each reconnect (after ``PubSub.on_connect`` has re-subscribed, which was registered
    first). The callback does not run for the first connect, only for reconnects.
    """

    def __init__(self) -> None:
        self._sockets: weakref.WeakKeyDictionary[Any, Callable[[], Awaitable[None]]] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._pools: dict[int, Any] = {}

    def track(self, layer: Any, socket: Any, on_lost: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_lost()`` once if ``layer``'s subscriber connection reconnects while
        ``socket`` is tracked. Call after the socket's channel exists (its connection is then
        open)."""
        for connection, pool in _subscriber_connections(layer):
            # Kept as a WeakMethod by redis-py and deduplicated: registering again is a no-op.
            connection.register_connect_callback(self._reconnected)
            if pool is not None:
                self._pools[id(pool)] = pool
        self._sockets[socket] = on_lost

    def untrack(self, socket: Any) -> None:
        self._sockets.pop(socket, None)

    async def _reconnected(self, connection: Any) -> None:
        # The layer publishes on other connections of the same pool; idle ones still point at
        # the old server, and the first publish on each would fail (redis-py retries nothing
        # when given a pool). Drop them; the subscriber connection is in use and stays.
        for pool in list(self._pools.values()):
            with contextlib.suppress(Exception):
                await pool.disconnect(inuse_connections=False)
        victims = list(self._sockets.items())
        self._sockets.clear()
        counters["layer_reconnect_closes"] += len(victims)
        logger.warning(
            "channel layer: the subscriber connection to Redis was re-established; frames "
            "published meanwhile are lost, closing %d socket(s) with 4503 so that they resume",
            len(victims),
        )
        for _socket, on_lost in victims:
            task = asyncio.ensure_future(on_lost())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


reconnects = ReconnectWatch()


def outgoing_backlog(send: Any) -> int | None:
    """Bytes written to this socket that the client has not taken yet, as far as daphne knows.

    daphne hands the application ``functools.partial(server.handle_reply, protocol)`` as
    ``send``; the protocol's Twisted transport buffers what the kernel would not take
    (``twisted.internet.abstract.FileDescriptor``: ``dataBuffer`` from ``offset``, plus
    ``_tempDataBuffer``). ``None`` when that is not what ``send`` is (another server, TLS
    wrapping, the test communicator): the caller then cannot tell, and does not act.
    """
    args = getattr(send, "args", ())
    transport = getattr(args[0], "transport", None) if args else None
    try:
        pending = len(transport.dataBuffer) - transport.offset + transport._tempDataLen  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        return None
    return pending if isinstance(pending, int) else None
