"""The process rig: real daphne processes, private redis-servers and a private database.

What crosses processes is tested across processes. This module starts them:

- daphne through ``python -m config.serve`` (as deployed), each on a free port of 127.0.0.1,
  ready once ``/readyz`` answers 200 (:func:`start_servers`); a :class:`Server` can be killed
  (SIGKILL) and restarted on the same port;
- ``redis-server`` on a free port, with no persistence, in a temporary directory
  (:class:`RedisServer`);
- a private database (:func:`create_database`): an SQLite file in the temporary directory, or,
  when ``DATABASE_URL`` is a PostgreSQL URL, a fresh database ``herald_xproc_<pid>_<hex>`` on
  that server, dropped at the end;
- users, created in that database by one ``manage.py shell`` subprocess, which may migrate it
  first (:func:`create_users`): pytest-django owns this process's database.

Each process's stdout and stderr go to a file (``Server.log``) for log assertions. Everything
started is registered on a ``contextlib.ExitStack`` and stops when it closes.
:class:`Deployment` ties a database, a Redis and users together for the tiers' deployments
(``tests.support.cluster``, ``tests.support.hardening``, ``tests.support.browser``).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SETTINGS = "config.settings.dev"
SECRET_KEY = "herald-crossprocess-tests-not-a-secret-0123456789abcdefghij"
VAPID_KEY = "eQ5UxumAFNqdoBcAj-Puoc3TLMXX7ehJsPxjDTOPJeI"  # Web Push signing key, tests only
HEARTBEAT = 10  # s: HERALD_WS_HEARTBEAT for the servers, small enough for pings to flow
START_TIMEOUT = 90.0  # s: for a process to answer (migrate, readyz); the machine may be loaded
KEEP_LOGS = "HERALD_XPROC_KEEP_LOGS"  # set: the temporary directories (logs) are kept


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # runs in the child, between fork and exec
    """Linux: the child gets SIGTERM if its parent dies without tearing down (PR_SET_PDEATHSIG).

    Linux sends it when the *thread* that forked the child exits: start processes from a thread
    that lives as long as they do.
    """
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def popen(
    argv: list[str],
    *,
    env: dict[str, str],
    log: Path,
    setup: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the repository root, stdout and stderr appended to ``log``.

    The child runs in a session of its own (a Ctrl-C reaches pytest, whose teardown stops it)
    and dies with its parent; ``setup`` replaces :func:`die_with_parent` as the code run in the
    child before ``exec`` (it should call it).
    """
    if setup is None and sys.platform == "linux":
        setup = die_with_parent
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=setup,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def temp_dir(stack: contextlib.ExitStack, prefix: str) -> Path:
    """A new temporary directory for a deployment's files and logs, removed when ``stack``
    closes (after every process registered later has stopped), or kept when the environment
    sets ``HERALD_XPROC_KEEP_LOGS``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get(KEEP_LOGS):
        stack.callback(print, f"\nlogs kept in {tmp}")
    else:  # registered first, so it runs last
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def server_env(**extra: str) -> dict[str, str]:
    """This environment without any Django/Herald setting of the developer's, plus the servers'
    settings (``config.settings.dev``, a fixed secret key, a short heartbeat) and ``extra``."""
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
        HERALD_VAPID_PRIVATE_KEY=VAPID_KEY,  # else dev settings write a key file
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        HERALD_WS_HEARTBEAT=str(HEARTBEAT),
        # Longer than any session: no token nears expiry (``auth.expiring``) mid-run, so the
        # idle socket's only frames are the ones under test.
        HERALD_ACCESS_TOKEN_LIFETIME="3600",
        # The limits (docs/security.md, "Limits") out of the way of tests that open a thousand
        # sockets of one user from 127.0.0.1 or post in bursts; the limits' own tests set theirs.
        HERALD_WS_MAX_PER_USER="100000",
        HERALD_WS_MAX_PER_IP="100000",
        HERALD_THROTTLE_MESSAGES="100000/s",
        HERALD_THROTTLE_ROOMS="100000/s",
        HERALD_THROTTLE_WS_TICKETS="100000/s",
        HERALD_THROTTLE_TOKEN_REFRESH="100000/s",
        HERALD_THROTTLE_NOTIFICATIONS="100000/s",
        PYTHONUNBUFFERED="1",  # log lines reach the files at once
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


# Redis -------------------------------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` on a free port of 127.0.0.1, without persistence (a restart starts
    empty, as after a failover that lost data). It may be stopped and started again on the same
    port. ``args`` adds command-line options; ``setup`` runs in the child (see :func:`popen`)."""

    def __init__(
        self,
        tmp: Path,
        name: str = "redis",
        *,
        args: Iterable[str] = (),
        setup: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.port, self.tmp = name, free_port(), tmp
        self.args, self.setup = list(args), setup
        self.log = tmp / f"{name}.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "RedisServer":
        """Start it; return once it answers ``PING``."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (bash .ci/system-deps installs it)")
        self.process = popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.tmp), *self.args],
            env=dict(os.environ),
            log=self.log,
            setup=self.setup,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"redis-server {self.name} exited with {self.process.returncode}:\n"
                    + tail(self.log)
                )
            if self.ping():
                return self
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server {self.name} did not answer PING:\n{tail(self.log)}")
            time.sleep(0.05)

    def ping(self) -> bool:
        """Whether it answers ``PING`` now (a raw socket: no client library needed)."""
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
        return False

    def stop(self) -> None:
        """SIGKILL: no goodbye to the clients, as a crash or a network cut."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)


def start_redis(
    tmp: Path, stack: contextlib.ExitStack, name: str = "redis", **options: Any
) -> RedisServer:
    """A started :class:`RedisServer` (``options``: its ``args``, ``setup``), stopped when
    ``stack`` closes."""
    server = RedisServer(tmp, name, **options).start()
    stack.callback(server.stop)
    return server


# Database and users -----------------------------------------------------------------------------


def create_database(tmp: Path, stack: contextlib.ExitStack) -> str:
    """The servers' DATABASE_URL: a fresh PostgreSQL database if the environment's is one
    (dropped when ``stack`` closes), else an SQLite file in ``tmp``."""
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql", "psql"):
        return f"sqlite:///{tmp / 'herald.sqlite3'}"

    import psycopg
    from psycopg import sql

    # Unique per deployment: the cross-process, e2e and hardening rigs of one session live at
    # once, and another checkout's test run may share the server.
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


def manage(args: list[str], env: dict[str, str], tmp: Path) -> str:
    """Run ``manage.py args`` with ``env``; its stdout (its output is also saved in ``tmp``)."""
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
        pytest.fail(f"manage.py {args[0]} failed ({result.returncode}):\n{tail(log)}")
    return result.stdout


@dataclass
class User:
    name: str
    id: int
    password: str


def user_spec(
    name: str, password: str, *, can_send: bool = False, superuser: bool = False, **fields: Any
) -> dict[str, Any]:
    """One user for :func:`create_users`: ``can_send`` grants
    ``notifications.send_notification``, ``superuser`` makes a staff superuser; ``fields`` are
    other fields of the user model (``first_name``, ``last_name``)."""
    if superuser:
        fields.update(is_staff=True, is_superuser=True)
    return {"username": name, "password": password, "can_send": can_send, **fields}


_CREATE_USERS = """
import json, os
spec = json.loads(os.environ["TEST_RIG_USERS"])
if spec["migrate"]:  # one process start, not two
    from django.core.management import call_command
    call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
perm = Permission.objects.get(codename="send_notification", content_type__app_label="notifications")
hashes, ids = {}, {}
for fields in spec["users"]:
    password, can_send = fields.pop("password"), fields.pop("can_send")
    if password not in hashes:  # one hash per distinct password: hashing is slow on purpose
        hashes[password] = make_password(password)
    user = get_user_model()(password=hashes[password], **fields)
    user.save()
    if can_send:
        user.user_permissions.add(perm)
    ids[user.username] = user.pk
print("TEST_RIG_IDS=" + json.dumps(ids))
"""


def create_users(
    env: dict[str, str], tmp: Path, specs: list[dict[str, Any]], *, migrate: bool = False
) -> dict[str, User]:
    """Create users (:func:`user_spec`) in the database of ``env`` in one ``manage.py shell``
    process, which first migrates the database when ``migrate``; ``{name: User}``."""
    payload = json.dumps({"migrate": migrate, "users": specs})
    out = manage(["shell", "-c", _CREATE_USERS], dict(env, TEST_RIG_USERS=payload), tmp)
    line = next(li for li in out.splitlines() if li.startswith("TEST_RIG_IDS="))
    ids = json.loads(line.removeprefix("TEST_RIG_IDS="))
    return {s["username"]: User(s["username"], ids[s["username"]], s["password"]) for s in specs}


# daphne -----------------------------------------------------------------------------------------


@dataclass
class Server:
    """One daphne process: ``http`` and ``ws`` base URLs, its captured output ``log``, and the
    ``env`` it runs with (for :meth:`restart`)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)

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

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: no ``disconnect()`` runs, sockets drop at once."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self, stack: contextlib.ExitStack) -> None:
        """Start the process again on its port with its environment; return once it is ready.
        It stops when ``stack`` closes."""
        self.process = popen(serve_argv(self.port), env=self.env, log=self.log)
        stack.callback(stop, self.process)
        wait_ready([self], interval=0.1)


def serve_argv(port: int) -> list[str]:
    return [PYTHON, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port)]


def wait_ready(
    servers: list[Server], timeout: float = START_TIMEOUT, interval: float = 0.2
) -> None:
    """Wait until each server answers ``/readyz`` with 200; fail if one exits or never does."""
    deadline = time.monotonic() + timeout
    for server in servers:
        while True:
            if not server.alive():
                pytest.fail(
                    f"daphne {server.name} exited with {server.process.returncode}:\n"
                    + tail(server.log)
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.http}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"daphne {server.name}: /readyz never answered 200:\n{tail(server.log)}"
                )
            time.sleep(interval)


def start_server_groups(
    groups: list[tuple[list[str], dict[str, str]]], tmp: Path, stack: contextlib.ExitStack
) -> list[Server]:
    """Start every daphne process of ``[(names, env)]`` at once (logs ``tmp/daphne-<name>.log``),
    then wait until each is ready. They stop when ``stack`` closes. Call from a thread that
    lives as long as the servers (see :func:`die_with_parent`)."""
    servers = []
    for names, env in groups:
        for name in names:
            port = free_port()
            log = tmp / f"daphne-{name}.log"
            process = popen(serve_argv(port), env=env, log=log)
            stack.callback(stop, process)
            servers.append(Server(name, port, process, log, env))
    wait_ready(servers)
    return servers


def start_servers(
    names: list[str], env: dict[str, str], tmp: Path, stack: contextlib.ExitStack
) -> list[Server]:
    """Start daphne processes ``names`` with ``env``; return them once each is ready."""
    return start_server_groups([(names, env)], tmp, stack)


# A deployment -------------------------------------------------------------------------------------


@dataclass
class Tokens:
    """The answer of ``POST /api/auth/token/``."""

    access: str
    refresh: str
    session_id: str


@dataclass
class Deployment:
    """A private database and Redis, their users, and helpers to start more daphne processes on
    them, log users in and run code in a ``manage.py shell`` process beside the servers."""

    tmp: Path  # logs and files
    database_url: str
    redis_url: str
    users: dict[str, User]

    def env(self, **extra: str) -> dict[str, str]:
        """The servers' environment on this database and Redis, plus ``extra``."""
        return server_env(
            **{"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, **extra}
        )

    def start_servers(
        self, names: list[str], stack: contextlib.ExitStack, **settings: str
    ) -> list[Server]:
        """Start daphne processes ``names`` on this database and Redis, ready (``/readyz``).

        ``settings`` are environment variables that override the deployment's (``HERALD_*``);
        the processes stop when ``stack`` closes. Their logs sit beside the others.
        """
        return start_servers(names, self.env(**settings), self.tmp, stack)

    def create_users(
        self, names: list[str], superusers: Iterable[str] = (), password: str = ""
    ) -> None:
        """Create users ``names`` (``superusers`` among them are staff superusers) in one
        ``manage.py shell`` process and add them to ``users``; one ``password`` for all."""
        password = password or "xproc-Pw-more-7d1f"
        staff = set(superusers)
        specs = [user_spec(name, password, superuser=name in staff) for name in names]
        self.users.update(create_users(self.env(), self.tmp, specs))

    def shell(self, code: str, **env: str) -> str:
        """Run ``code`` in a separate ``manage.py shell -c`` process on this database and Redis
        (a third process, not a server); its stdout. ``env`` adds environment variables."""
        return manage(["shell", "-c", code], self.env(**env), self.tmp)

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

    async def post_notification(
        self, service: Tokens, server: Server, recipients: list[int], title: str
    ) -> httpx.Response:
        """``POST /api/notifications/`` as the service; the answer, whatever its status."""
        async with httpx.AsyncClient(base_url=server.http, timeout=60) as http:
            return await http.post(
                "/api/notifications/",
                json={"recipients": recipients, "title": title, "body": f"body of {title}"},
                headers={"Authorization": f"Bearer {service.access}"},
            )

    async def notify(
        self, service: Tokens, server: Server, recipients: list[int], title: str
    ) -> dict[str, Any]:
        """``POST /api/notifications/`` as the service; the ``201`` answer ``{count, ids}``."""
        answer = await self.post_notification(service, server, recipients, title)
        assert answer.status_code == 201, answer.text
        return answer.json()
