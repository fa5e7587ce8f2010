"""What a socket does when the channel layer or its own client fails (docs/reliability.md).

Three mechanisms, each ending in close code 4503 ("reconnect with backoff, then resume",
CONTRACT §3.3), because every live frame is stored first and ``resume`` / ``subscribe since``
replay whatever a socket missed (CONTRACT §4):

- :func:`bounded`: a channel-layer call that does not answer within ``LAYER_TIMEOUT`` raises
  :class:`LayerUnavailable` instead of hanging a handshake or a handler (Redis stopped).
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

T = TypeVar("T")

# Process totals: ``layer_unavailable`` (handshakes and subscribes refused with 4503),
# ``layer_reconnect_closes`` (sockets closed after the subscriber connection was re-established),
# ``slow_consumer_closes`` (sockets closed because their client stopped reading).
counters: Counter[str] = Counter()


class LayerUnavailable(Exception):
    """The channel layer failed or did not answer within ``LAYER_TIMEOUT``."""


async def bounded(call: Awaitable[T]) -> T:
    """Await a channel-layer call for at most ``LAYER_TIMEOUT`` s.

    Raises :class:`LayerUnavailable` on a timeout or any error of the layer (a refused or reset
    Redis connection raises redis-py's ``ConnectionError``, a hung one nothing at all).
    """
    try:
        return await asyncio.wait_for(call, LAYER_TIMEOUT)
    except Exception as error:
        counters["layer_unavailable"] += 1
        raise LayerUnavailable(f"{type(error).__name__}: {error}") from error


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
