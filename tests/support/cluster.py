"""The deployment of ``tests/crossprocess``: three daphne processes on one Redis and database.

:func:`start_cluster` starts (``tests.support.rig``)

- ``redis-server`` and a private database, migrated, with the users of :data:`USERS`;
- daphne ``p1`` and ``p2``, the deployment the tests talk to, and ``quiet``, which serves one
  idle socket and nothing else, so that its Redis subscriber connection is truly idle for
  ``IDLE_SECONDS`` (the idle test runs beside the others instead of after them);
- two background probes, opened as soon as the servers are ready and checked by the last
  tests: an idle socket on ``quiet`` that records daphne's pings, and a raw-socket client on
  ``p2`` that never answers a ping (daphne must drop it).

The cluster runs with long token lifetimes and a fixed set of users. Tests that need other
settings (short token lifetimes) start their own daphne processes with
:meth:`Cluster.start_servers`, sharing the cluster's Redis and database; tests that revoke or
deactivate users create their own with :meth:`Cluster.create_users`, so no other test is affected.
"""

import contextlib
import json
import time
from dataclasses import dataclass

from websockets.sync.client import connect as sync_connect

from tests.support.rig import (
    HEARTBEAT,
    Deployment,
    Server,
    create_database,
    create_users,
    server_env,
    start_redis,
    start_servers,
    temp_dir,
    user_spec,
)
from tests.support.ws import DeadPeerProbe, IdleProbe, PingRecorder

IDLE_SECONDS = 60  # s: how long the idle socket stays silent before it is checked
PASSWORD = "xproc-Pw-{name}-7d1f"
SHORT_ACCESS_LIFETIME = 6  # s: HERALD_ACCESS_TOKEN_LIFETIME of the ``short_pair`` fixture
SHORT_TICKET_LIFETIME = 3  # s: HERALD_WS_TICKET_LIFETIME of the ``short_pair`` fixture

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


@dataclass
class Cluster(Deployment):
    """The running deployment: servers ``p1``, ``p2`` (and ``quiet``), users, probes."""

    p1: Server
    p2: Server
    quiet: Server
    started_at: float
    idle: IdleProbe | None = None
    dead_peer: DeadPeerProbe | None = None
    heartbeat: int = HEARTBEAT
    idle_seconds: int = IDLE_SECONDS

    @property
    def servers(self) -> list[Server]:
        return [self.p1, self.p2, self.quiet]


def start_cluster(stack: contextlib.ExitStack) -> Cluster:
    """Redis, a migrated private database, users, daphne ``p1``/``p2``/``quiet`` and the probes;
    everything stops when ``stack`` closes."""
    tmp = temp_dir(stack, "herald-xproc-")
    redis_url = start_redis(tmp, stack).url
    database_url = create_database(tmp, stack)
    env = server_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
    specs = [
        user_spec(name, PASSWORD.format(name=name), can_send=can_send)
        for name, can_send in USERS.items()
    ]
    users = create_users(env, tmp, specs, migrate=True)
    p1, p2, quiet = start_servers(["p1", "p2", "quiet"], env, tmp, stack)
    cluster = Cluster(tmp, database_url, redis_url, users, p1, p2, quiet, time.monotonic())

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
    return cluster
