"""``make bench``: start Redis, a private database and four servers, measure W1-W5, report.

``python -m bench.run [--rounds 3] [--out bench/out]``. Servers (and Redis) run on core 0, this
client on core 1 (``sched_setaffinity``); every workload runs on every server once per round,
the server order rotated each round (A/B interleaved), and the table shows medians over the
rounds. The pool's set-up (with the subscribe rows) runs once per server; W4, the huge room,
the 10-in-flight POSTs and the sustained load run in the last round only. Server CPU comes
from ``/proc/<pid>/stat`` (utime + stime, all threads), memory from ``/proc/<pid>/status``
(VmRSS). Method and results: docs/performance.md.

Knobs, to shrink a run while developing (environment): ``BENCH_ROOM_MEMBERS`` (1000),
``BENCH_HUGE_MEMBERS`` (10000; 0 skips), ``BENCH_SUSTAIN_SECONDS`` (30 per step; 0 skips),
``BENCH_SUSTAIN_MAX`` (6400 deliveries/s), ``BENCH_POST_SECONDS`` (10).
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.seed import POOL, ROOM_SIZE
from tests.support.rig import PYTHON, ROOT, RedisServer, die_with_parent, free_port, manage, stop
from tests.support.rig import popen as rig_popen

SECRET_KEY = "herald-bench-not-a-secret-0123456789abcdefghijklmnop"
TICK = os.sysconf("SC_CLK_TCK")
W1_HANDSHAKES, W1_IN_FLIGHT = 1000, 100
W2_REPS = 5  # publishes per round and server, each to all POOL sockets
# W2 room: members of the big room subscribed (users 0..BIG-1), also the n of "subscribe n
# members to one room" vs "to n rooms of 1" and of the recovery row.
BIG = min(POOL, int(os.environ.get("BENCH_ROOM_MEMBERS", POOL)))
W4_SOCKETS = 10_000  # idle sockets per process, beside the pool of 1000
W5_SECONDS, W5_RATE = 8.0, 1.0  # each of the POOL // ROOM_SIZE rooms sends W5_RATE messages/s
HUGE = int(os.environ.get("BENCH_HUGE_MEMBERS", 10_000))  # Herald's huge room; 0: not run
N_USERS = max(POOL + W1_HANDSHAKES, POOL + W4_SOCKETS, POOL + HUGE)
RECOVERY_CPU, RECOVERY_CAP = 0.2, 60.0  # "recovered": under 20 % of a core over 0.5 s
# Sustained load: offered deliveries/s from SUSTAIN_START, doubled up to SUSTAIN_MAX, each step
# held SUSTAIN_SECONDS (0: not run); a step passes with no loss and p99 <= SUSTAIN_P99 s.
SUSTAIN_SECONDS = float(os.environ.get("BENCH_SUSTAIN_SECONDS", 30))
SUSTAIN_START, SUSTAIN_MAX = 100, int(os.environ.get("BENCH_SUSTAIN_MAX", 6400))
SUSTAIN_P99 = 1.0
POST_SECONDS, POST_IN_FLIGHT = float(os.environ.get("BENCH_POST_SECONDS", 10)), 10
TIMEOUT = 60.0  # s: a delivery that takes longer counts as lost
SERVER_CORE, CLIENT_CORE = 0, 1
KINDS = ("floor", "daphne-raw", "herald", "tutorial")
RAW = ("floor", "daphne-raw")
SUSTAIN_KINDS = ("daphne-raw", "herald", "tutorial")  # the floor serves no HTTP
SEQ = itertools.count(1000)  # the tutorial's notification seq: unique per user (W3 uses 1..3)


def _child_setup() -> None:  # between fork and exec: fd limit up, die with the parent, core 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    die_with_parent()
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {SERVER_CORE})


def popen(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``tests.support.rig.popen``, the child pinned to the server core (``_child_setup``)."""
    return rig_popen(argv, env=env, log=log, setup=_child_setup)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread, live or ended), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Servers -----------------------------------------------------------------------------------


@dataclass
class Target:
    """One server under test."""

    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    redis_pid: int
    data: dict[str, Any]
    pool: list["Conn"] = field(default_factory=list)
    control: "Conn | None" = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def ws_url(self, index: int | None) -> tuple[str, dict[str, str]]:
        """URL and headers of a socket for user ``index`` (``None``: a raw control socket)."""
        base = f"ws://127.0.0.1:{self.port}/ws/"
        if self.kind in RAW:
            return (base if index is None else f"{base}?uid={index}"), {}
        token = self.data["users"][index]["token"]
        if self.kind == "tutorial":
            return f"{base}?token={token}", {}
        return base, {"Authorization": f"Bearer {token}"}

    def user_id(self, index: int) -> int:
        return int(self.data["users"][index]["id"])


def start_redis(tmp: Path) -> RedisServer:
    """The rig's redis-server (``tests.support.rig``), on the server core, many clients."""
    return RedisServer(tmp, args=["--maxclients", "20000"], setup=_child_setup).start()


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "HERALD_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_DEBUG="0",
        HERALD_SSL_REDIRECT="0",  # plain HTTP on 127.0.0.1
        # Production settings require a Web Push key; this one signs nothing outside the run.
        HERALD_VAPID_PRIVATE_KEY="eQ5UxumAFNqdoBcAj-Puoc3TLMXX7ehJsPxjDTOPJeI",
        HERALD_VAPID_SUBJECT="mailto:bench@herald.invalid",
        HERALD_ACCESS_TOKEN_LIFETIME="7200",  # no auth.expiring mid-run
        # Thousands of sockets of few users from one address; the caps are still checked (and
        # cost their round trip), only never reached. REST rates likewise.
        HERALD_WS_MAX_PER_USER="10000000",
        HERALD_WS_MAX_PER_IP="10000000",
        HERALD_THROTTLE_MESSAGES="10000000/s",
        HERALD_THROTTLE_NOTIFICATIONS="10000000/s",
        HERALD_THROTTLE_WS_TICKETS="10000000/s",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def prepare_database(tmp: Path, redis_url: str) -> dict[str, Any]:
    db = tmp / "herald.sqlite3"
    env = base_env(DATABASE_URL=f"sqlite:///{db}", REDIS_URL=redis_url)
    started = time.monotonic()
    manage(["migrate", "--noinput", "-v", "0"], env, tmp)
    migrated = time.monotonic()
    out = tmp / "seed.json"
    subprocess.run(  # noqa: S603
        [PYTHON, "-m", "bench.seed", str(N_USERS), str(out), str(HUGE)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    print(
        f"database: migrate {migrated - started:.1f} s, {N_USERS} users + sessions + tokens "
        f"+ rooms {time.monotonic() - migrated:.1f} s",
        flush=True,
    )
    shutil.copy(db, tmp / "tutorial.sqlite3")  # the baseline writes to its own copy
    return dict(json.loads(out.read_text()))


def start_target(kind: str, tmp: Path, redis: subprocess.Popen[bytes], redis_url: str,
                 data: dict[str, Any]) -> Target:  # fmt: skip
    port = free_port()
    daphne = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    if kind == "floor":
        argv, env = [PYTHON, "-m", "bench.raw_floor", str(port)], base_env()
    elif kind == "daphne-raw":
        argv, env = [*daphne, "bench.raw_asgi:application"], base_env()
    elif kind == "herald":
        argv = [PYTHON, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port)]
        env = base_env(DATABASE_URL=f"sqlite:///{tmp / 'herald.sqlite3'}", REDIS_URL=redis_url)
    else:
        argv = [*daphne, "bench.tutorial.asgi:application"]
        env = base_env(
            DJANGO_SETTINGS_MODULE="bench.tutorial.settings",
            DATABASE_URL=f"sqlite:///{tmp / 'tutorial.sqlite3'}",
            REDIS_URL=redis_url,
        )
    log = tmp / f"{kind}.log"
    process = popen(argv, env, log)
    probe = "/readyz" if kind in ("herald", "tutorial") else "/"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited:\n{log.read_text()[-3000:]}")
        if kind == "floor":
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
        else:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=5).status_code == 200:
                    break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind} did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return Target(kind, port, process, log, redis.pid, data)


# Client --------------------------------------------------------------------------------------

Sink = Callable[["Conn", str], None]
SINK: Sink | None = None  # the running workload's receiver; one workload at a time


class Conn:
    """One client socket; every frame it receives goes to the current ``SINK``."""

    def __init__(self, index: int | None, ws: ClientConnection, hello: str) -> None:
        self.index, self.ws, self.hello = index, ws, hello
        self.task = asyncio.ensure_future(self._read())
        self.closed_by_server = False

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for text in self.ws:
                if SINK is not None:
                    SINK(self, str(text))
        self.closed_by_server = True

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()


async def open_conn(target: Target, index: int | None) -> Conn:
    url, headers = target.ws_url(index)
    ws = await connect(
        url,
        additional_headers=headers,
        compression=None,
        ping_interval=None,
        open_timeout=60,
        close_timeout=5,
        max_queue=None,
    )
    hello = await asyncio.wait_for(ws.recv(), 60)
    if '"hello"' not in str(hello):
        await ws.close()
        raise ConnectionError(f"first frame is not hello: {str(hello)[:200]}")
    return Conn(index, ws, str(hello))


async def open_many(target: Target, indexes: list[int], in_flight: int) -> tuple[list[Conn], int]:
    """Open sockets for ``indexes``, ``in_flight`` handshakes at once; ``(conns, errors)``."""
    gate = asyncio.Semaphore(in_flight)
    conns: list[Conn] = []
    errors = 0

    async def one(index: int) -> None:
        nonlocal errors
        async with gate:
            try:
                conns.append(await open_conn(target, index))
            except Exception as error:
                errors += 1
                if errors <= 3:
                    print(f"  {target.kind} handshake {index}: {error!r}"[:300], flush=True)

    await asyncio.gather(*(one(i) for i in indexes))
    return conns, errors


async def close_many(conns: list[Conn]) -> None:
    gate = asyncio.Semaphore(200)

    async def one(conn: Conn) -> None:
        async with gate:
            await conn.close()

    await asyncio.gather(*(one(c) for c in conns))


@contextlib.contextmanager
def sink(function: Sink) -> Iterator[None]:
    global SINK
    SINK = function
    try:
        yield
    finally:
        SINK = None


@dataclass
class Sample:
    """What one workload run on one server measured."""

    values: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    lost: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)  # sustained load: its steps


class Meter:
    """Server (and Redis) CPU, client CPU and wall time over a block."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def __enter__(self) -> "Meter":
        self.cpu0 = cpu_seconds(self.target.pid)
        self.redis0 = cpu_seconds(self.target.redis_pid)
        self.client0, self.wall0 = client_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server = cpu_seconds(self.target.pid) - self.cpu0
        self.redis = cpu_seconds(self.target.redis_pid) - self.redis0
        self.client = client_cpu() - self.client0
        self.wall = time.perf_counter() - self.wall0


# Workloads -------------------------------------------------------------------------------------


def is_ack(text: str) -> bool:
    return '"type":"ack"' in text or '"type": "ack"' in text


async def subscribe_many(target: Target, pairs: list[tuple[Conn, int]],
                         op: str = "subscribe") -> tuple[Meter, int, float, float]:  # fmt: skip
    """Send ``op`` (raw servers: ``join``) for every ``(conn, room)`` at once, wait for the acks.

    ``(meter, acks, seconds to the last ack, recovery seconds)``; the meter runs until the server
    is idle again, so the burst's trailing work (Herald's presence windows) counts. Every other
    frame (``presence``, its diffs) is ignored. Gives up after 60 s without an ack.
    """
    acks = 0
    done = asyncio.Event()

    def on_frame(conn: Conn, text: str) -> None:
        nonlocal acks
        if is_ack(text):
            acks += 1
            if acks >= len(pairs):
                done.set()

    with sink(on_frame), Meter(target) as meter:
        for conn, room in pairs:
            if target.kind in RAW:
                await conn.send({"op": "join", "room": room})
            else:
                await conn.send({"type": op, "room": room, "ref": room})
        if acks >= len(pairs):
            done.set()
        await settle(done, lambda: acks, 60.0)
        acked = time.perf_counter() - meter.wall0
        recovered = await recovery(target)
        await drain(target)
    return meter, acks, acked, recovered


async def recovery(target: Target) -> float:
    """Seconds until a 0.5 s sample of the server's CPU starts under RECOVERY_CPU of a core
    (0: it already was); at most RECOVERY_CAP."""
    started = time.perf_counter()
    while time.perf_counter() - started < RECOVERY_CAP:
        begin, cpu = time.perf_counter(), cpu_seconds(target.pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(target.pid) - cpu < RECOVERY_CPU * (time.perf_counter() - begin):
            return round(begin - started, 1)
    return RECOVERY_CAP


async def setup_pool(target: Target) -> tuple[dict[str, float], Sample]:
    """POOL sockets (users 0..POOL-1), each subscribed to its small room; then the first BIG
    subscribe to their rooms of 1 (Herald: unsubscribed again) and to the big room, measured."""
    started = time.perf_counter()
    target.pool, errors = await open_many(target, list(range(POOL)), W1_IN_FLIGHT)
    for _ in range(3):  # set-up, not measured: retry what timed out, fewer at once
        missing = sorted(set(range(POOL)) - {c.index for c in target.pool})
        if not missing:
            break
        more, _errors = await open_many(target, missing, 10)
        target.pool += more
    if len(target.pool) != POOL:
        raise RuntimeError(f"{target.kind}: {POOL - len(target.pool)} pool handshakes failed")
    target.pool.sort(key=lambda c: c.index or 0)
    if target.kind in RAW:
        target.control = await open_conn(target, None)
    rooms, solos = target.data["rooms"], target.data["solo_rooms"]
    opened = time.perf_counter()
    pool, acks, _, _ = await subscribe_many(
        target, [(c, rooms[(c.index or 0) // ROOM_SIZE]) for c in target.pool]
    )
    if acks < POOL:
        raise RuntimeError(f"{target.kind}: {POOL - acks} small-room subscriptions not acked")
    members = target.pool[:BIG]
    solo_pairs = [(c, solos[c.index or 0]) for c in members]
    solo, solo_acks, solo_s, _ = await subscribe_many(target, solo_pairs)
    if target.kind == "herald":  # no presence upkeep for the rooms of 1 in later workloads
        await subscribe_many(target, solo_pairs, "unsubscribe")
    one, one_acks, one_s, recovered = await subscribe_many(
        target, [(c, target.data["big_room"]) for c in members]
    )
    if one_acks < BIG:
        raise RuntimeError(f"{target.kind}: {BIG - one_acks} big-room subscriptions not acked")
    setup = {
        "pool_open_errors": errors,
        "pool_open_s": opened - started,
        "pool_subscribe_s": pool.wall,
        "pool_subscribe_cpu_s": pool.server,
    }
    sample = Sample(
        {
            "sub_one_cpu_ms": 1000 * one.server,
            "sub_solo_cpu_ms": 1000 * solo.server,
            "sub_one_vs_solo": one.server / solo.server if solo.server else float("nan"),
            "sub_one_s": one_s,
            "sub_solo_s": solo_s,
            "recovery_s": recovered,
        },
        errors=BIG - solo_acks,
    )
    return setup, sample


async def drain(target: Target, quiet: float = 0.5) -> None:
    """Wait until the server has been idle for ``quiet`` s."""
    last = cpu_seconds(target.pid)
    while True:
        await asyncio.sleep(quiet)
        now = cpu_seconds(target.pid)
        if now - last < 0.02:
            return
        last = now


async def settle(done: asyncio.Event, progress: Callable[[], int], stall: float = 3.0) -> None:
    """Wait for ``done``; give up after ``stall`` s without progress (the rest is lost)."""
    last, since = progress(), time.perf_counter()
    while not done.is_set() and time.perf_counter() - since < stall:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.25)
        if progress() != last:
            last, since = progress(), time.perf_counter()


async def send_message(target: Target, conn: Conn, room: int, body: str) -> None:
    """A chat message from ``conn`` to ``room`` (Herald: ``message.send``; the raw servers' ``msg``)."""
    if target.kind in RAW:
        await conn.send({"op": "msg", "room": room, "body": body})
    else:
        kind = "message.send" if target.kind == "herald" else "message"
        await conn.send({"type": kind, "room": room, "body": body, "client_id": str(uuid.uuid4())})


async def post_one(target: Target, http: httpx.AsyncClient, index: int, mark: str) -> bool:
    """One stored notification titled ``mark`` to pool user ``index``: Herald's ``POST
    /api/notifications/``, the tutorial's ``/notify-each/``, daphne-raw's ``/notify/``."""
    if target.kind == "herald":
        path = "api/notifications/"
        body: dict[str, Any] = {"recipients": [target.user_id(index)], "title": mark, "body": "b"}
    elif target.kind == "tutorial":
        path = "notify-each/"
        body = {"recipients": [target.user_id(index)], "title": mark, "seq": next(SEQ)}
    else:
        path, body = "notify/", {"recipients": [index], "title": mark}
    try:
        answer = await http.post(f"http://127.0.0.1:{target.port}/{path}", json=body)
    except httpx.HTTPError:
        return False
    return answer.status_code == 201


async def w1_handshakes(target: Target) -> Sample:
    indexes = list(range(POOL, POOL + W1_HANDSHAKES))
    with Meter(target) as meter:
        conns, errors = await open_many(target, indexes, W1_IN_FLIGHT)
    await close_many(conns)
    await drain(target)
    return Sample(
        {
            "w1_rate": W1_HANDSHAKES / meter.wall,
            "w1_cpu_ms": 1000 * meter.server / W1_HANDSHAKES,
        },
        errors=errors,
    )


async def fanout(target: Target, mode: str, mark: str, expected: int,
                 http: httpx.AsyncClient, batch: int) -> tuple[list[float], Meter, int, int]:  # fmt: skip
    """Trigger one fan-out; ``(latency of each delivery, meter, delivered, stored)``."""
    arrivals: dict[int, float] = {}
    done = asyncio.Event()
    duplicates = 0

    def on_frame(conn: Conn, text: str) -> None:
        nonlocal duplicates
        if mark in text and '"type":"ack"' not in text:  # the sender's ack echoes the body
            if conn.index in arrivals:
                duplicates += 1
            arrivals[conn.index or 0] = time.perf_counter()
            if len(arrivals) >= expected:
                done.set()

    big = target.data["big_room"]
    users = [target.user_id(i) for i in range(POOL)]
    stored = 0
    with sink(on_frame), Meter(target) as meter:
        t0 = time.perf_counter()
        if mode == "room":
            await send_message(target, target.pool[0], big, mark)
        elif target.kind in RAW:
            assert target.control is not None
            await target.control.send({"op": "bcast" if mode == "notify" else "each", "mark": mark})
        elif target.kind == "herald":
            answer = await http.post(
                f"http://127.0.0.1:{target.port}/api/notifications/",
                json={"recipients": users, "title": mark, "body": "bench"},
            )
            if answer.status_code != 201:
                raise RuntimeError(f"herald notify: {answer.status_code} {answer.text[:300]}")
            stored = int(answer.json()["count"])
        else:
            path = "broadcast/" if mode == "notify" else "notify-each/"
            answer = await http.post(
                f"http://127.0.0.1:{target.port}/{path}",
                json={"recipients": users, "title": mark, "seq": batch},
            )
            if answer.status_code != 201:
                raise RuntimeError(f"tutorial {mode}: {answer.status_code} {answer.text[:300]}")
            stored = int(answer.json()["count"]) if mode == "each" else 0
        await settle(done, lambda: len(arrivals))
        await drain(target, 0.3)
    return [t - t0 for t in arrivals.values()], meter, len(arrivals) + duplicates, stored


async def w2(target: Target, mode: str, http: httpx.AsyncClient, round_no: int) -> Sample:
    latencies: list[float] = []
    lost = errors = 0
    server = client = 0.0
    lasts = []
    for rep in range(W2_REPS):
        mark = f"w2{mode}-{round_no}-{rep}-{uuid.uuid4().hex[:8]}"
        expected = BIG if mode == "room" else POOL
        lat, meter, delivered, _ = await fanout(target, mode, mark, expected, http, 0)
        latencies += lat
        lasts.append(max(lat) if lat else TIMEOUT)
        lost += max(0, expected - delivered)
        errors += max(0, delivered - expected)  # duplicates
        server += meter.server
        client += meter.client
    frames = W2_REPS * (BIG if mode == "room" else POOL)
    return Sample(
        {
            f"w2{mode}_p50_ms": 1000 * pct(latencies, 50),
            f"w2{mode}_p99_ms": 1000 * pct(latencies, 99),
            f"w2{mode}_last_ms": 1000 * statistics.median(lasts),
            f"w2{mode}_us_frame": 1e6 * server / frames,
            f"w2{mode}_client_us_frame": 1e6 * client / frames,
        },
        errors=errors,
        lost=lost,
    )


async def w3(target: Target, http: httpx.AsyncClient, round_no: int) -> Sample:
    mark = f"w3-{round_no}-{uuid.uuid4().hex[:8]}"
    lat, meter, delivered, stored = await fanout(target, "each", mark, POOL, http, round_no + 1)
    if target.kind in RAW:
        stored = POOL  # nothing to store: count as stored
    return Sample(
        {
            "w3_p50_ms": 1000 * pct(lat, 50),
            "w3_p99_ms": 1000 * pct(lat, 99),
            "w3_stored": stored,
            "w3_delivered": delivered,
            "w3_us_frame": 1e6 * meter.server / POOL,
        },
        errors=max(0, delivered - POOL) + (POOL - stored),
        lost=max(0, POOL - delivered),
    )


async def w4(target: Target) -> Sample:
    await drain(target)
    before = rss_bytes(target.pid)
    indexes = list(range(POOL, POOL + W4_SOCKETS))
    conns, errors = await open_many(target, indexes, W1_IN_FLIGHT)
    await drain(target, 1.0)
    after = rss_bytes(target.pid)
    await close_many(conns)
    await drain(target)
    return Sample({"w4_kb_socket": (after - before) / 1024 / W4_SOCKETS}, errors=errors)


async def w5(target: Target) -> Sample:
    """Every small room's first member sends W5_RATE messages/s; round trip to its own copy."""
    rooms = target.data["rooms"]
    counts: dict[str, int] = {}
    sent_at: dict[str, float] = {}
    rtts: list[float] = []
    pattern = re.compile(r"w5#(\d+-\d+)#")

    def on_frame(conn: Conn, text: str) -> None:
        found = pattern.search(text)
        if found is None or ('"type":"message"' not in text and '"type": "message"' not in text):
            return
        key = found.group(1)
        counts[key] = counts.get(key, 0) + 1
        if conn.index == int(key.split("-")[0]) * ROOM_SIZE:
            rtts.append(time.perf_counter() - sent_at[key])

    async def sender(room_index: int) -> int:
        conn = target.pool[room_index * ROOM_SIZE]
        await asyncio.sleep(room_index / len(rooms) / W5_RATE)  # spread the sends
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < W5_SECONDS:
            key = f"{room_index}-{n}"
            body = f"w5#{key}#"
            sent_at[key] = time.perf_counter()
            await send_message(target, conn, rooms[room_index], body)
            n += 1
            await asyncio.sleep(max(0.0, start + n / W5_RATE - time.perf_counter()))
        return n

    with sink(on_frame), Meter(target) as meter:
        sent = sum(await asyncio.gather(*(sender(i) for i in range(len(rooms)))))
        done = asyncio.Event()
        if sum(counts.values()) >= sent * ROOM_SIZE:
            done.set()
        await settle(done, lambda: sum(counts.values()))
    delivered = sum(counts.values())
    return Sample(
        {
            "w5_p50_ms": 1000 * pct(rtts, 50),
            "w5_p99_ms": 1000 * pct(rtts, 99),
            "w5_msgs_s": sent / W5_SECONDS,
            "w5_cpu_pct": 100 * meter.server / meter.wall,
            "w5_client_cpu_pct": 100 * meter.client / meter.wall,
        },
        errors=max(0, delivered - sent * ROOM_SIZE),
        lost=max(0, sent * ROOM_SIZE - delivered),
    )


async def huge_room(target: Target) -> Sample:
    """HUGE more sockets (users POOL..POOL+HUGE-1), then all subscribe at once to the room whose
    members they are (Herald only; last round)."""
    with Meter(target) as opening:
        conns, open_errors = await open_many(target, list(range(POOL, POOL + HUGE)), W1_IN_FLIGHT)
    meter, acks, acked, _ = await subscribe_many(
        target, [(c, target.data["huge_room"]) for c in conns]
    )
    errors = open_errors + len(conns) - acks
    await close_many(conns)
    await drain(target)
    return Sample(
        {
            "huge_open_s": opening.wall,
            "huge_sub_s": acked,
            "huge_sub_cpu_s": meter.server,
            "huge_sub_redis_cpu_s": meter.redis,
            "huge_errors": errors,
        },
        errors=errors,
    )


class Tracker:
    """Frames marked ``~<tag>-<n>~``: when each ``n`` was due, copies still due, the latencies."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.pattern = re.compile(rf"~{self.tag}-(\d+)~")
        self.due: dict[int, list[float]] = {}  # n -> [due at, copies not yet delivered]
        self.latencies: list[float] = []
        self.errors = self.extra = 0
        self.last = 0.0  # the latest delivery
        self.done = asyncio.Event()

    def mark(self, n: int) -> str:
        return f"~{self.tag}-{n}~"

    def expect(self, n: int, at: float, copies: int) -> None:
        self.due[n] = [at, copies]

    def fail(self, n: int) -> None:  # the request failed: an error, not a loss
        if self.due.pop(n, None) is not None:
            self.errors += 1

    def on_frame(self, conn: Conn, text: str) -> None:
        found = self.pattern.search(text)
        if found is None or is_ack(text):  # Herald's ack to the sender echoes the body
            return
        n = int(found.group(1))
        entry = self.due.get(n)
        if entry is None:
            self.extra += 1
            return
        self.last = time.perf_counter()
        self.latencies.append(self.last - entry[0])
        entry[1] -= 1
        if not entry[1]:
            del self.due[n]
            if not self.due:
                self.done.set()

    def late(self, limit: float) -> int:
        """Copies due more than ``limit`` s ago and not delivered yet."""
        now = time.perf_counter()
        return int(sum(e[1] for e in self.due.values() if now - e[0] > limit))

    def lost(self) -> int:
        return int(sum(e[1] for e in self.due.values()))

    async def finish(self) -> None:
        """Wait for what is still due; give up after 3 s without a delivery (``settle``)."""
        self.done.clear()
        if not self.due:
            self.done.set()
        await settle(self.done, lambda: len(self.latencies))


async def post_in_flight(target: Target, http: httpx.AsyncClient) -> Sample:
    """POST_IN_FLIGHT workers, each posting one single-recipient notification after the other
    (users in turn) for POST_SECONDS; deliveries/s, request → delivery latency."""
    tracker, counter = Tracker(), itertools.count()

    async def worker() -> None:
        while time.perf_counter() - start < POST_SECONDS:
            n = next(counter)
            tracker.expect(n, time.perf_counter(), 1)
            if not await post_one(target, http, n % POOL, tracker.mark(n)):
                tracker.fail(n)

    with sink(tracker.on_frame), Meter(target) as meter:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(POST_IN_FLIGHT)))
        await tracker.finish()
    await drain(target)
    delivered = len(tracker.latencies)
    return Sample(
        {
            "post_rate": delivered / max(tracker.last - start, 1e-9),
            "post_p99_ms": 1000 * pct(tracker.latencies, 99),
            "post_cpu_ms": 1000 * meter.server / max(delivered, 1),
            "post_cpu_pct": 100 * meter.server / meter.wall,
            "post_redis_cpu_pct": 100 * meter.redis / meter.wall,
            "post_client_cpu_pct": 100 * meter.client / meter.wall,
        },
        errors=tracker.errors + tracker.extra,
        lost=tracker.lost(),
    )


async def sustain_step(target: Target, mode: str, rate: float,
                       http: httpx.AsyncClient) -> dict[str, float]:  # fmt: skip
    """Offer ``rate`` deliveries/s for SUSTAIN_SECONDS, open loop: each send at its due time.

    ``notify``: one single-recipient notification per delivery, pool users in turn (one task
    per request, so a slow server does not slow the offer). ``room``: one ``message.send`` per
    ROOM_SIZE deliveries, from the pool's members in turn, spread over the rooms of 10.
    Latency = due time → delivery. The step stops early, failed, once more than 1 % of its
    deliveries are over SUSTAIN_P99 late (its p99 can no longer pass).
    """
    copies = 1 if mode == "notify" else ROOM_SIZE
    sends = max(1, int(rate * SUSTAIN_SECONDS) // copies)
    rooms = target.data["rooms"]
    tracker = Tracker()
    tasks: set[asyncio.Task[None]] = set()
    aborted = False

    async def post(n: int) -> None:
        if not await post_one(target, http, n % POOL, tracker.mark(n)):
            tracker.fail(n)

    with sink(tracker.on_frame), Meter(target) as meter:
        start = check = time.perf_counter()
        for n in range(sends):
            due = start + n * copies / rate
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            elif n % 20 == 0:
                await asyncio.sleep(0)  # behind: still let the readers run
            if time.perf_counter() > check:
                check = time.perf_counter() + 0.25
                if tracker.late(SUSTAIN_P99) > 0.01 * sends * copies:
                    aborted = True
                    break
            tracker.expect(n, due, copies)
            if mode == "notify":
                task = asyncio.ensure_future(post(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                member = (n * ROOM_SIZE) % POOL + (n * ROOM_SIZE // POOL) % ROOM_SIZE
                conn = target.pool[member]
                await send_message(target, conn, rooms[member // ROOM_SIZE], tracker.mark(n))
        if tasks:
            await asyncio.wait(tasks)
        await tracker.finish()
    await drain(target)
    lost = tracker.lost()
    p99 = pct(tracker.latencies, 99)
    ok = not (aborted or lost or tracker.errors or tracker.extra) and p99 <= SUSTAIN_P99
    return {
        "rate": rate,
        "ok": float(ok),
        "aborted": float(aborted),
        "p50_ms": 1000 * pct(tracker.latencies, 50),
        "p99_ms": 1000 * p99,
        "delivered_s": len(tracker.latencies) / max(tracker.last - start, 1e-9),
        "lost": lost,
        "errors": tracker.errors + tracker.extra,
        "server_cpu_pct": 100 * meter.server / meter.wall,
        "client_cpu_pct": 100 * meter.client / meter.wall,
        "seconds": meter.wall,
    }


async def sustain(target: Target, mode: str, http: httpx.AsyncClient) -> Sample:
    """Step the offered rate up from SUSTAIN_START (x2 per step, at most SUSTAIN_MAX); the
    highest passing step, stopping at the first failing one. A failing step's errors and
    losses are the measurement, so they are in the curve, not in the errors/lost rows."""
    best, rate, curve = 0.0, SUSTAIN_START, []
    while rate <= SUSTAIN_MAX:
        step = await sustain_step(target, mode, rate, http)
        curve.append(step)
        print(f"  sustain {mode} {target.kind} {rate}/s: {step}", flush=True)
        if not step["ok"]:
            break
        best, rate = rate, rate * 2
    return Sample({f"sus_{mode}_rate": best}, curve=curve)


# Report ----------------------------------------------------------------------------------------

ROWS = [  # key, label, higher is better
    ("w1_rate", "W1 handshakes/s (1000, 100 in flight)", True),
    ("w1_cpu_ms", "W1 server CPU ms per handshake", False),
    ("w2notify_us_frame", "W2 notify: server CPU µs per delivered frame", False),
    ("w2notify_p50_ms", "W2 notify to 1000: p50 ms", False),
    ("w2notify_p99_ms", "W2 notify to 1000: p99 ms", False),
    ("w2room_us_frame", "W2 room: server CPU µs per delivered frame", False),
    ("w2room_p50_ms", f"W2 room of {BIG}: p50 ms", False),
    ("w2room_p99_ms", f"W2 room of {BIG}: p99 ms", False),
    ("w3_p50_ms", "W3 1000 per-user: p50 ms", False),
    ("w3_p99_ms", "W3 1000 per-user: p99 ms", False),
    ("w3_us_frame", "W3 server CPU µs per notification", False),
    ("w3_stored", "W3 stored", True),
    ("w3_delivered", "W3 delivered", True),
    ("w4_kb_socket", f"W4 idle KiB per socket ({W4_SOCKETS})", False),
    ("w5_p50_ms", "W5 chat round trip p50 ms (100 rooms x 10)", False),
    ("w5_p99_ms", "W5 chat round trip p99 ms", False),
    ("w5_cpu_pct", "W5 server CPU % of a core", False),
    ("sub_one_cpu_ms", f"subscribe {BIG} members to one room: server CPU ms", False),
    ("sub_solo_cpu_ms", f"subscribe {BIG} members to {BIG} rooms of 1: server CPU ms", False),
    ("sub_one_vs_solo", "one room ÷ rooms of 1, server CPU (target ≤ 2)", False),
    ("recovery_s", f"recovery after {BIG} join one room: s to < 20 % CPU", False),
    ("huge_open_s", f"room of {HUGE}: open {HUGE} sockets, s", False),
    ("huge_sub_s", f"room of {HUGE}: all subscribe, s to the last ack", False),
    ("huge_sub_cpu_s", f"room of {HUGE}: subscribe server CPU s", False),
    ("huge_errors", f"room of {HUGE}: errors", False),
    ("post_rate", f"single-recipient POST, {POST_IN_FLIGHT} in flight: delivered/s", True),
    ("post_p99_ms", f"single-recipient POST, {POST_IN_FLIGHT} in flight: p99 ms", False),
    ("sus_notify_rate", f"sustained notifications: highest rate kept, /s (≤ {SUSTAIN_MAX})", True),
    ("sus_room_rate", f"sustained room messages: highest rate kept, /s (≤ {SUSTAIN_MAX})", True),
    ("errors", "errors (sum)", False),
    ("lost", "lost frames (sum)", False),
]


def table(results: dict[str, dict[str, list[float]]]) -> str:
    def med(kind: str, key: str) -> float:  # errors and lost: the sum over every workload
        values = results[kind].get(key, [])
        if not values:
            return float("nan")
        return sum(values) if key in ("errors", "lost") else statistics.median(values)

    def fmt(value: float) -> str:
        if value != value:
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"

    def ratio(a: float, b: float) -> str:
        return "-" if not b or a != a or b != b else f"{a / b:.2f}"

    lines = [
        "| metric | floor | daphne-raw | herald | tutorial | herald/daphne-raw | herald/floor "
        "| tutorial/herald |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label, _ in ROWS:
        values = [med(kind, key) for kind in KINDS]
        if all(v != v for v in values):
            continue
        floor, raw, herald, tutorial = values
        lines.append(
            f"| {label} | {' | '.join(fmt(v) for v in values)} | {ratio(herald, raw)} "
            f"| {ratio(herald, floor)} | {ratio(tutorial, herald)} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, list[float]]],
         curves: dict[str, dict[str, list[dict[str, float]]]], path: Path) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("w1_rate", "W1 handshakes/s"),
        ("w2notify_us_frame", "W2 notify: CPU µs/frame"),
        ("w2room_us_frame", "W2 room: CPU µs/frame"),
        ("w2notify_p99_ms", "W2 notify to 1000: p99 ms"),
        ("w2room_p99_ms", f"W2 room of {BIG}: p99 ms"),
        ("w3_p99_ms", "W3 per-user x1000: p99 ms"),
        ("w4_kb_socket", "W4 idle KiB/socket"),
        ("w5_p99_ms", "W5 chat RTT p99 ms"),
        ("sub_one_vs_solo", f"subscribe {BIG}: one room ÷ rooms of 1, CPU"),
        ("post_rate", f"POST x1, {POST_IN_FLIGHT} in flight: delivered/s"),
    ]
    fig, axes = plt.subplots(3, 4, figsize=(16, 10.5))
    colors = ["#888888", "#4c72b0", "#55a868", "#c44e52"]
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        values = [statistics.median(results[k][key]) if results[k].get(key) else 0.0 for k in KINDS]
        ax.bar(KINDS, values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
        if values and max(values) > 20 * max(min((v for v in values if v > 0), default=0), 1e-9):
            ax.set_yscale("log")
        if key == "sub_one_vs_solo":
            ax.axhline(2, color="k", linewidth=0.5, linestyle="--")  # the target
    for ax, mode in zip(axes.flat[len(panels) :], ("notify", "room"), strict=True):
        for kind, color in zip(KINDS, colors, strict=True):
            steps = curves.get(kind, {}).get(mode, [])
            if not steps:
                continue
            rates = [s["rate"] for s in steps]
            ax.plot(rates, [s["p99_ms"] for s in steps], "o-", color=color, label=kind)
            failed = [s for s in steps if not s["ok"]]
            ax.plot([s["rate"] for s in failed], [s["p99_ms"] for s in failed], "x", color="k")
        ax.axhline(1000 * SUSTAIN_P99, color="k", linewidth=0.5, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        rates = [r for r in (SUSTAIN_START * 2**i for i in range(20)) if r <= SUSTAIN_MAX]
        ax.set_xticks(rates, [str(r) for r in rates], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("offered deliveries/s", fontsize=8)
        ax.set_title(f"sustained {mode}: p99 ms (x: failed step)", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Herald vs raw floor, daphne + raw ASGI, tutorial Channels (medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


# Main ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    redis = start_redis(tmp)
    redis_url = redis.url
    assert redis.process is not None
    processes = [redis.process]
    try:
        data = prepare_database(tmp, redis_url)
        targets = []
        for kind in args.kinds:
            target = start_target(kind, tmp, redis.process, redis_url, data)
            processes.append(target.process)
            targets.append(target)
        print("servers: " + ", ".join(f"{t.kind} pid {t.pid} :{t.port}" for t in targets))
        results: dict[str, dict[str, list[float]]] = {k: {} for k in KINDS}
        setup: dict[str, dict[str, float]] = {}
        curves: dict[str, dict[str, list[dict[str, float]]]] = {k: {} for k in KINDS}

        def record(kind: str, sample: Sample, name: str = "") -> None:
            for key, value in sample.values.items():
                results[kind].setdefault(key, []).append(value)
            results[kind].setdefault("errors", []).append(sample.errors)
            results[kind].setdefault("lost", []).append(sample.lost)
            if sample.curve:
                curves[kind][name] = sample.curve

        for target in targets:
            setup[target.kind], sample = await setup_pool(target)
            record(target.kind, sample)
            shown = {k: round(v, 3) for k, v in sample.values.items()}
            print(f"pool {target.kind}: {setup[target.kind]} {shown}", flush=True)
        if args.hold:
            print(f"holding; data in {tmp}/seed.json", flush=True)
            await asyncio.sleep(3600)
        service = {"Authorization": f"Bearer {data['service']['token']}"}
        async with httpx.AsyncClient(headers=service, timeout=TIMEOUT) as http:
            for round_no in range(args.rounds):
                shift = round_no % len(targets)
                order = targets[shift:] + targets[:shift]
                steps: list[tuple[str, Callable[[Target], Awaitable[Sample]], tuple[str, ...]]]
                steps = [
                    ("W1", w1_handshakes, KINDS),
                    ("W2 notify", lambda t, r=round_no: w2(t, "notify", http, r), KINDS),
                    ("W2 room", lambda t, r=round_no: w2(t, "room", http, r), KINDS),
                    ("W3", lambda t, r=round_no: w3(t, http, r), KINDS),
                    ("W5", w5, KINDS),
                ]
                if round_no == args.rounds - 1:  # once: the last round
                    steps.append(("W4", w4, KINDS))
                    steps.append(("POST x10", lambda t: post_in_flight(t, http), SUSTAIN_KINDS))
                    if SUSTAIN_SECONDS:
                        for mode in ("notify", "room"):
                            steps.append(
                                (mode, lambda t, m=mode: sustain(t, m, http), SUSTAIN_KINDS)
                            )
                    if HUGE:  # last: 10 000 sockets opened and closed leave the most behind
                        steps.append(("huge room", huge_room, ("herald",)))
                for name, step, kinds in steps:
                    for target in order:  # interleaved: each workload on every server in turn
                        if target.kind not in kinds:
                            continue
                        started = time.perf_counter()
                        sample = await step(target)
                        record(target.kind, sample, name)
                        shown = {k: round(v, 3) for k, v in sample.values.items()}
                        print(
                            f"round {round_no + 1} {name:9} {target.kind:10} "
                            f"{time.perf_counter() - started:5.1f} s errors={sample.errors} "
                            f"lost={sample.lost} {shown}",
                            flush=True,
                        )
        for target in targets:
            if target.process.poll() is not None:
                raise RuntimeError(f"{target.kind} died:\n{target.log.read_text()[-3000:]}")
        for target in targets:
            results[target.kind]["rss_mib_end"] = [rss_bytes(target.pid) / 2**20]
        return {"results": results, "setup": setup, "curves": curves}
    finally:
        for process in reversed(processes):
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--keep", action="store_true", help="keep the server logs")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--hold", action="store_true", help="stop after the pools, keep running")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        os.sched_setaffinity(0, {CLIENT_CORE})
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    started = time.monotonic()
    load = os.getloadavg()
    try:
        report = asyncio.run(run(args, tmp))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}")
    args.out.mkdir(parents=True, exist_ok=True)
    report.update(
        rounds=args.rounds,
        seconds=time.monotonic() - started,
        load_before=load,
        load_after=os.getloadavg(),
        cpus=os.cpu_count(),
    )
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    text = table(report["results"])
    (args.out / "results.md").write_text(text + "\n")
    plot(report["results"], report["curves"], args.out / "performance.png")
    print()
    print(text)
    print(
        f"\n{args.rounds} rounds in {report['seconds']:.0f} s; load average before "
        f"{load[0]:.2f}, after {report['load_after'][0]:.2f}; "
        f"results, table and plot in {args.out}/"
    )
    bad = sum(
        sum(report["results"][k]["errors"]) + sum(report["results"][k]["lost"]) for k in ("herald",)
    )
    if bad:
        print(f"herald: {bad} errors or lost frames", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
