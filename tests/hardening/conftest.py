"""The hardening rig (issue 6): its own redis-servers, database and daphne processes.

These tests stop, flush and restart Redis and kill daphne with SIGKILL, so they never touch the
shared ``tests/crossprocess`` cluster; they reuse its helpers instead. Once per session this
starts, all at once:

- ``stable``: a redis-server nothing disturbs, serving ``strict`` (the default limits, and a
  one-second ``group_expiry`` handed to the pub/sub layer, which ignores it) and ``fuzz`` (a
  high rate limit for the fuzzer, and a small outgoing-backlog bound for the slow consumer);
- ``fragile``: a redis-server the failure tests stop, restart and flush, serving ``f1``, ``f2``
  and ``victim`` (killed with SIGKILL);
- one private database (SQLite file, or PostgreSQL like the cluster's) shared by all of them.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from tests.crossprocess.conftest import (
    PASSWORD,
    START_TIMEOUT,
    Server,
    Tokens,
    User,
    _create_database,
    _crossprocess_env,
    _manage,
    _popen,
    _start_groups,
    _tail,
    free_port,
)

FUZZ_BACKLOG = 262_144  # bytes: HERALD_WS_MAX_BACKLOG_BYTES of ``fuzz``
FUZZ_SEND_TIMEOUT = 3  # s: HERALD_WS_SEND_TIMEOUT of ``fuzz``
USERS = [
    "svc",  # may send notifications
    "rate_a",
    "rate_b",
    "big_a",
    "big_b",
    "junk",
    "fuzzer",
    "slow",
    "down_a",
    "down_b",
    "flush_a",
    "flush_b",
    "flush_revoked",
    "kill_a",
    "kill_b",
    "aged",
    "csrf",
]


class RedisServer:
    """A redis-server on a fixed port that a test may stop and start again (empty: no
    persistence, as after a failover that lost data)."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.port, self.tmp = name, free_port(), tmp
        self.log = tmp / f"redis-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (bash .ci/system-deps installs it)")
        self.process = _popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.tmp)],
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/usr/local/bin"},
            log=self.log,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server {self.name} exited:\n{_tail(self.log)}")
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server {self.name} did not answer:\n{_tail(self.log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # no goodbye to the clients: as a crash or a network cut
            self.process.wait(10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)


@dataclass
class Rig:
    tmp: Path
    database_url: str
    stable: RedisServer
    fragile: RedisServer
    users: dict[str, User]
    servers: dict[str, Server] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    async def login(self, name: str, server: Server) -> Tokens:
        user = self.users[name]
        async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
            answer = await http.post(
                "/api/auth/token/", json={"username": user.name, "password": user.password}
            )
        assert answer.status_code == 200, answer.text
        return Tokens(**answer.json())

    async def notify(
        self, service: Tokens, server: Server, recipients: list[int], title: str
    ) -> httpx.Response:
        """``POST /api/notifications/`` as the service; the raw answer."""
        async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
            return await http.post(
                "/api/notifications/",
                json={"recipients": recipients, "title": title, "body": f"body of {title}"},
                headers={"Authorization": f"Bearer {service.access}"},
            )

    def shell(self, code: str, **env: str) -> str:
        """Run ``code`` in ``manage.py shell -c`` on the rig's database and stable Redis."""
        base = _crossprocess_env(DATABASE_URL=self.database_url, REDIS_URL=self.stable.url)
        return _manage(["shell", "-c", code], dict(base, **env), self.tmp)


_CREATE_USERS = """
import json, os
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)  # one process start, not two
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
perm = Permission.objects.get(codename="send_notification", content_type__app_label="notifications")
names, password = json.loads(os.environ["HARDEN_USERS"])
hashed, ids = make_password(password), {}
for name in names:
    user = get_user_model()(username=name, password=hashed)
    user.save()
    if name == "svc":
        user.user_permissions.add(perm)
    ids[name] = user.pk
print("HARDEN_IDS=" + json.dumps(ids))
"""


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="herald-harden-"))
        if os.environ.get("HERALD_XPROC_KEEP_LOGS"):
            stack.callback(print, f"\nhardening logs kept in {tmp}")
        else:  # registered first, so it runs last, after every process has stopped
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        stable, fragile = RedisServer("stable", tmp), RedisServer("fragile", tmp)
        for server in (stable, fragile):
            server.start()
            stack.callback(server.stop)
        database_url = _create_database(tmp, stack)
        env = _crossprocess_env(DATABASE_URL=database_url, REDIS_URL=stable.url)
        password = PASSWORD.format(name="harden")
        out = _manage(
            ["shell", "-c", _CREATE_USERS],
            dict(env, HARDEN_USERS=json.dumps([USERS, password])),
            tmp,
        )
        line = next(li for li in out.splitlines() if li.startswith("HARDEN_IDS="))
        ids = json.loads(line.removeprefix("HARDEN_IDS="))
        users = {name: User(name, ids[name], password) for name in USERS}
        rig = Rig(tmp, database_url, stable, fragile, users)
        on_fragile = dict(env, REDIS_URL=fragile.url)
        servers = _start_groups(
            [
                (["strict"], dict(env, DJANGO_SETTINGS_MODULE="tests.hardening.settings_expiry")),
                (
                    ["fuzz"],
                    dict(
                        env,
                        HERALD_WS_RATE="5000",
                        HERALD_WS_BURST="5000",
                        HERALD_WS_MAX_BACKLOG_BYTES=str(FUZZ_BACKLOG),
                        HERALD_WS_SEND_TIMEOUT=str(FUZZ_SEND_TIMEOUT),
                    ),
                ),
                (["f1", "f2", "victim"], on_fragile),
            ],
            tmp,
            stack,
        )
        rig.servers = {server.name: server for server in servers}
        yield rig


def traceback_free(server: Server) -> None:
    """Fail if the process logged a traceback or an unhandled application exception."""
    log = server.output()
    assert "Traceback" not in log, _tail(server.log, 80)
    assert "Exception inside application" not in log, _tail(server.log, 80)


def raw_ws(port: int, access: str, *, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """A raw WebSocket handshake (Bearer header) on a plain TCP socket; (socket, bytes already
    read after the 101 answer). ``rcvbuf`` shrinks the kernel's receive buffer first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            "GET /ws/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {access}\r\n\r\n"
        ).encode()
    )
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def sigkill(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
