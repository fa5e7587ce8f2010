"""``make bench``: start Redis, a private database and four servers, measure W1-W5, report.

``python -m bench.run [--rounds 3] [--out bench/out]``. Servers (and Redis) run on core 0, this
client on core 1 (``sched_setaffinity``); every workload runs on every server once per round,
the server order rotated each round (A/B interleaved), and the table shows medians over the
rounds. Server CPU comes from ``/proc/<pid>/stat`` (utime + stime, all threads), memory from
``/proc/<pid>/status`` (VmRSS). Method and results: docs/performance.md.
"""

import argparse
import asyncio
import contextlib
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
N_USERS = 6000
W1_HANDSHAKES, W1_IN_FLIGHT = 1000, 100
W2_REPS = 5  # publishes per round and server, each to all POOL sockets
# W2 room: members subscribed. Not 1000: Herald announces each subscriber to every member
# already there (presence), n^2/2 frames, and 1000 did not subscribe within 10 minutes
# (docs/performance.md). BENCH_ROOM_MEMBERS=1000 runs the size.
BIG = int(os.environ.get("BENCH_ROOM_MEMBERS", 300))
W4_SOCKETS = 5000
W5_SECONDS, W5_RATE = 8.0, 1.0  # each of the POOL // ROOM_SIZE rooms sends W5_RATE messages/s
TIMEOUT = 60.0  # s: a delivery that takes longer counts as lost
SERVER_CORE, CLIENT_CORE = 0, 1
KINDS = ("floor", "daphne-raw", "herald", "tutorial")


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
        if self.kind in ("floor", "daphne-raw"):
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
        HERALD_ACCESS_TOKEN_LIFETIME="7200",  # no auth.expiring mid-run
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
        [PYTHON, "-m", "bench.seed", str(N_USERS), str(out)], cwd=ROOT, env=env, check=True
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


async def setup_pool(target: Target) -> dict[str, float]:
    """POOL sockets (users 0..POOL-1), each subscribed to the big room and its small room."""
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
    if target.kind in ("floor", "daphne-raw"):
        target.control = await open_conn(target, None)
    acks: dict[int, int] = {}
    done = asyncio.Event()

    def on_frame(conn: Conn, text: str) -> None:
        if '"type":"ack"' in text or '"type": "ack"' in text:
            acks[conn.index or 0] = acks.get(conn.index or 0, 0) + 1
            if len(acks) == POOL and sum(acks.values()) >= POOL + BIG:
                done.set()

    big, rooms = target.data["big_room"], target.data["rooms"]
    with sink(on_frame), Meter(target) as meter:
        for conn in target.pool:
            room = rooms[(conn.index or 0) // ROOM_SIZE]
            for r in (big, room) if (conn.index or 0) < BIG else (room,):
                if target.kind in ("floor", "daphne-raw"):
                    await conn.send({"op": "join", "room": r})
                else:
                    await conn.send({"type": "subscribe", "room": r, "ref": r})
        try:
            await asyncio.wait_for(done.wait(), 300)
        except TimeoutError:
            raise RuntimeError(f"{target.kind}: subscriptions not acknowledged in 300 s") from None
        # Herald: presence frames of the subscriptions are still flowing; let them drain.
        await drain(target)
    return {
        "pool_open_errors": errors,
        "pool_open_s": meter.wall0 - started,
        "pool_subscribe_s": meter.wall,
        "pool_subscribe_cpu_s": meter.server,
    }


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
            sender = target.pool[0]
            if target.kind in ("floor", "daphne-raw"):
                await sender.send({"op": "msg", "room": big, "body": mark})
            elif target.kind == "herald":
                await sender.send(
                    {
                        "type": "message.send",
                        "room": big,
                        "body": mark,
                        "client_id": str(uuid.uuid4()),
                    }
                )
            else:
                await sender.send(
                    {"type": "message", "room": big, "body": mark, "client_id": str(uuid.uuid4())}
                )
        elif target.kind in ("floor", "daphne-raw"):
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
    if target.kind in ("floor", "daphne-raw"):
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
            if target.kind in ("floor", "daphne-raw"):
                await conn.send({"op": "msg", "room": rooms[room_index], "body": body})
            else:
                kind = "message.send" if target.kind == "herald" else "message"
                await conn.send(
                    {
                        "type": kind,
                        "room": rooms[room_index],
                        "body": body,
                        "client_id": str(uuid.uuid4()),
                    }  # fmt: skip
                )
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
    ("w4_kb_socket", "W4 idle KiB per socket (5000)", False),
    ("w5_p50_ms", "W5 chat round trip p50 ms (100 rooms x 10)", False),
    ("w5_p99_ms", "W5 chat round trip p99 ms", False),
    ("w5_cpu_pct", "W5 server CPU % of a core", False),
    ("errors", "errors (sum)", False),
    ("lost", "lost frames (sum)", False),
]


def table(results: dict[str, dict[str, list[float]]]) -> str:
    def med(kind: str, key: str) -> float:
        values = results[kind].get(key, [])
        return statistics.median(values) if values else float("nan")

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


def plot(results: dict[str, dict[str, list[float]]], path: Path) -> None:
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
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    colors = ["#888888", "#4c72b0", "#55a868", "#c44e52"]
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        values = [statistics.median(results[k][key]) if results[k].get(key) else 0.0 for k in KINDS]
        ax.bar(KINDS, values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
        if values and max(values) > 20 * max(min(v for v in values if v > 0), 1e-9):
            ax.set_yscale("log")
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

        def record(kind: str, sample: Sample) -> None:
            for key, value in sample.values.items():
                results[kind].setdefault(key, []).append(value)
            results[kind].setdefault("errors", []).append(sample.errors)
            results[kind].setdefault("lost", []).append(sample.lost)

        for target in targets:
            setup[target.kind] = await setup_pool(target)
            print(f"pool {target.kind}: {setup[target.kind]}", flush=True)
        if args.hold:
            print(f"holding; data in {tmp}/seed.json", flush=True)
            await asyncio.sleep(3600)
        service = {"Authorization": f"Bearer {data['service']['token']}"}
        async with httpx.AsyncClient(headers=service, timeout=TIMEOUT) as http:
            for round_no in range(args.rounds):
                shift = round_no % len(targets)
                order = targets[shift:] + targets[:shift]
                steps: list[tuple[str, Callable[[Target], Awaitable[Sample]]]] = [
                    ("W1", w1_handshakes),
                    ("W2 notify", lambda t, r=round_no: w2(t, "notify", http, r)),
                    ("W2 room", lambda t, r=round_no: w2(t, "room", http, r)),
                    ("W3", lambda t, r=round_no: w3(t, http, r)),
                    ("W5", w5),
                ]
                if round_no == args.rounds - 1:
                    steps.append(("W4", w4))
                for name, step in steps:
                    for target in order:  # interleaved: each workload on every server in turn
                        started = time.perf_counter()
                        sample = await step(target)
                        record(target.kind, sample)
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
        return {"results": results, "setup": setup}
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
    plot(report["results"], args.out / "performance.png")
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
