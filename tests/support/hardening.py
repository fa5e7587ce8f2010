"""The deployment of ``tests/hardening``: its own redis-servers, database and daphne processes.

These tests stop, flush and restart Redis and kill daphne with SIGKILL, so they never touch the
cross-process cluster. :func:`start_rig` starts, all at once:

- ``stable``: a redis-server nothing disturbs, serving ``strict`` (the default limits, and a
  one-second ``group_expiry`` handed to the pub/sub layer, which ignores it) and ``fuzz`` (a
  high rate limit for the fuzzer, and a small outgoing-backlog bound for the slow consumer);
- ``fragile``: a redis-server the failure tests stop, restart and flush, serving ``f1``, ``f2``
  and ``victim`` (killed with SIGKILL);
- one private database (SQLite file, or PostgreSQL like the cluster's) shared by all of them.
"""

import contextlib
from dataclasses import dataclass, field

from tests.support.rig import (
    Deployment,
    RedisServer,
    Server,
    create_database,
    create_users,
    server_env,
    start_redis,
    start_server_groups,
    tail,
    temp_dir,
    user_spec,
)

PASSWORD = "xproc-Pw-harden-7d1f"
FUZZ_BACKLOG = 262_144  # bytes: HERALD_WS_MAX_BACKLOG_BYTES of ``fuzz``
FUZZ_SEND_TIMEOUT = 3  # s: HERALD_WS_SEND_TIMEOUT of ``fuzz``
SERVICE = "svc"  # may send notifications
USERS = [
    SERVICE,
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


@dataclass
class Rig(Deployment):
    """The rig: ``rig["f1"]`` is a server; ``redis_url`` is ``stable``'s."""

    stable: RedisServer
    fragile: RedisServer
    servers: dict[str, Server] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]


def start_rig(stack: contextlib.ExitStack) -> Rig:
    """Both redis-servers, the migrated database with :data:`USERS`, and the five servers;
    everything stops when ``stack`` closes."""
    tmp = temp_dir(stack, "herald-harden-")
    stable = start_redis(tmp, stack, "redis-stable")
    fragile = start_redis(tmp, stack, "redis-fragile")
    database_url = create_database(tmp, stack)
    env = server_env(DATABASE_URL=database_url, REDIS_URL=stable.url)
    specs = [user_spec(name, PASSWORD, can_send=name == SERVICE) for name in USERS]
    users = create_users(env, tmp, specs, migrate=True)
    rig = Rig(tmp, database_url, stable.url, users, stable, fragile)
    servers = start_server_groups(
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
            (["f1", "f2", "victim"], dict(env, REDIS_URL=fragile.url)),
        ],
        tmp,
        stack,
    )
    rig.servers = {server.name: server for server in servers}
    return rig


def traceback_free(server: Server) -> None:
    """Fail if the process logged a traceback or an unhandled application exception."""
    log = server.output()
    assert "Traceback" not in log, tail(server.log, 80)
    assert "Exception inside application" not in log, tail(server.log, 80)
