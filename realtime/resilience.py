"""What a socket does when the channel layer or its own client fails (docs/reliability.md).

Three mechanisms, each ending in close code 4503 ("reconnect with backoff, then resume",
docs/protocol.md), because every live frame is stored first and ``resume`` / ``subscribe since``
replay whatever a socket missed (docs/reliability.md):

- :func:`bounded`: a channel-layer call that does not answer within ``LAYER_TIMEOUT`` raises
  :class:`LayerUnavailable` instead of hanging a handshake or a handler (Redis stopped).
  :func:`group_add` / :func:`group_discard` wrap the layer's own with it.
- :data:`reconnects`: redis-py's ``PubSub`` re-subscribes on its own when its connection comes
  back (``PubSub.on_connect``), so a socket keeps receiving after a Redis restart, but whatever
  was published while the connection was down is gone. Sockets that were open across such a
  gap are closed so that their clients resume, and the layer's idle publish connections, stale
  since the restart, are dropped.
- a slow consumer: ASGI ``send`` never blocks, so a client that stops reading makes daphne's
  write buffer grow without bound (``realtime.adapters.outgoing_backlog``). The consumer waits
  for it to drain and closes a socket whose backlog does not.

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


async def group_add(layer: Any, group: str, channel: str, limit: float = LAYER_TIMEOUT) -> None:
    """``layer.group_add(group, channel)``, :func:`bounded` by ``limit`` s; raises
    :class:`LayerUnavailable`."""
    await bounded(layer.group_add(group, channel), limit)


async def group_discard(layer: Any, group: str, channel: str) -> None:
    """``layer.group_discard(group, channel)``, :func:`bounded`; raises
    :class:`LayerUnavailable`."""
    await bounded(layer.group_discard(group, channel))


def _subscriber_connections(layer: Any) -> list[tuple[Any, Any]]:
    """``(connection, pool)`` the layer receives on in this event loop (one per host); ``[]``
    for a layer without any (the in-memory one has no connection to lose)."""
    connections = getattr(layer, "subscriber_connections", None)
    return connections() if connections is not None else []


class ReconnectWatch:
    """Closes this process's sockets when the layer's subscriber connection is re-established.

    The layer holds one redis-py ``PubSub`` per host and event loop
    (``realtime.adapters.PubSubLayer.subscriber_connections``); its connection object survives
    reconnects, and redis-py calls every registered connect callback
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
