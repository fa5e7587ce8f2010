"""Caps on open sockets: at most ``HERALD_WS_MAX_PER_USER`` per user and
``HERALD_WS_MAX_PER_IP`` per client IP, counted over every process (docs/security.md, "Limits").

A handshake over either cap is accepted only to be closed with 4429 (the consumer), never
refused with an HTTP status a browser cannot read. The IP is the client address daphne reports
(``scope["client"]``; behind the proxy, ``--proxy-headers`` makes it the proxy's
``X-Forwarded-For``).

Backends, chosen by settings like the channel layer:

- ``REDIS_URL`` set: per user and per IP a hash ``<prefix>:caps:user:<id>`` / ``...:ip:<ip>``
  of ``{process id: open sockets}``, and a sorted set ``<prefix>:caps:processes`` of the
  processes' last heartbeat (the Redis server's clock, ``TIME``). A handshake is one Lua script,
  one round trip: it sums the counts of live processes (dropping dead ones' fields), refuses at
  a cap, else increments this process's count; so two processes never both take the last place.
  A closed socket decrements (off the handshake path). Each process beats every ``BEAT`` s; a
  process that stops beating (SIGKILL, OOM kill, a network cut) stops counting after
  ``STALE`` s, so a crashed process's sockets free their places within ``STALE`` s.
- no ``REDIS_URL``: counters in this process (one process only).

Caps of ``0`` turn the check off; with both off a handshake costs nothing here.
"""

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from redis import RedisError

from .resilience import LAYER_TIMEOUT, LayerUnavailable

logger = logging.getLogger(__name__)

BEAT = 10.0  # s between a process's heartbeats
STALE = 3 * BEAT  # s: a process whose last heartbeat is older no longer counts
KEY_TTL = 86_400  # s: a count hash nobody touches expires (a dead process's leftovers)
RESYNC_EVERY = KEY_TTL / 4  # s: each process rewrites its own counts (and their TTL) this often
_ERRORS = (OSError, asyncio.TimeoutError, RedisError)

# KEYS[1]: the processes' sorted set; KEYS[2..]: count hashes; ARGV[1]: this process;
# ARGV[2]: STALE; ARGV[3]: KEY_TTL; ARGV[3 + i]: the cap of KEYS[1 + i].
# Returns 0 (counted), or i: KEYS[1 + i] is full.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
for i = 2, #KEYS do
  local fields = redis.call('HGETALL', KEYS[i])
  local total = 0
  for j = 1, #fields, 2 do
    if redis.call('ZSCORE', KEYS[1], fields[j]) then
      total = total + tonumber(fields[j + 1])
    else
      redis.call('HDEL', KEYS[i], fields[j])
    end
  end
  if total >= tonumber(ARGV[i + 2]) then
    return i - 1
  end
end
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], ARGV[1], 1)
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return 0
"""

# KEYS: count hashes; ARGV[1]: this process.
_RELEASE = """
for i = 1, #KEYS do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 0
"""

# KEYS[1]: the processes' sorted set; ARGV[1]: this process.
_BEAT = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
return 0
"""


@dataclass(frozen=True)
class Admission:
    """A counted socket: the cap keys it holds a place in, released when it closes."""

    keys: tuple[str, ...]


class Backend(Protocol):
    """Where the counts live."""

    async def admit(self, caps: list[tuple[str, int]]) -> str | None:
        """Take a place under every ``(key, cap)``, or none: ``None`` when taken, else the
        key that is full."""

    async def release(self, keys: tuple[str, ...]) -> None:
        """Give back one place under each key."""

    async def beat(self, local: Counter[str], resync: list[str]) -> None:
        """Say this process is alive; rewrite its own count of each ``resync`` key."""


class MemoryBackend:
    """Counts in this process's memory (no ``REDIS_URL``: one process)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def admit(self, caps: list[tuple[str, int]]) -> str | None:
        for key, cap in caps:
            if self.counts[key] >= cap:
                return key
        for key, _ in caps:
            self.counts[key] += 1
        return None

    async def release(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self.counts[key] -= 1
            if self.counts[key] <= 0:
                del self.counts[key]

    async def beat(self, local: Counter[str], resync: list[str]) -> None:
        return None


class RedisBackend:
    """Counts in Redis, shared by every process (see the module docstring)."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis

        # Bounded waits, as the channel layer's (config/settings/base.py); one connection per
        # handshake in flight at most, and a burst of handshakes (every client of a restarted
        # process) must not queue for connections.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=1000,
            timeout=LAYER_TIMEOUT,
            socket_timeout=5,
            socket_connect_timeout=2,
            socket_keepalive=True,
            health_check_interval=15,
        )
        self.redis = Redis(connection_pool=pool)
        self.process = uuid.uuid4().hex  # a restarted process is a new one
        self.processes = f"{prefix}:caps:processes"
        self._admit = self.redis.register_script(_ADMIT)
        self._release = self.redis.register_script(_RELEASE)
        self._beat = self.redis.register_script(_BEAT)

    async def admit(self, caps: list[tuple[str, int]]) -> str | None:
        full = int(
            await self._admit(
                keys=[self.processes, *(key for key, _ in caps)],
                args=[self.process, STALE, KEY_TTL, *(cap for _, cap in caps)],
            )
        )
        return caps[full - 1][0] if full else None

    async def release(self, keys: tuple[str, ...]) -> None:
        await self._release(keys=list(keys), args=[self.process])

    async def beat(self, local: Counter[str], resync: list[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._beat(keys=[self.processes], args=[self.process], client=pipe)
            for key in resync:
                if local[key] > 0:
                    pipe.hset(key, self.process, local[key])
                    pipe.expire(key, KEY_TTL)
                else:
                    pipe.hdel(key, self.process)
            await pipe.execute()


@dataclass(eq=False)
class _State:
    """This process's (event loop's) backend, its own counts, the keys whose count in Redis
    may be wrong (a release that failed), and the heartbeat task."""

    backend: Backend
    prefix: str
    local: Counter[str] = field(default_factory=Counter)
    dirty: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    resynced_at: float = field(default_factory=time.monotonic)
    releases: set[asyncio.Task[None]] = field(default_factory=set)


# One state per event loop: a Redis connection pool is bound to its loop. daphne runs one loop.
_states: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _State]" = (
    weakref.WeakKeyDictionary()
)


def _state() -> _State:
    loop = asyncio.get_running_loop()
    state = _states.get(loop)
    if state is None:
        prefix = settings.HERALD["REDIS_PREFIX"]
        backend: Backend
        if settings.REDIS_URL:
            backend = RedisBackend(settings.REDIS_URL, prefix)
        else:
            backend = MemoryBackend()
        state = _states[loop] = _State(backend, prefix)
    return state


def client_ip(scope: dict[str, Any]) -> str | None:
    """The client address of an ASGI scope (``scope["client"]``), or ``None`` when unknown."""
    client = scope.get("client")
    return str(client[0]) if client else None


async def admit(*, user_id: int, ip: str | None) -> Admission | None:
    """Count one more open socket of ``user_id`` from ``ip``: an :class:`Admission` to
    :func:`release` when it closes, or ``None`` when the user or the IP is at its cap
    (``HERALD_WS_MAX_PER_USER``, ``HERALD_WS_MAX_PER_IP``; 0 is no cap).

    One Redis round trip with ``REDIS_URL``; raises ``LayerUnavailable`` when Redis fails or
    does not answer within ``LAYER_TIMEOUT`` s (the handshake then closes with 4503).
    """
    user_cap = int(settings.HERALD["WS_MAX_PER_USER"])
    ip_cap = int(settings.HERALD["WS_MAX_PER_IP"])
    if user_cap <= 0 and (ip_cap <= 0 or ip is None):
        return Admission(())
    state = _state()
    caps = []
    if user_cap > 0:
        caps.append((f"{state.prefix}:caps:user:{user_id}", user_cap))
    if ip_cap > 0 and ip is not None:
        caps.append((f"{state.prefix}:caps:ip:{ip}", ip_cap))
    if isinstance(state.backend, RedisBackend) and (state.task is None or state.task.done()):
        state.task = asyncio.ensure_future(_heartbeat(state))
    try:
        full = await asyncio.wait_for(state.backend.admit(caps), LAYER_TIMEOUT)
    except _ERRORS as error:
        raise LayerUnavailable(f"socket caps: {error!r}") from error
    if full is not None:
        logger.info(
            "socket refused with 4429: %s open sockets of %s",
            "user" if ":caps:user:" in full else "IP",
            "this user" if ":caps:user:" in full else ip,
        )
        return None
    keys = tuple(key for key, _ in caps)
    state.local.update(keys)
    return Admission(keys)


def release(admission: Admission | None) -> None:
    """Give back the places of a closed socket. Never waits: the Redis write runs in the
    background, and a failed one is corrected by the next heartbeat."""
    if admission is None or not admission.keys:
        return
    state = _state()
    state.local.subtract(admission.keys)
    for key in admission.keys:
        if state.local[key] <= 0:
            del state.local[key]
    task = asyncio.ensure_future(_release(state, admission.keys))
    state.releases.add(task)
    task.add_done_callback(state.releases.discard)


async def _release(state: _State, keys: tuple[str, ...]) -> None:
    try:
        await asyncio.wait_for(state.backend.release(keys), LAYER_TIMEOUT)
    except (*_ERRORS, asyncio.CancelledError):
        state.dirty.update(keys)


async def _heartbeat(state: _State) -> None:
    """Every ``BEAT`` s: mark this process alive, and rewrite the counts a failed release left
    wrong (every count of this process every ``RESYNC_EVERY`` s, which also renews their TTL)."""
    while True:
        await asyncio.sleep(BEAT)
        if time.monotonic() - state.resynced_at > RESYNC_EVERY:
            state.resynced_at = time.monotonic()
            state.dirty.update(state.local)
        resync, state.dirty = sorted(state.dirty), set()
        try:
            await asyncio.wait_for(state.backend.beat(state.local, resync), LAYER_TIMEOUT)
        except _ERRORS as error:  # Redis down or slow: expected, retried at the next beat
            state.dirty.update(resync)
            logger.warning("socket caps: heartbeat failed: %s: %s", type(error).__name__, error)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let the heartbeat die
            state.dirty.update(resync)
            logger.exception("socket caps: heartbeat failed")


async def aclose() -> None:
    """Stop this event loop's heartbeat and release its Redis connections (tests)."""
    state = _states.pop(asyncio.get_running_loop(), None)
    if state is None:
        return
    if state.task is not None:
        state.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.task
    if isinstance(state.backend, RedisBackend):
        await state.backend.redis.aclose()
