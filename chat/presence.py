"""Ephemeral room state, never stored in the database: who is online, and who is typing.

Presence counts users, not sockets: a user is online in a room while at least one of
their sockets, on any process, is subscribed to it. It must survive a process that dies without
running ``disconnect()``, so nothing relies on a clean leave. Every subscribed socket has an
*entry* ``(room, user, connection)`` with an expiry; the process that holds the socket refreshes
its entries every ``HERALD["PRESENCE_REFRESH"]`` s (default 10) to ``now + PRESENCE_TTL`` (default
30); the same loop *sweeps* the rooms it has subscribers in, announcing ``left`` for users whose
last entry expired. So a SIGKILLed process's users drop out of a room within ``TTL + REFRESH``
seconds (40 s by default) of its last refresh, as long as any process still has a subscriber
there to tell; a room nobody watches has nobody to tell, and its online list skips expired
entries anyway.

Backends, chosen by settings like the channel layer:

- ``REDIS_URL`` set: Redis, shared by every process. Per room, a sorted set of user ids scored by
  the latest expiry of their entries (``<prefix>:presence:{<room>}``), and per room and user a
  sorted set of connection ids scored by expiry (``...:{<room>}:<user>``). Each change is one Lua
  script, so "first socket joined" and "last socket left" are decided atomically across
  processes, and expiry is judged by the Redis server's clock (``TIME``), not each machine's.
  The ``{<room>}`` hash tag keeps a room's keys in one Redis Cluster slot.
- no ``REDIS_URL``: a dict in this process (one process only, like the in-memory channel layer).

A user *joins* when they enter a room's set and *leaves* when their last entry goes (by
unsubscribe, disconnect or expiry). Each process collects its rooms' joins and leaves for
``HERALD["PRESENCE_WINDOW"]`` s (0.2) and then publishes one ``presence {room, joined: [ids],
left: [ids]}`` per room to ``presence.<room>``, each changed user with their state at the flush
(:func:`aflush`). So filling a room of n online members costs each subscriber one frame per
window, not one per member: O(n) frames in all, where one frame per member was n²/2. Only
sockets that want diffs are in ``presence.<room>``: all subscribers of a room of at most
``HERALD_PRESENCE_FULL_LIMIT`` members, in a larger room those that sent ``presence.watch``
(docs/protocol.md, "Presence").

Presence is best-effort: a Redis error is logged and never fails a subscribe or a message.
"""

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.core.cache import cache
from redis import RedisError

from realtime import publisher

from . import events

logger = logging.getLogger(__name__)

TYPING_INTERVAL = 2  # s: at most one ``typing`` per user and room (docs/protocol.md)
_ERRORS = (OSError, asyncio.TimeoutError, RedisError)  # an unreachable or slow backend


@dataclass(frozen=True)
class Entry:
    """One subscribed socket: its room, its user and its ``connection_id``."""

    room_id: int
    user_id: int
    connection_id: str


class Backend(Protocol):
    """Where entries live. Every method is atomic with respect to the other processes."""

    async def join(self, entry: Entry, ttl: float, limit: int) -> tuple[bool, int, list[int]]:
        """Add or extend the entry; ``(user newly online, online users of the room, the first
        ``limit`` online user ids, ascending)``."""

    async def leave(self, entry: Entry) -> bool:
        """Drop the entry; whether it was the user's last in the room (announce ``left``)."""

    async def refresh(self, entries: list[Entry], ttl: float) -> list[bool]:
        """Extend entries that still exist; per entry, whether it existed."""

    async def sweep(self, room_ids: list[int]) -> list[tuple[int, int]]:
        """Drop expired entries of the rooms; ``(room, user)`` of users with none left."""

    async def online(self, room_id: int) -> list[int]:
        """Online user ids of the room, ascending (all of them)."""

    async def present(self, rooms: dict[int, list[int]]) -> dict[int, set[int]]:
        """Of the given users of each room (``{room: [user id]}``), those online now."""

    async def close(self) -> None:
        """Release connections."""


class MemoryBackend:
    """Entries in this process's memory: ``{room: {user: {connection: expiry}}}``."""

    def __init__(self) -> None:
        self.rooms: dict[int, dict[int, dict[str, float]]] = {}

    async def join(self, entry: Entry, ttl: float, limit: int) -> tuple[bool, int, list[int]]:
        users = self.rooms.setdefault(entry.room_id, {})
        new = entry.user_id not in users
        users.setdefault(entry.user_id, {})[entry.connection_id] = time.monotonic() + ttl
        online = await self.online(entry.room_id)
        return new, len(online), online[:limit]

    async def leave(self, entry: Entry) -> bool:
        users = self.rooms.get(entry.room_id, {})
        connections = users.get(entry.user_id)
        if connections is None:
            return False
        connections.pop(entry.connection_id, None)
        now = time.monotonic()
        for connection, expiry in list(connections.items()):
            if expiry <= now:
                del connections[connection]
        if connections:
            return False
        del users[entry.user_id]
        return True

    async def refresh(self, entries: list[Entry], ttl: float) -> list[bool]:
        found = []
        for entry in entries:
            connections = self.rooms.get(entry.room_id, {}).get(entry.user_id, {})
            found.append(entry.connection_id in connections)
            if found[-1]:
                connections[entry.connection_id] = time.monotonic() + ttl
        return found

    async def sweep(self, room_ids: list[int]) -> list[tuple[int, int]]:
        now, gone = time.monotonic(), []
        for room_id in room_ids:
            users = self.rooms.get(room_id, {})
            for user_id, connections in list(users.items()):
                for connection, expiry in list(connections.items()):
                    if expiry <= now:
                        del connections[connection]
                if not connections:
                    del users[user_id]
                    gone.append((room_id, user_id))
        return gone

    async def online(self, room_id: int) -> list[int]:
        now = time.monotonic()
        users = self.rooms.get(room_id, {})
        return sorted(u for u, c in users.items() if any(e > now for e in c.values()))

    async def present(self, rooms: dict[int, list[int]]) -> dict[int, set[int]]:
        found = {}
        for room_id, user_ids in rooms.items():
            online = set(await self.online(room_id))
            found[room_id] = {u for u in user_ids if u in online}
        return found

    async def close(self) -> None:
        self.rooms.clear()


# Lua: ``now`` is the Redis server's clock, so processes on machines with skewed clocks agree.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
_KEEP = """
local keep = math.ceil(tonumber(ARGV[3]) * 2)
redis.call('EXPIRE', KEYS[1], keep)
redis.call('EXPIRE', KEYS[2], keep)
"""
# KEYS: room set, user's connection set. ARGV: user id, connection id, ttl, limit.
# Returns {1 if the user was not in the room's set, online count, first ``limit`` online ids...}.
_JOIN = (
    _NOW
    + """
local new = redis.call('ZSCORE', KEYS[1], ARGV[1]) == false
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], expiry, ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', expiry, ARGV[1])
"""
    + _KEEP
    + """
local count = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local online = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, ARGV[4])
table.insert(online, 1, count)
table.insert(online, 1, new and 1 or 0)
return online
"""
)
# Same keys and ARGV as _JOIN; extends the entry only if it still exists. Returns 1 or 0.
_REFRESH = (
    _NOW
    + """
if redis.call('ZSCORE', KEYS[2], ARGV[2]) == false then return 0 end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], expiry, ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', expiry, ARGV[1])
"""
    + _KEEP
    + "return 1"
)
# Drops expired connections of one user; the user's score becomes their latest expiry, or they
# leave the room's set. Returns 1 when they left. Used by _LEAVE and _SWEEP.
_SETTLE = """
local function settle(room, key, uid, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top == 0 then
    return redis.call('ZREM', room, uid)
  end
  redis.call('ZADD', room, top[2], uid)
  return 0
end
"""
# KEYS: room set, user's connection set. ARGV: user id, connection id.
_LEAVE = (
    _NOW
    + _SETTLE
    + """
redis.call('ZREM', KEYS[2], ARGV[2])
return settle(KEYS[1], KEYS[2], ARGV[1], now)
"""
)
# KEYS: room set. ARGV: prefix of the users' connection-set keys. Returns the ids that left.
_SWEEP = (
    _NOW
    + _SETTLE
    + """
local gone = {}
for _, uid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  if settle(KEYS[1], ARGV[1] .. uid, uid, now) == 1 then
    gone[#gone + 1] = uid
  end
end
return gone
"""
)
_ONLINE = _NOW + "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')"
# KEYS: room set. ARGV: user ids. Returns those online now.
_PRESENT = (
    _NOW
    + """
local found = {}
for _, uid in ipairs(ARGV) do
  local score = redis.call('ZSCORE', KEYS[1], uid)
  if score and tonumber(score) > now then found[#found + 1] = uid end
end
return found
"""
)


class RedisBackend:
    """Entries in Redis sorted sets, shared by every process (see the module docstring)."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        # redis-py 8's defaults do not suit a server (config/settings/base.py): a bounded
        # pool that waits for a free connection, and timeouts on every socket operation.
        # Given a pool, redis-py retries nothing: after a Redis restart the first command on
        # each pooled (stale) connection failed, and a subscribe acked ``presence: [self]``
        # that no later frame corrects. So a failed command is retried twice on a new
        # connection, within about a second (as the cache does, config/settings/base.py). A
        # command refused on a stale connection never ran; one whose answer was lost (a
        # timeout) may have, and its retry then reports "not new": a ``joined`` can go
        # unannounced, never one twice.
        pool = BlockingConnectionPool.from_url(
            url,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2),
            max_connections=32,
            timeout=10,
            socket_timeout=5,
            socket_connect_timeout=2,
            socket_keepalive=True,
            health_check_interval=15,
        )
        self.redis = Redis(connection_pool=pool)
        self.prefix = f"{prefix}:presence:"
        self._join = self.redis.register_script(_JOIN)
        self._refresh = self.redis.register_script(_REFRESH)
        self._leave = self.redis.register_script(_LEAVE)
        self._sweep = self.redis.register_script(_SWEEP)
        self._online = self.redis.register_script(_ONLINE)
        self._present = self.redis.register_script(_PRESENT)

    def _keys(self, entry: Entry) -> list[str]:
        room = f"{self.prefix}{{{entry.room_id}}}"
        return [room, f"{room}:{entry.user_id}"]

    async def join(self, entry: Entry, ttl: float, limit: int) -> tuple[bool, int, list[int]]:
        result = await self._join(
            keys=self._keys(entry), args=[entry.user_id, entry.connection_id, ttl, limit]
        )
        return bool(int(result[0])), int(result[1]), sorted(int(u) for u in result[2:])

    async def leave(self, entry: Entry) -> bool:
        return bool(
            await self._leave(keys=self._keys(entry), args=[entry.user_id, entry.connection_id])
        )

    async def refresh(self, entries: list[Entry], ttl: float) -> list[bool]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                await self._refresh(
                    keys=self._keys(entry),
                    args=[entry.user_id, entry.connection_id, ttl],
                    client=pipe,
                )
            return [bool(found) for found in await pipe.execute()]

    async def sweep(self, room_ids: list[int]) -> list[tuple[int, int]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                room = f"{self.prefix}{{{room_id}}}"
                await self._sweep(keys=[room], args=[f"{room}:"], client=pipe)
            results = await pipe.execute()
        return [(r, int(u)) for r, gone in zip(room_ids, results, strict=True) for u in gone]

    async def online(self, room_id: int) -> list[int]:
        result = await self._online(keys=[f"{self.prefix}{{{room_id}}}"])
        return sorted(int(u) for u in result)

    async def present(self, rooms: dict[int, list[int]]) -> dict[int, set[int]]:
        order = sorted(rooms)
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in order:
                await self._present(
                    keys=[f"{self.prefix}{{{room_id}}}"], args=rooms[room_id], client=pipe
                )
            results = await pipe.execute()
        return {r: {int(u) for u in found} for r, found in zip(order, results, strict=True)}

    async def close(self) -> None:
        await self.redis.aclose()


@dataclass
class _Diff:
    """The joins and leaves of one room since its last flush."""

    joined: set[int] = field(default_factory=set)
    left: set[int] = field(default_factory=set)

    def join(self, user_id: int) -> None:
        # A leave and a join within one window do not cancel out: a socket that subscribed
        # between them read the user as offline, and only this frame tells it otherwise.
        self.left.discard(user_id)
        self.joined.add(user_id)

    def leave(self, user_id: int) -> None:
        self.joined.discard(user_id)
        self.left.add(user_id)


@dataclass(eq=False)
class _State:
    """This process's (event loop's) subscribed entries, the task that keeps them alive, and
    the presence changes waiting for the next flush."""

    backend: Backend
    entries: set[Entry] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    pending: dict[int, _Diff] = field(default_factory=dict)
    flush: asyncio.TimerHandle | None = None


# One state per event loop: a Redis connection pool is bound to its loop, and each test gets
# a fresh loop. daphne runs one loop per process.
_states: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _State]" = (
    weakref.WeakKeyDictionary()
)
_flushes: set[asyncio.Task[int]] = set()  # publishes in flight (a reference keeps each alive)


def _state() -> _State:
    loop = asyncio.get_running_loop()
    state = _states.get(loop)
    if state is None:
        backend: Backend
        if settings.REDIS_URL:
            backend = RedisBackend(settings.REDIS_URL, settings.HERALD["REDIS_PREFIX"])
        else:
            backend = MemoryBackend()
        state = _states[loop] = _State(backend)
    return state


def _ttl() -> float:
    return float(settings.HERALD["PRESENCE_TTL"])


def _record(
    state: _State, room_id: int, *, joined: Iterable[int] = (), left: Iterable[int] = ()
) -> None:
    """Note joins and leaves of a room; the next flush, at most ``PRESENCE_WINDOW`` s away,
    publishes them."""
    diff = state.pending.setdefault(room_id, _Diff())
    for user_id in joined:
        diff.join(user_id)
    for user_id in left:
        diff.leave(user_id)
    if state.flush is None:
        loop = asyncio.get_running_loop()
        state.flush = loop.call_later(float(settings.HERALD["PRESENCE_WINDOW"]), _flush_soon, state)


def _flush_soon(state: _State) -> None:
    task = asyncio.ensure_future(aflush(state))
    _flushes.add(task)
    task.add_done_callback(_flushes.discard)


async def aflush(state: _State | None = None) -> int:
    """Publish the pending ``presence {room, joined, left}`` of every room now; returns how
    many frames went out (rooms whose diff was not empty).

    Each changed user goes out with their state *now* (one backend read per flush), not with
    the last event this process saw: two processes' frames about one user (a leave here, a
    join there within one window) can reach a subscriber in either order, and a client that
    applies them as set operations would keep the older one for good. Read at flush time, the
    last frame to arrive carries the newest state. If the read fails, the events go out as
    they were recorded.
    """
    state = state or _state()
    state.flush = None
    pending, state.pending = state.pending, {}
    pending = {room_id: diff for room_id, diff in pending.items() if diff.joined or diff.left}
    if not pending:
        return 0
    try:
        online = await state.backend.present(
            {room_id: sorted(diff.joined | diff.left) for room_id, diff in pending.items()}
        )
    except _ERRORS as error:
        logger.warning("presence read failed: diffs sent as recorded: %r", error)
    else:
        for room_id, diff in pending.items():
            users = diff.joined | diff.left
            diff.joined = users & online.get(room_id, set())
            diff.left = users - diff.joined
    changes = [
        (
            events.presence_group(room_id),
            events.room_presence(
                room_id=room_id, joined=sorted(diff.joined), left=sorted(diff.left)
            ),
        )
        for room_id, diff in sorted(pending.items())
    ]
    await publisher.apublish(changes)
    return len(changes)


async def ajoin(
    *, room_id: int, user_id: int, connection_id: str, limit: int
) -> tuple[int, list[int]]:
    """Mark a socket subscribed to a room; ``(online users, the first ``limit`` online user
    ids, ascending)``. The user's first socket there is announced as ``joined`` with the next
    flush."""
    state = _state()
    entry = Entry(room_id, user_id, connection_id)
    state.entries.add(entry)
    if state.task is None or state.task.done():
        state.task = asyncio.ensure_future(_keep_alive(state))
    try:
        new, count, online = await state.backend.join(entry, _ttl(), limit)
    except _ERRORS as error:
        logger.warning("presence join failed: room=%s: %r", room_id, error)
        return 1, [user_id]
    if new:
        _record(state, room_id, joined=[user_id])
    return count, online


async def aleave(*, room_id: int, user_id: int, connection_id: str) -> None:
    """Mark a socket no longer subscribed; ``left`` goes out with the next flush if it was the
    user's last socket there."""
    state = _state()
    entry = Entry(room_id, user_id, connection_id)
    state.entries.discard(entry)
    if not state.entries and state.task is not None:
        state.task.cancel()
        state.task = None
    try:
        gone = await state.backend.leave(entry)
    except _ERRORS as error:
        logger.warning("presence leave failed: room=%s: %r", room_id, error)
        return
    if gone:
        _record(state, room_id, left=[user_id])


async def aonline(*, room_id: int) -> list[int]:
    """The room's online user ids, ascending (empty when the backend is unreachable)."""
    try:
        return list(await _state().backend.online(room_id))
    except _ERRORS as error:
        logger.warning("presence read failed: room=%s: %r", room_id, error)
        return []


async def arefresh() -> None:
    """Refresh this process's entries and sweep its rooms once (the keep-alive loop's body).

    An entry that vanished while this process still holds its socket (the process stalled for
    longer than the TTL and another process swept it) is joined again, announcing ``joined``.
    """
    state = _state()
    entries = sorted(state.entries, key=lambda e: (e.room_id, e.user_id, e.connection_id))
    if not entries:
        return
    found = await state.backend.refresh(entries, _ttl())
    for entry, present in zip(entries, found, strict=True):
        if not present and entry in state.entries:
            new, _, _ = await state.backend.join(entry, _ttl(), 0)
            if new:
                _record(state, entry.room_id, joined=[entry.user_id])
    for room_id, user_id in await state.backend.sweep(sorted({e.room_id for e in entries})):
        _record(state, room_id, left=[user_id])


async def _keep_alive(state: _State) -> None:
    """Every ``PRESENCE_REFRESH`` s, while this loop has subscribed sockets: :func:`arefresh`."""
    interval = float(settings.HERALD["PRESENCE_REFRESH"])
    while state.entries:
        await asyncio.sleep(interval)
        try:
            await arefresh()
        except _ERRORS as error:
            logger.warning("presence refresh failed: %r", error)
        except Exception:
            logger.exception("presence refresh failed")


async def aclose() -> None:
    """Stop this loop's keep-alive task and close its backend (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    state = _states.pop(loop, None)
    if state is None:
        return
    if state.flush is not None:
        state.flush.cancel()
    if state.task is not None:
        state.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.task
    await state.backend.close()


async def atyping(*, room_id: int, user_id: int, username: str) -> bool:
    """Send ``typing`` to the room unless the user did within 2 s; whether it was sent.

    The throttle is a cache key added with a 2 s timeout: the cache is Redis with ``REDIS_URL``,
    so it holds across processes (docs/protocol.md: "at most one per 2 s per user and room").
    """
    if not await cache.aadd(f"herald:typing:{room_id}:{user_id}", 1, TYPING_INTERVAL):
        return False
    event = events.room_typing(room_id=room_id, user_id=user_id, username=username)
    await publisher.apublish([(events.room_group(room_id), event)])
    return True
