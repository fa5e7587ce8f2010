"""The deployment and the fault injectors of the combined-fault checker (``bench/chaos.py``).

Everything here runs in the checker's event loop, so a fault never blocks the clients:

- :class:`Template`: the database every seed starts from, migrated once per run, with the
  users, their login sessions and access tokens (an SQLite file copied per seed, or, when
  ``DATABASE_URL`` is PostgreSQL, a template database each seed's ``CREATE DATABASE … TEMPLATE``
  copies);
- :class:`Redis`: a ``redis-server`` of the seed's own, on a free port, that can be killed
  (SIGKILL), restarted on the same port (empty, as after a crash), stopped (SIGSTOP) and
  continued;
- :class:`Proxy`: an asyncio TCP proxy between the daphne processes and Redis that adds latency,
  holds every byte for a while (a partition that TCP outlives: nothing is lost, everything is
  late), cuts every connection (RST), or refuses new ones;
- :class:`Daphne`: ``python -m config.serve`` with production settings, killed with SIGKILL and
  started again on its port.

Processes come from ``tests.support.rig.popen`` (a session of their own, killed with the
checker); their logs are in the seed's temporary directory.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.support.rig import PYTHON, ROOT, free_port, popen, serve_argv, stop

SECRET_KEY = "herald-chaos-not-a-secret-0123456789abcdefghijklmnopqrstuv"
PASSWORD = "chaos-Pw-3b9e-not-secret"
MAX_USERS = 8  # users in the template; a seed uses some of them
SESSIONS_PER_USER = 3  # login sessions per user: two for sockets, the last for REST checks
PRESENCE_TTL, PRESENCE_REFRESH, PRESENCE_WINDOW = 3.0, 1.0, 0.2  # s, the servers' settings
HEARTBEAT = 10  # s: HERALD_WS_HEARTBEAT (a peer missing two pings is dropped)
START_TIMEOUT = 90.0  # s: a process to answer on a loaded machine


def _base_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "HERALD_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
    }


def server_env(database_url: str, redis_url: str, metrics_dir: Path) -> dict[str, str]:
    """Production settings on plain HTTP (no redirect, no Secure cookies), a fixed secret key,
    access tokens that outlive the run, a short heartbeat and presence TTL (docs/protocol.md,
    "Presence"), a small slow-consumer bound so slow readers can reach it, and the socket caps
    and REST throttles raised out of the way (as ``bench/run.py`` does)."""
    env = _base_env()
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        HERALD_SSL_REDIRECT="0",
        # Production settings require a Web Push key; this one signs nothing outside the run.
        HERALD_VAPID_PRIVATE_KEY="eQ5UxumAFNqdoBcAj-Puoc3TLMXX7ehJsPxjDTOPJeI",
        HERALD_VAPID_SUBJECT="mailto:bench@herald.invalid",
        HERALD_SECURE_COOKIES="0",
        HERALD_ACCESS_TOKEN_LIFETIME="14400",
        HERALD_WS_HEARTBEAT=str(HEARTBEAT),
        HERALD_PRESENCE_TTL=str(PRESENCE_TTL),
        HERALD_PRESENCE_REFRESH=str(PRESENCE_REFRESH),
        HERALD_PRESENCE_WINDOW=str(PRESENCE_WINDOW),
        HERALD_WS_MAX_BACKLOG_BYTES="32768",
        HERALD_WS_SEND_TIMEOUT="3",
        # The socket caps and REST throttles are not what the run checks: out of the way.
        HERALD_WS_MAX_PER_USER="10000000",
        HERALD_WS_MAX_PER_IP="10000000",
        HERALD_THROTTLE_MESSAGES="10000000/s",
        HERALD_THROTTLE_NOTIFICATIONS="10000000/s",
        HERALD_THROTTLE_ROOMS="10000000/s",
        HERALD_THROTTLE_WS_TICKETS="10000000/s",
        HERALD_LOG_FORMAT="console",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


# The database ------------------------------------------------------------------------------------

_PREPARE = """
import json, os
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
from accounts import services
spec = json.loads(os.environ["CHAOS_SPEC"])
perm = Permission.objects.get(codename="send_notification", content_type__app_label="notifications")
password = make_password(spec["password"])
out = {"users": [], "service": None}
def sessions(user, n):
    found = []
    for i in range(n):
        session = services.login_session_create(user=user, kind="api", user_agent=f"chaos {i}")
        found.append({"id": str(session.pk), **services.token_pair_issue(session=session)})
    return found
for i in range(spec["users"]):
    user = get_user_model().objects.create(username=f"u{i}", password=password)
    out["users"].append({"id": user.pk, "name": user.username,
                         "sessions": sessions(user, spec["sessions"])})
service = get_user_model().objects.create(username="service", password=password)
service.user_permissions.add(perm)
out["service"] = {"id": service.pk, "name": "service", "sessions": sessions(service, 1)}
print("CHAOS_DATA=" + json.dumps(out))
"""


@dataclass
class Template:
    """The migrated database with users, sessions and tokens (``data``), copied per seed."""

    tmp: Path
    url: str  # the template's DATABASE_URL
    data: dict[str, Any]
    postgres: bool

    @classmethod
    def create(cls, tmp: Path) -> "Template":
        """Migrate a new database (PostgreSQL when ``DATABASE_URL`` is one, else SQLite) and
        create :data:`MAX_USERS` users with :data:`SESSIONS_PER_USER` login sessions each, and
        a service user allowed to send notifications."""
        url = os.environ.get("DATABASE_URL", "")
        postgres = urlsplit(url).scheme in ("postgres", "postgresql", "pgsql", "psql")
        if postgres:
            name = f"herald_chaos_{os.getpid()}_tpl"
            _pg_admin(url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
            db_url = _pg_url(url, name)
        else:
            db_url = f"sqlite:///{tmp / 'template.sqlite3'}"
        env = server_env(db_url, "", tmp / "metrics")
        del env["REDIS_URL"]  # the template needs no Redis: the cache is in memory
        env["CHAOS_SPEC"] = json.dumps(
            {"users": MAX_USERS, "sessions": SESSIONS_PER_USER, "password": PASSWORD}
        )
        result = subprocess.run(  # noqa: S603
            [PYTHON, "manage.py", "shell", "-c", _PREPARE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT * 3,
        )
        if result.returncode != 0:
            raise RuntimeError(f"preparing the database failed:\n{result.stderr[-3000:]}")
        line = next(li for li in result.stdout.splitlines() if li.startswith("CHAOS_DATA="))
        return cls(tmp, db_url, json.loads(line.removeprefix("CHAOS_DATA=")), postgres)

    def copy(self, name: str) -> str:
        """A fresh copy for one seed; its DATABASE_URL."""
        if self.postgres:
            source = urlsplit(self.url).path.lstrip("/")
            target = f"herald_chaos_{os.getpid()}_{name}_{uuid.uuid4().hex[:6]}"
            _pg_admin(self.url, f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
            return _pg_url(self.url, target)
        source = Path(self.url.removeprefix("sqlite:///"))
        target = self.tmp / f"{name}.sqlite3"
        shutil.copy(source, target)
        for suffix in ("-wal", "-shm"):
            if Path(f"{source}{suffix}").exists():
                shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
        return f"sqlite:///{target}"

    def drop(self, url: str) -> None:
        """Drop a copy (PostgreSQL; an SQLite file goes with the temporary directory)."""
        if self.postgres:
            name = urlsplit(url).path.lstrip("/")
            with contextlib.suppress(Exception):
                _pg_admin(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.drop(self.url)


def _pg_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def _pg_admin(url: str, *statements: str) -> None:
    import psycopg

    parts = urlsplit(url)
    error: Exception | None = None
    for maintenance in ("/postgres", "/template1"):
        admin = urlunsplit(("postgresql", parts.netloc, maintenance, "", ""))
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                for statement in statements:
                    conn.execute(statement)  # type: ignore[arg-type]
            return
        except psycopg.OperationalError as failure:
            error = failure
    raise RuntimeError(f"PostgreSQL at {parts.netloc}: {error}")


# Redis ------------------------------------------------------------------------------------------


class Redis:
    """A private ``redis-server`` without persistence; killed, restarted (empty) on the same
    port, stopped and continued."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp = free_port(), tmp
        self.log = tmp / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False  # SIGSTOP'd

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (bash .ci/system-deps)")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.tmp)]
        self.process = popen(argv, env=dict(os.environ), log=self.log)
        self.stopped = False
        deadline = time.monotonic() + START_TIMEOUT
        while not await self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)

    async def ping(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 1
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.read(64), 1)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    @property
    def up(self) -> bool:
        return self.process is not None and not self.stopped

    def kill(self) -> None:
        """SIGKILL: every connection drops, every key (presence, cached sessions) is gone."""
        if self.process is not None:
            if self.stopped:
                self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
            self.process = None
            self.stopped = False

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        if self.process is not None and not self.stopped:
            self.process.send_signal(signal.SIGSTOP)
            self.stopped = True

    def resume(self) -> None:
        if self.process is not None and self.stopped:
            self.process.send_signal(signal.SIGCONT)
            self.stopped = False

    def close(self) -> None:
        self.kill()


# The proxy between daphne and Redis --------------------------------------------------------------


@dataclass
class Proxy:
    """TCP proxy from a free port to Redis. Faults (each reverted by its ``*_off``/``False``):
    ``delay`` seconds added to every chunk, ``hold`` (bytes wait, in order, until released),
    ``refuse`` (new connections are closed at once), :meth:`cut` (every connection reset)."""

    upstream_port: int
    port: int = field(default_factory=free_port)
    delay: float = 0.0
    refuse: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)
    links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=set)
    server: asyncio.Server | None = None
    connections: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.released.set()
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def heal(self) -> None:
        self.delay, self.refuse = 0.0, False
        self.released.set()

    def cut(self) -> int:
        """Reset every open connection (both sides); how many."""
        links = list(self.links)
        for client, upstream in links:
            for writer in (client, upstream):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        self.links.clear()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), 2
            )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self.links.add(link)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self.links.discard(link)
            for w in link:
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction. An end of stream is passed on as one (FIN, after every byte),
        as the kernel does for a process that exits: a daphne killed right after writing a
        ``PUBLISH`` still publishes it. Only :meth:`cut` resets."""
        try:
            while chunk := await reader.read(65536):
                if not self.released.is_set():
                    await self.released.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
            if not self.released.is_set():
                await self.released.wait()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, asyncio.IncompleteReadError):
            with contextlib.suppress(Exception):
                writer.transport.abort()

    async def close(self) -> None:
        self.heal()
        self.cut()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


# daphne -----------------------------------------------------------------------------------------


@dataclass
class Daphne:
    """One ``python -m config.serve`` process on a fixed port."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.process = popen(serve_argv(self.port), env=self.env, log=self.log)

    def kill(self) -> None:
        """SIGKILL: no ``disconnect()`` runs, its sockets drop (1006)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
            self.kills += 1

    async def wait(self, path: str = "/readyz", within: float = START_TIMEOUT) -> None:
        """Until ``path`` answers 200; ``RuntimeError`` if the process exits or never does."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=3) as http:
            while True:
                if not self.up:
                    raise RuntimeError(f"daphne {self.name} exited:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.http + path)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daphne {self.name}: {path} never 200:\n{self.tail()}")
                await asyncio.sleep(0.2)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def close(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=5)
            self.process = None
