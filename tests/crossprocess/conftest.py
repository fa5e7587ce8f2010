"""The cross-process harness: a private redis-server, a private database, real daphne processes.

What crosses processes is tested across processes (STYLE, "Tests"). Once per session this starts

- ``redis-server`` on a free port of 127.0.0.1, with no persistence, in a temporary directory;
- a private database: an SQLite file in the temporary directory, or, when ``DATABASE_URL`` is a
  PostgreSQL URL, a fresh database ``herald_xproc_<pid>`` on that server (dropped at the end),
  migrated with ``manage.py migrate``;
- daphne through ``python -m config.serve`` (CONTRACT §1.1), all sharing that database and
  Redis: ``p1`` and ``p2``, the deployment the tests talk to, and ``quiet``, which serves one
  idle socket and nothing else, so that its Redis subscriber connection is truly idle for
  ``IDLE_SECONDS`` (the idle test runs beside the others instead of after them);
- two background probes, opened as soon as the servers are ready and checked by the last
  tests: an idle socket on ``quiet`` that records daphne's pings, and a raw-socket client on
  ``p2`` that never answers a ping (daphne must drop it).

pytest-django owns this process's database, so users are created in the servers' database by
a ``manage.py shell`` subprocess, once per session. Each process's stdout and stderr go to a file
(``Server.log``) for log assertions. Everything stops at session end, or when set-up fails.
"""

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection as SyncClientConnection
from websockets.sync.client import connect as sync_connect

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SETTINGS = "config.settings.dev"
SECRET_KEY = "herald-crossprocess-tests-not-a-secret-0123456789abcdefghij"
HEARTBEAT = 10  # s: HERALD_WS_HEARTBEAT for the servers, small enough for pings to flow
IDLE_SECONDS = 60  # s: how long the idle socket stays silent before it is checked
START_TIMEOUT = 90.0  # s: for a process to answer (migrate, readyz); the machine may be loaded
PASSWORD = "xproc-Pw-{name}-7d1f"

# username → may send notifications (perm ``notifications.send_notification``)
USERS = {
    "service": True,
    "fan_b": False,
    "fan_c": False,
    "resume_b": False,
    "burst": False,
    "logs": False,
    "revoke": False,
    "idle": False,
    "deadpeer": False,
}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    """Linux: the child gets SIGTERM if pytest dies without tearing down (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _popen(argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches pytest, whose teardown stops us
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    finally:
        out.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Server:
    """One daphne process: ``http`` and ``ws`` base URLs, and its captured output ``log``."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class User:
    name: str
    id: int
    password: str


@dataclass
class Tokens:
    """The answer of ``POST /api/auth/token/``."""

    access: str
    refresh: str
    session_id: str


class PingRecorder(SyncClientConnection):
    """websockets' sync client, noting when each server ping and each data frame arrives.

    ``process_event`` is websockets' documented override point for subclasses
    (``create_connection=``); the pong is still sent by the protocol layer.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings: list[float] = []
        self.data_frames: list[float] = []

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame):
            if event.opcode is Opcode.PING:
                self.pings.append(time.monotonic())
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.data_frames.append(time.monotonic())
        super().process_event(event)


@dataclass
class IdleProbe:
    """A socket on the ``quiet`` server that sends nothing after its ``hello``."""

    ws: PingRecorder
    hello: dict[str, Any]
    opened_at: float  # time.monotonic()


@dataclass
class DeadPeerProbe:
    """A raw WebSocket client that completes the handshake, then never answers a ping.

    A reader thread parses the server's frames (unmasked, RFC 6455 §5.2) and notes when each
    ping arrives and when the server dropped the TCP connection.
    """

    sock: socket.socket
    opened_at: float
    frames: list[tuple[float, int, bytes]] = field(default_factory=list)
    dropped_at: float | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, port: int, access: str) -> "DeadPeerProbe":
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /ws/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {access}\r\n\r\n"
            ).encode()
        )
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed during the handshake")
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head[:200]!r}")
        probe = cls(sock=sock, opened_at=time.monotonic())
        sock.settimeout(None)
        threading.Thread(target=probe._read, args=(rest,), daemon=True).start()
        return probe

    def _read(self, buffer: bytes) -> None:
        try:
            while True:
                while (parsed := _parse_frame(buffer)) is not None:
                    opcode, payload, buffer = parsed
                    self.frames.append((time.monotonic(), opcode, payload))
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
        except OSError as error:  # a reset counts as a drop too
            self.error = repr(error)
        self.dropped_at = time.monotonic()
        self.done.set()

    def pings(self) -> list[float]:
        return [at for at, opcode, _ in self.frames if opcode == Opcode.PING.value]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _parse_frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """``(opcode, payload, rest)`` of the first complete server frame, or ``None``."""
    if len(buffer) < 2:
        return None
    opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,), offset = struct.unpack("!H", buffer[2:4]), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,), offset = struct.unpack("!Q", buffer[2:10]), 10
    if len(buffer) < offset + length:
        return None
    return opcode, buffer[offset : offset + length], buffer[offset + length :]


@dataclass
class Cluster:
    """The running deployment: servers ``p1``, ``p2`` (and ``quiet``), users, probes, metrics."""

    p1: Server
    p2: Server
    quiet: Server
    redis_url: str
    database_url: str
    users: dict[str, User]
    started_at: float
    idle: IdleProbe | None = None
    dead_peer: DeadPeerProbe | None = None
    heartbeat: int = HEARTBEAT
    idle_seconds: int = IDLE_SECONDS

    @property
    def servers(self) -> list[Server]:
        return [self.p1, self.p2, self.quiet]

    def tokens(self, name: str, server: Server) -> Tokens:
        """Log ``name`` in over HTTP (a new login session); blocking, for set-up code."""
        user = self.users[name]
        answer = httpx.post(
            f"{server.http}/api/auth/token/",
            json={"username": user.name, "password": user.password},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return Tokens(**answer.json())

    async def login(self, name: str, server: Server) -> Tokens:
        """``POST /api/auth/token/`` as ``name`` on ``server``: a new login session."""
        user = self.users[name]
        async with httpx.AsyncClient(base_url=server.http, timeout=60) as http:
            answer = await http.post(
                "/api/auth/token/", json={"username": user.name, "password": user.password}
            )
        assert answer.status_code == 200, answer.text
        return Tokens(**answer.json())

    async def notify(
        self, service: Tokens, server: Server, recipients: list[int], title: str
    ) -> dict[str, Any]:
        """``POST /api/notifications/`` as the service; the ``201`` answer ``{count, ids}``."""
        async with httpx.AsyncClient(base_url=server.http, timeout=60) as http:
            answer = await http.post(
                "/api/notifications/",
                json={"recipients": recipients, "title": title, "body": f"body of {title}"},
                headers={"Authorization": f"Bearer {service.access}"},
            )
        assert answer.status_code == 201, answer.text
        return answer.json()


def _crossprocess_env(**extra: str) -> dict[str, str]:
    """This environment without any Django/Herald setting of the developer's, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "HERALD_"))
        # PROMETHEUS_MULTIPROC_DIR: pytest's own metrics directory (config.settings.test);
        # each deployment here picks its own (config.metrics_dir).
        and k not in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        HERALD_WS_HEARTBEAT=str(HEARTBEAT),
        # Longer than any session: no token nears expiry (``auth.expiring``) mid-run, so the
        # idle socket's only frames are the ones under test.
        HERALD_ACCESS_TOKEN_LIFETIME="3600",
        PYTHONUNBUFFERED="1",  # log lines reach the files at once
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    return env


def _start_redis(tmp: Path, stack: contextlib.ExitStack) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (bash .ci/system-deps installs it)")
    port = free_port()
    log = tmp / "redis.log"
    process = _popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        env=dict(os.environ),
        log=log,
    )
    stack.callback(_stop, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"redis-server exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        if time.monotonic() > deadline:
            pytest.fail(f"redis-server on port {port} did not answer PING:\n{_tail(log)}")
        time.sleep(0.1)


def _create_database(tmp: Path, stack: contextlib.ExitStack) -> str:
    """The servers' DATABASE_URL: a fresh PostgreSQL database if the environment's is one."""
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql", "psql"):
        return f"sqlite:///{tmp / 'herald.sqlite3'}"

    import psycopg
    from psycopg import sql

    # Unique per rig: the cross-process, e2e and hardening rigs of one session live at once.
    name = f"herald_xproc_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    last_error: Exception | None = None
    for maintenance in ("/postgres", parts.path):
        admin = urlunsplit(("postgresql", parts.netloc, maintenance, parts.query, ""))
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            break
        except psycopg.OperationalError as error:
            last_error = error
    else:
        pytest.fail(f"cannot create database {name} on {parts.netloc}: {last_error}")

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    stack.callback(drop)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


_CREATE_USERS = """
import json, os
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
perm = Permission.objects.get(codename="send_notification", content_type__app_label="notifications")
ids = {}
for name, password, can_send in json.loads(os.environ["XPROC_USERS"]):
    user = get_user_model().objects.create_user(username=name, password=password)
    if can_send:
        user.user_permissions.add(perm)
    ids[name] = user.pk
print("XPROC_IDS=" + json.dumps(ids))
"""


def _manage(args: list[str], env: dict[str, str], tmp: Path) -> str:
    log = tmp / f"manage-{args[0]}.log"
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT * 2,
    )
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        pytest.fail(f"manage.py {args[0]} failed ({result.returncode}):\n{_tail(log)}")
    return result.stdout


def _create_users(env: dict[str, str], tmp: Path) -> dict[str, User]:
    spec = [(name, PASSWORD.format(name=name), can_send) for name, can_send in USERS.items()]
    out = _manage(["shell", "-c", _CREATE_USERS], dict(env, XPROC_USERS=json.dumps(spec)), tmp)
    line = next(li for li in out.splitlines() if li.startswith("XPROC_IDS="))
    ids = json.loads(line.removeprefix("XPROC_IDS="))
    return {name: User(name, ids[name], password) for name, password, _ in spec}


def _start_servers(
    names: list[str], env: dict[str, str], tmp: Path, stack: contextlib.ExitStack
) -> list[Server]:
    """Start daphne processes ``names`` with ``env``; return them once each is ready."""
    return _start_groups([(names, env)], tmp, stack)


def _start_groups(
    groups: list[tuple[list[str], dict[str, str]]], tmp: Path, stack: contextlib.ExitStack
) -> list[Server]:
    """Start every daphne process of ``[(names, env)]`` at once, then wait until each answers
    ``/readyz``. ``_popen`` asks Linux to SIGTERM a child when the thread that forked it exits
    (PR_SET_PDEATHSIG): call from a thread that lives as long as the servers."""
    servers = []
    for names, env in groups:
        for name in names:
            port = free_port()
            log = tmp / f"daphne-{name}.log"
            argv = [PYTHON, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port)]
            process = _popen(argv, env=env, log=log)
            stack.callback(_stop, process)
            servers.append(Server(name, port, process, log))
    deadline = time.monotonic() + START_TIMEOUT
    for server in servers:
        while True:
            if not server.alive():
                pytest.fail(
                    f"daphne {server.name} exited with {server.process.returncode}:\n"
                    + _tail(server.log)
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.http}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"daphne {server.name}: /readyz never answered 200:\n{_tail(server.log)}"
                )
            time.sleep(0.2)
    return servers


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Redis, a migrated private database, daphne ``p1``/``p2``/``quiet``, users and probes."""
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="herald-xproc-"))
        if os.environ.get("HERALD_XPROC_KEEP_LOGS"):
            stack.callback(print, f"\ncross-process logs kept in {tmp}")
        else:  # registered first, so it runs last, after every process has stopped
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        redis_url = _start_redis(tmp, stack)
        database_url = _create_database(tmp, stack)
        env = _crossprocess_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
        _manage(["migrate", "--noinput", "-v", "0"], env, tmp)
        users = _create_users(env, tmp)
        p1, p2, quiet = _start_servers(["p1", "p2", "quiet"], env, tmp, stack)
        cluster = Cluster(p1, p2, quiet, redis_url, database_url, users, time.monotonic())

        idle_tokens = cluster.tokens("idle", quiet)
        ws = stack.enter_context(
            sync_connect(
                quiet.ws,
                additional_headers={"Authorization": f"Bearer {idle_tokens.access}"},
                create_connection=PingRecorder,
                ping_interval=None,  # the client sends nothing: only daphne's pings flow
                open_timeout=30,
                close_timeout=5,
            )
        )
        hello = json.loads(ws.recv(timeout=30))
        cluster.idle = IdleProbe(ws, hello, time.monotonic())  # type: ignore[arg-type]

        cluster.dead_peer = DeadPeerProbe.open(p2.port, cluster.tokens("deadpeer", p2).access)
        stack.callback(cluster.dead_peer.close)

        yield cluster


# Tests that check the background probes wait until the probes have run long enough; run them
# last so that the other tests use that time.
_LAST_MODULES = ("test_heartbeat.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.path)).parents]
    ours = [items[i] for i in slots]
    ours.sort(key=lambda item: Path(str(item.path)).name in _LAST_MODULES)
    for slot, item in zip(slots, ours, strict=True):
        items[slot] = item


_METRICS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def metrics() -> dict[str, Any]:
    """Numbers worth reading (handshakes/s, latencies), printed in the terminal summary."""
    return _METRICS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _METRICS:
        terminalreporter.section("cross-process measurements")
        for key, value in _METRICS.items():
            terminalreporter.write_line(f"{key}: {value}")


# More servers and users for one module or test --------------------------------------------------
#
# The session's ``cluster`` runs with long token lifetimes and a fixed set of users. Tests that
# need other settings (short token lifetimes) start their own daphne processes with
# ``start_servers_like``, sharing the cluster's Redis and database; tests that revoke or
# deactivate users create their own with ``create_users``, so no other test is affected.

SHORT_ACCESS_LIFETIME = 6  # s: HERALD_ACCESS_TOKEN_LIFETIME of ``short_pair``
SHORT_TICKET_LIFETIME = 3  # s: HERALD_WS_TICKET_LIFETIME of ``short_pair``


def start_servers_like(
    cluster: Cluster, names: list[str], stack: contextlib.ExitStack, **settings: str
) -> list[Server]:
    """Start daphne processes ``names`` on the cluster's Redis and database, ready (``/readyz``).

    ``settings`` are environment variables that override the cluster's (``HERALD_*``); the
    processes stop when ``stack`` closes. Their logs sit beside the cluster's.
    """
    env = _crossprocess_env(DATABASE_URL=cluster.database_url, REDIS_URL=cluster.redis_url)
    env.update(settings)
    return _start_servers(names, env, cluster.p1.log.parent, stack)


_CREATE_MORE_USERS = """
import json, os
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
hashes, ids = {}, {}
for name, password, superuser in json.loads(os.environ["XPROC_USERS"]):
    if password not in hashes:  # one hash per distinct password: hashing is slow on purpose
        hashes[password] = make_password(password)
    user = get_user_model()(username=name, is_staff=superuser, is_superuser=superuser)
    user.password = hashes[password]
    user.save()
    ids[name] = user.pk
print("XPROC_IDS=" + json.dumps(ids))
"""


def create_users(cluster: Cluster, names: list[str], superusers: tuple[str, ...] = ()) -> None:
    """Create users ``names`` (``superusers`` among them are staff superusers) in one
    ``manage.py shell`` process and add them to ``cluster.users`` (password ``PASSWORD``)."""
    spec = [(name, PASSWORD.format(name="more"), name in superusers) for name in names]
    env = _crossprocess_env(DATABASE_URL=cluster.database_url, REDIS_URL=cluster.redis_url)
    out = _manage(
        ["shell", "-c", _CREATE_MORE_USERS],
        dict(env, XPROC_USERS=json.dumps(spec)),
        cluster.p1.log.parent,
    )
    line = next(li for li in out.splitlines() if li.startswith("XPROC_IDS="))
    ids = json.loads(line.removeprefix("XPROC_IDS="))
    for name, password, _ in spec:
        cluster.users[name] = User(name, ids[name], password)


def run_shell(cluster: Cluster, code: str, **env: str) -> str:
    """Run ``code`` in a separate ``manage.py shell -c`` process on the cluster's database and
    Redis (a third process, not a server); its stdout. ``env`` adds environment variables."""
    base = _crossprocess_env(DATABASE_URL=cluster.database_url, REDIS_URL=cluster.redis_url)
    return _manage(["shell", "-c", code], dict(base, **env), cluster.p1.log.parent)


@pytest.fixture(scope="module")
def short_pair(cluster: Cluster) -> Iterator[tuple[Server, Server]]:
    """Two more daphne processes, ``short1`` and ``short2``, on the cluster's Redis and database,
    with access tokens living ``SHORT_ACCESS_LIFETIME`` s and tickets ``SHORT_TICKET_LIFETIME`` s.
    """
    with contextlib.ExitStack() as stack:
        short1, short2 = start_servers_like(
            cluster,
            ["short1", "short2"],
            stack,
            HERALD_ACCESS_TOKEN_LIFETIME=str(SHORT_ACCESS_LIFETIME),
            HERALD_WS_TICKET_LIFETIME=str(SHORT_TICKET_LIFETIME),
        )
        yield short1, short2
