"""``make chaos``: the combined-fault checker (docs/reliability.md, "The combined-fault checker").

``python -m bench.chaos [--seed S | --first F --seeds N] [--seconds T]``; the environment gives
the defaults: ``CHAOS_SEED`` (one seed, to reproduce it), ``CHAOS_FIRST_SEED`` (1),
``CHAOS_SEEDS`` (20 consecutive seeds), ``CHAOS_SECONDS`` (20 s of faults per seed).

Each seed starts its own deployment (``bench/chaos_rig.py``): three daphne processes with
production settings, a ``redis-server`` behind an asyncio TCP proxy, and a copy of a database
migrated once per run (PostgreSQL when ``DATABASE_URL`` is one, else an SQLite file). Then:

1. **Plan.** ``random.Random(seed)`` decides everything up front: the users, their login
   sessions and tabs (sockets), the rooms and their members, each tab's actions and when
   (:data:`ACTIONS`), the service's notifications, the faults and when (:data:`FAULTS`), and
   which login session is revoked when. Timing still varies between runs of one seed (it is a
   real deployment on a shared machine); the plan does not.
2. **Chaos.** The tabs and the service act while faults hit, together and at random: SIGKILL
   and restart of a daphne process, Redis killed and restarted empty or stopped (SIGSTOP) and
   continued, the proxy delaying, holding, cutting or refusing connections, readers that stop
   reading. Tabs behave like the browser client (``realtime/static/herald/``): reconnect with
   backoff, ``resume {notifications_since}`` and ``subscribe {room, since: seq}`` after every
   ``hello``, each room's feed applied in ``seq`` order (a hole held for ``HOLE_GRACE`` s, then
   a resubscribe from the contiguous ``seq``), unacknowledged sends retried with the same
   ``client_id``; they send, post, edit and delete their own messages and react (:data:`ACTIONS`).
3. **Settle.** Faults stop and heal; every tab reconnects and resumes; presence gets
   ``HERALD_PRESENCE_TTL + HERALD_PRESENCE_REFRESH`` to settle.
4. **Check** (:func:`check`): every property below, with counts; a failure prints the seed, the
   property and examples, and the command that reproduces the seed.

Properties (what "twice" and "in order" mean is in docs/reliability.md):

- ``acked-stored``: every acknowledged write (a message's ``ack``, a ``201``, an edit's, a
  deletion's, a reaction's ``ack``) is stored: the message, its body, its tombstone, the reaction.
- ``complete``: every tab connected at the end holds each of its rooms' feed up to the room's
  stored ``seq``, and each message as stored (body, tombstone, reactions); a change whose live
  publish was lost is a hole the tab must fill by resubscribing.
- ``delivered``: every stored notification reaches every tab of its user.
- ``seq-gap-free``: each user's stored notification seqs are 1..n.
- ``no-duplicate``: no tab applies one room ``seq`` twice; no connection receives one
  notification seq twice.
- ``order``: per connection, the room feed is applied in ``seq`` order without a gap, and
  notification seqs rise, except where the protocol allows a swap (two writes through two
  processes; a ``resume`` replay).
- ``presence``: every tab's online list of each room (the subscribe's list with the diffs
  applied) equals the users with an open, subscribed tab.
- ``revocation``: the revoked login session's sockets close with 4401 and every later
  handshake with its token is refused with 4401; no other socket ever sees 4401.
- ``clean``: no ``server_error``, no 5xx answer, no unexpected close code or ``error``.
"""

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import re
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bench.chaos_rig import (
    PRESENCE_REFRESH,
    PRESENCE_TTL,
    PRESENCE_WINDOW,
    Daphne,
    Proxy,
    Redis,
    Template,
    server_env,
)

SERVERS = 3
RATE, BURST = 8.0, 15  # client frames/s and at once: under HERALD_WS_RATE 10 / BURST 20
ACK_TIMEOUT = 8.0  # s: an ack not back by then is retried on the next connection
SETTLE_TIMEOUT = 90.0  # s: for every tab to reconnect, resume and drain its outbox
DELIVERY_TIMEOUT = 30.0  # s: for every stored item to reach every tab after the settle
PRESENCE_BOUND = PRESENCE_TTL + PRESENCE_REFRESH + PRESENCE_WINDOW  # docs/protocol.md
HOLE_GRACE = 1.0  # s: a hole in a room's feed may stay open this long (subscription.js)
REVOKE_BOUND = 1.0  # s: CONTRACT-level promise for the close after a revocation, no fault active
REVOKE_SLACK = 1.5  # s: added for a loaded 2-core machine
EXAMPLES = 5  # examples printed per violated property
# A message or change whose live publish may have been lost (its process killed, or a publish
# failure logged) within this many seconds of its ack: named in a ``complete`` failure's detail.
PUBLISH_WINDOW = 3.0
FEED = ("message", "message.updated", "message.deleted", "reaction", "member.joined",
        "member.left", "room.renamed")  # fmt: skip
EMOJI = ("👍", "🎉", "😂", "🙂")
# A self-test of the hole logic: tabs ignore this fraction of the live room feed frames they
# read (beyond the last subscribe ack's seq, once per seq), as if their publish had been lost;
# every property must still hold.
DROP_FRAMES = float(os.environ.get("CHAOS_DROP_FRAMES", "0") or 0)


def now() -> float:
    return time.monotonic()


# The plan ---------------------------------------------------------------------------------------


@dataclass
class Step:
    """One planned thing at ``at`` seconds after the chaos phase starts."""

    at: float
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TabPlan:
    key: str  # "u3.s1.t0"
    user: int  # index into the template's users
    session: int  # index into that user's sessions
    steps: list[Step]


@dataclass
class Plan:
    seed: int
    seconds: float
    users: list[int]  # template user indexes in play
    rooms: list[list[int]]  # member user indexes of each room, the owner first
    tabs: list[TabPlan]
    notifications: list[Step]  # the service's: args {recipients (user indexes), title}
    faults: list[Step]
    revoke: Step  # args {user, session}


# Tab actions: name → (weight, what one planned step carries). A new action is one entry here
# and one coroutine ``Tab.do_<name>`` (a dot in the name is an underscore there).
ACTIONS: dict[str, tuple[float, Callable[[random.Random, "PlanContext"], dict[str, Any]]]] = {}


@dataclass
class PlanContext:
    rooms_of_user: list[int]  # room indexes the tab's user belongs to


def action(name: str, weight: float) -> Callable[[Any], Any]:
    def register(build: Callable[[random.Random, PlanContext], dict[str, Any]]) -> Any:
        ACTIONS[name] = (weight, build)
        return build

    return register


def _body(rng: random.Random) -> str:
    words = ["herald", "chaos", "seq", "resume", "replay", "ping", "ünïcødé", "🙂", "lorem"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 60)))


@action("send", 5.0)
def _plan_send(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """``message.send`` over the socket, retried after reconnects until acknowledged."""
    return {
        "room": rng.choice(ctx.rooms_of_user),
        "body": _body(rng),
        "client_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }


@action("post", 1.0)
def _plan_post(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """``POST /api/rooms/{id}/messages/`` with a ``client_id``, retried until ``201``."""
    return _plan_send(rng, ctx)


@action("message.edit", 1.2)
def _plan_edit(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """``message.edit`` of one of the user's own acknowledged, not deleted messages of the room
    (``pick`` chooses among them when it runs), retried after reconnects until acknowledged."""
    return {"room": rng.choice(ctx.rooms_of_user), "pick": rng.random(), "body": _body(rng)}


@action("message.delete", 0.5)
def _plan_delete(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """``message.delete`` of one of the user's own acknowledged messages of the room."""
    return {"room": rng.choice(ctx.rooms_of_user), "pick": rng.random()}


@action("reaction.add", 1.2)
def _plan_react(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """``reaction.add`` of one emoji of :data:`EMOJI` on an acknowledged message of the room."""
    return {"room": rng.choice(ctx.rooms_of_user), "pick": rng.random(), "emoji": rng.choice(EMOJI)}


@action("reaction.remove", 0.6)
def _plan_unreact(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """``reaction.remove`` of one of the user's acknowledged reactions in the room."""
    return {"room": rng.choice(ctx.rooms_of_user), "pick": rng.random()}


@action("reconnect", 1.2)
def _plan_reconnect(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """The tab drops its socket (as a laptop lid closing) and reconnects."""
    return {"pause": round(rng.uniform(0, 1.5), 2)}


@action("slow", 0.8)
def _plan_slow(rng: random.Random, ctx: PlanContext) -> dict[str, Any]:
    """The tab stops reading its socket for a while (TCP backpressure reaches daphne)."""
    return {"seconds": round(rng.uniform(1, 6), 2)}


# Faults: name → (weight, its parameters). Each runs in ``Chaos.FAULTS``.
FAULTS: dict[str, tuple[float, Callable[[random.Random], dict[str, Any]]]] = {
    "kill_daphne": (2.0, lambda r: {"server": r.randrange(SERVERS), "down": r.uniform(0.2, 3)}),
    "kill_redis": (1.0, lambda r: {"down": r.uniform(0.2, 3)}),
    "stop_redis": (1.0, lambda r: {"seconds": r.uniform(0.5, 4)}),
    "proxy_delay": (1.2, lambda r: {"delay": r.uniform(0.01, 0.3), "seconds": r.uniform(1, 5)}),
    "proxy_hold": (1.2, lambda r: {"seconds": r.uniform(0.5, 4)}),
    "proxy_cut": (1.2, lambda r: {}),
    "proxy_refuse": (0.8, lambda r: {"seconds": r.uniform(0.5, 3)}),
}


def _weighted(rng: random.Random, table: dict[str, tuple[float, Any]]) -> str:
    names = sorted(table)
    return rng.choices(names, weights=[table[n][0] for n in names])[0]


def make_plan(seed: int, seconds: float, users_available: int) -> Plan:
    """Everything the seed decides, before anything runs."""
    rng = random.Random(seed)  # noqa: S311  (a test plan, not a secret)
    n_users = rng.randint(4, min(6, users_available))
    users = list(range(n_users))
    rooms = []
    for _ in range(rng.randint(2, 3)):
        members = rng.sample(users, rng.randint(2, n_users))
        rooms.append(members)
    for u in users:  # everyone is somewhere
        if not any(u in members for members in rooms):
            rng.choice(rooms).append(u)
    tabs = []
    for u in users:
        ctx = PlanContext([i for i, members in enumerate(rooms) if u in members])
        for s in range(rng.randint(1, 2)):
            for t in range(rng.randint(1, 2)):
                steps, at = [], rng.uniform(0, 1.5)
                while at < seconds:
                    kind = _weighted(rng, ACTIONS)
                    steps.append(Step(round(at, 3), kind, ACTIONS[kind][1](rng, ctx)))
                    at += rng.expovariate(1 / 2.5)
                tabs.append(TabPlan(f"u{u}.s{s}.t{t}", u, s, steps))
    notifications, at, k = [], rng.uniform(0, 1), 0
    while at < seconds:
        recipients = sorted(rng.sample(users, rng.randint(1, n_users)))
        notifications.append(Step(round(at, 3), "notify", {"recipients": recipients, "n": k}))
        at += rng.expovariate(1 / 1.2)
        k += 1
    faults, at = [], rng.uniform(0.5, 2.5)
    while at < seconds - 1:
        kind = _weighted(rng, FAULTS)
        faults.append(Step(round(at, 3), kind, FAULTS[kind][1](rng)))
        at += rng.expovariate(1 / 2.0)
    victim = rng.choice(tabs)
    revoke = Step(
        round(rng.uniform(0.3, 0.7) * seconds, 3),
        "revoke",
        {"user": victim.user, "session": victim.session},
    )
    return Plan(seed, seconds, users, rooms, tabs, notifications, faults, revoke)


# Records ----------------------------------------------------------------------------------------


@dataclass
class Conn:
    """One connection of a tab, as its client saw it."""

    index: int
    server: str
    started: float
    hello_at: float | None = None
    closed_at: float | None = None
    close_code: int | None = None
    refused: int | None = None  # closed before hello with this code
    notifications: list[tuple[int, int, bool]] = field(default_factory=list)  # seq, id, replay
    feed: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))  # applied seqs
    received: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))  # raw seqs
    in_resume: bool = False
    presence: dict[int, set[int]] = field(default_factory=dict)
    presence_log: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    subscribed: set[int] = field(default_factory=set)
    since: dict[int, int] = field(default_factory=dict)  # room → the hello subscribe's ``since``
    resumed: bool = False


@dataclass
class Violation:
    prop: str
    detail: str


class Run:
    """One seed's deployment, clients and records."""

    def __init__(self, plan: Plan, template: Template, tmp: Path) -> None:
        self.plan, self.template, self.tmp = plan, template, tmp
        self.data = template.data
        # choices made while running (which server a tab or a request goes to)
        self.rng = random.Random(f"{plan.seed}/run")  # noqa: S311
        self.violations: list[Violation] = []
        self.counts: Counter[str] = Counter()
        self.servers: list[Daphne] = []
        self.redis: Redis | None = None
        self.proxy: Proxy | None = None
        self.database_url = ""
        self.room_ids: list[int] = []
        self.tabs: list[Tab] = []
        # acknowledged writes
        self.acked_messages: dict[int, dict[str, Any]] = {}  # id → {room, via, user, body}
        # edits, deletions, reactions: {kind, room, message, user, body|emoji, first, at|None}
        self.changes: list[dict[str, Any]] = []
        self.acked_notifications: dict[str, dict[str, Any]] = {}  # title → {recipients, via}
        self.revoked_at: float | None = None  # when the DELETE answered 204
        self.revoke_sent_at: float | None = None  # when it was first sent
        self.revoked_session: str | None = None
        self.fault_windows: list[tuple[float, float, str]] = []  # (start, end, kind)
        self.faults_done: Counter[str] = Counter()
        self._publish_failures: list[float] | None = None
        self.wall_offset = time.time() - now()  # wall clock minus monotonic
        self.settle_at = float("inf")  # when every tab was told to reconnect
        self.chaos_started = 0.0

    def violate(self, prop: str, detail: str) -> None:
        self.violations.append(Violation(prop, detail))

    def user(self, index: int) -> dict[str, Any]:
        return self.data["users"][index]

    def rest_token(self, user_index: int) -> str:
        """The user's last login session: never used by a tab, never revoked."""
        return str(self.user(user_index)["sessions"][-1]["access"])

    def live_servers(self) -> list[Daphne]:
        return [s for s in self.servers if s.up] or self.servers

    def pick_server(self) -> Daphne:
        return self.rng.choice(self.servers)

    def lost_live(self, info: dict[str, Any] | None) -> str:
        """Why a write (``{first, at}``, seconds into the chaos) may never have been pushed
        live, if the record shows a cause between its first attempt and ``PUBLISH_WINDOW`` s
        after its ack: a daphne process killed (its publish may never have left it), or a
        publish failure in a process's log. ``""``: no such cause. Only for a failure's
        detail: a lost publish is a hole in the room's feed, which the tabs must fill."""
        if info is None or info.get("at") is None:
            return ""
        t0 = self.chaos_started
        low, high = t0 + info["first"] - 0.5, t0 + info["at"] + PUBLISH_WINDOW
        for start, _, kind in self.fault_windows:
            if kind.startswith("kill_daphne") and low <= start <= high:
                return f"{kind} at {start - t0:.1f} s"
        for at in self.publish_failures():
            if low <= at <= high:
                return f"a publish failed at {at - t0:.1f} s (daphne log)"
        return ""

    def publish_failures(self) -> list[float]:
        """When a daphne process logged a failed channel-layer send (monotonic seconds)."""
        if self._publish_failures is None:
            found = []
            for server in self.servers:
                with contextlib.suppress(OSError):
                    for line in server.log.read_text(errors="replace").splitlines():
                        if "send failed" in line or ("publishing" in line and "failed" in line):
                            stamp = re.search(r"time=(\d{4}-[\d-]+T[\d:.]+)Z", line)
                            if stamp:
                                wall = datetime.fromisoformat(stamp.group(1) + "+00:00")
                                found.append(wall.timestamp() - self.wall_offset)
            self._publish_failures = found
        return self._publish_failures

    def faults_near(self, at: float | None, margin: float = 2.0) -> list[str]:
        """The faults in effect within ``margin`` s of ``at`` (seconds into the chaos)."""
        if at is None:
            return []
        t = self.chaos_started + at
        return [
            f"{kind} {s - self.chaos_started:.1f}..{e - self.chaos_started:.1f}"
            for s, e, kind in self.fault_windows
            if s - margin < t < e + margin
        ]

    def fault_active(self, start: float, end: float) -> bool:
        return any(s < end and start < e for s, e, _ in self.fault_windows)

    async def http(
        self,
        method: str,
        path: str,
        token: str,
        body: Any = None,
        *,
        until: float | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> httpx.Response:
        """``method path`` on a random process, retried (another process) on a network error
        or a 5xx until ``until``; a 5xx is a violation (``clean``), a 429 is waited out."""
        deadline = until if until is not None else now() + 120
        attempt = 0
        while True:
            server = self.pick_server()
            try:
                async with httpx.AsyncClient(base_url=server.http, timeout=5) as client:
                    answer = await client.request(
                        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
                    )
            except httpx.HTTPError as error:
                answer, failure = None, repr(error)
            else:
                failure = ""
                self.counts["http answers"] += 1
                if answer.status_code == 503:  # a dependency down, said clearly: retried
                    self.counts["http 503"] += 1
                elif answer.status_code >= 500:
                    self.violate(
                        "clean",
                        f"{method} {path} on {server.name}: {answer.status_code} "
                        f"{answer.text[:200]}",
                    )
                elif answer.status_code == 429:
                    await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                    continue
                else:
                    if answer.status_code not in ok:
                        self.counts[f"http {answer.status_code}"] += 1
                    # which process answered, "?" when an earlier attempt may have written
                    answer.chaos_via = server.name if attempt == 0 else "?"  # type: ignore[attr-defined]
                    return answer
            attempt += 1
            if now() > deadline:
                raise RuntimeError(f"{method} {path}: no answer ({failure or 'a 5xx'})")
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))


# A tab: one socket of one login session, like the browser client --------------------------------


class Rejected(Exception):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(frame.get("code"))
        self.frame = frame


class Tab:
    """One socket of one login session, kept alive and resumed like ``connection.js`` and
    ``subscription.js``: notifications advance a contiguous base; each room keeps the highest
    contiguous feed ``seq`` (docs/protocol.md, "Gap-free resume"), drops a frame at or below
    it, holds frames beyond a hole and resubscribes from it when the hole stays open
    ``HOLE_GRACE`` s, and on every ``hello``. A send's ``ack`` does not move it."""

    def __init__(self, run: Run, plan: TabPlan) -> None:
        self.run, self.plan = run, plan
        self.key = plan.key
        self.user_index = plan.user
        user = run.user(plan.user)
        self.user_id = int(user["id"])
        session = user["sessions"][plan.session]
        self.session_id, self.access = str(session["id"]), str(session["access"])
        self.rooms = [
            run.room_ids[i] for i, members in enumerate(run.plan.rooms) if plan.user in members
        ]
        self.conns: list[Conn] = []
        self.ws: ClientConnection | None = None
        self.conn: Conn | None = None
        self.stopped = False
        self.revoked = False  # this tab's session was revoked (we know it)
        self.refusals_after_revoke = 0
        self.connected = asyncio.Event()
        self.force = asyncio.Event()  # drop the socket and reconnect now
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # run on an ``ack`` as it is read, before the next frame (as a browser's promise does)
        self.ack_hooks: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.ref = 0
        self.tokens, self.tokens_at = float(BURST), now()
        # client-level state
        self.notif_base = 0
        self.notif_ahead: set[int] = set()
        self.notifications: set[int] = set()  # ids seen
        self.pos: dict[int, int] = dict.fromkeys(self.rooms, 0)  # contiguous feed seq
        self.ahead: dict[int, dict[int, dict[str, Any]]] = {r: {} for r in self.rooms}
        self.hole_timer: dict[int, asyncio.TimerHandle | None] = dict.fromkeys(self.rooms)
        self.resyncing: dict[int, bool] = dict.fromkeys(self.rooms, False)
        self.applied: dict[int, list[int]] = {r: [] for r in self.rooms}  # every seq applied
        self.replayed_to: dict[int, int | None] = dict.fromkeys(self.rooms)  # the last ack's seq
        # The highest seq of the last subscribe's replay received so far (subscription.js).
        self.replay_seen: dict[int, int] = dict.fromkeys(self.rooms, -1)
        self.skipped: dict[int, list[tuple[int, int]]] = {r: [] for r in self.rooms}  # (seq, to)
        self.once_dropped: dict[int, set[int]] = {r: set() for r in self.rooms}  # DROP_FRAMES
        # the room as the tab shows it: message id → {body, deleted, reactions {emoji: users}}
        self.held: dict[int, dict[int, dict[str, Any]]] = {r: {} for r in self.rooms}
        self.outbox: dict[str, dict[str, Any]] = {}  # client_id → {room, body}
        self.dedupes = 0
        self.reader: asyncio.Task[None] | None = None
        self.attempt = 0

    def room_story(self, room: int, around: int) -> list[str]:
        """Each connection's ``since`` for the room, and the seqs it received and applied near
        ``around``."""
        t0 = self.run.chaos_started
        return [
            f"{c.server} {(c.hello_at or 0) - t0:.1f}..{(c.closed_at or now()) - t0:.1f}"
            f"({c.close_code}) since={c.since.get(room)} received "
            f"{[i for i in c.received.get(room, []) if abs(i - around) <= 3]} applied "
            f"{[i for i in c.feed.get(room, []) if abs(i - around) <= 3]}"
            for c in self.conns
            if c.hello_at is not None
        ]

    def timeline(self) -> list[str]:
        """Each connection: server, seconds into the chaos it said hello and closed, code."""
        t0 = self.run.chaos_started
        return [
            f"{c.server} {c.hello_at - t0:.1f}..{(c.closed_at or now()) - t0:.1f}({c.close_code})"
            for c in self.conns
            if c.hello_at is not None
        ]

    # connection lifecycle ---------------------------------------------------------------------

    async def main(self) -> None:
        while not self.stopped:
            await self._connect_once()
            if self.stopped:
                return
            delay = min(2.0, 0.15 * 2**self.attempt) * (0.5 + random.random() / 2)  # noqa: S311
            self.attempt += 1
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        server = self.run.pick_server()
        conn = Conn(len(self.conns), server.name, now())
        self.conns.append(conn)
        try:
            ws = await connect(
                server.ws,
                additional_headers={"Authorization": f"Bearer {self.access}"},
                open_timeout=10,
                ping_interval=None,
                close_timeout=2,
                max_queue=None,
                compression=None,
            )
        except (OSError, TimeoutError, InvalidHandshake) as error:
            conn.closed_at = now()
            if isinstance(error, InvalidStatus) and error.response.status_code >= 500:
                self.run.counts["handshake 5xx"] += 1
            return
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except ConnectionClosed:
            conn.closed_at, conn.refused = now(), _code(ws)
            self._refused(conn)
            return
        except (TimeoutError, OSError):
            conn.closed_at = now()
            await ws.close()
            return
        if first.get("type") != "hello":
            self.run.violate("clean", f"{self.key}: first frame {first}")
            await ws.close()
            return
        conn.hello_at = now()
        self.run.counts["hellos"] += 1
        if self.run.revoked_session == self.session_id and self.run.revoked_at is not None:
            if conn.started > self.run.revoked_at:
                self.run.violate(
                    "revocation",
                    f"{self.key} (session {self.session_id}) said hello on {server.name} "
                    f"{conn.started - self.run.revoked_at:.2f} s after the revocation answered",
                )
        self.ws, self.conn = ws, conn
        self.force.clear()
        self.reader = asyncio.ensure_future(self._read(ws, conn))
        self.connected.set()
        on_hello = asyncio.ensure_future(self._on_hello(conn))
        forced = asyncio.ensure_future(self.force.wait())
        await asyncio.wait([self.reader, forced], return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if not self.reader.done():  # we drop it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 3)
        on_hello.cancel()
        self.connected.clear()
        self.ws, self.conn = None, None
        for room in self.rooms:  # the resubscribe after the next hello covers every hole
            self._stop_hole_timer(room)
            self.resyncing[room] = False
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("disconnected"))
        self.pending.clear()
        self.ack_hooks.clear()
        if conn.hello_at and now() - conn.hello_at > 3:
            self.attempt = 0

    def _refused(self, conn: Conn) -> None:
        """Closed before ``hello``: 4401 means our login session is revoked."""
        code = conn.refused
        if code == 4401:
            if self.run.revoked_session == self.session_id:
                self.revoked = True
                self.refusals_after_revoke += 1
                self.run.counts["revoked handshakes refused 4401"] += 1
                if self.refusals_after_revoke >= 2:
                    self.stopped = True  # the browser client stops here too (connection.js)
            else:
                self.run.violate("revocation", f"{self.key}: handshake refused 4401, not revoked")
        elif code in (4503, 1011, 1006, None):
            self.run.counts[f"handshakes refused {code}"] += 1
        else:
            self.run.violate("clean", f"{self.key}: handshake closed with {code}")

    async def _read(self, ws: ClientConnection, conn: Conn) -> None:
        try:
            async for text in ws:
                self._frame(conn, json.loads(text))
        except ConnectionClosed:
            pass
        except Exception as error:  # a bug in the checker must not pass for a drop
            self.run.violate("checker", f"{self.key}: reader failed: {error!r}")
        conn.closed_at = now()
        conn.close_code = _code(ws)
        self.run.counts[f"closes {conn.close_code}"] += 1
        if conn.close_code == 4401:
            if self.run.revoked_session == self.session_id:
                self.revoked = True
            else:
                self.run.violate("revocation", f"{self.key}: closed 4401, session not revoked")
        elif conn.close_code in (4403, 4413, 4429):
            self.run.violate("clean", f"{self.key}: closed with {conn.close_code}")

    async def _on_hello(self, conn: Conn) -> None:
        """Resume, resubscribe every room from its safe position, resend the outbox."""
        sends: list[asyncio.Future[None]] = []
        try:
            conn.in_resume = True
            resume = asyncio.ensure_future(  # sent first, as the browser client does
                self.request({"type": "resume", "notifications_since": self.notif_base})
            )
            sends.append(resume)
            subs = {
                room: asyncio.ensure_future(
                    self.request(
                        {"type": "subscribe", "room": room, "since": since},
                        functools.partial(self._subscribed, room, since),
                    )
                )
                for room in self.rooms
                for since in [conn.since.setdefault(room, self.pos[room])]
            }
            sends += subs.values()
            sends += [asyncio.ensure_future(self._send_frame(cid)) for cid in list(self.outbox)]
            try:
                await resume
                conn.resumed = True
            finally:
                conn.in_resume = False
            for room, sub in subs.items():
                ack = await sub
                conn.subscribed.add(room)
                if room not in conn.presence:  # the presence frame may come first
                    conn.presence[room] = set(ack.get("presence") or [])
            await asyncio.gather(*sends[1 + len(subs) :], return_exceptions=True)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            return
        except Rejected as rejected:
            self.run.violate("clean", f"{self.key}: refused after hello: {rejected.frame}")
        finally:
            for task in sends:
                task.cancel()
                task.add_done_callback(_consume)

    def _subscribed(self, room: int, since: int, ack: dict[str, Any]) -> None:
        """The ``ack`` of a ``subscribe {room, since}``: the room's latest ``seq``, read before
        the socket joined the room's group, is never below ``since`` (a room's seq never goes
        back); it may be below the position now, when live frames overtook a slow ``ack``
        (the position stays: going back would apply those changes twice). Frames still held
        beyond a hole get a new grace period."""
        self.resyncing[room] = False
        latest = ack.get("seq")
        if isinstance(latest, int):
            self.replayed_to[room] = latest
            self.replay_seen[room] = -1
        if not isinstance(latest, int) or latest < since:
            self.run.violate("order", f"{self.key}: room {room} subscribe since {since} "
                             f"acknowledged with seq {latest}")  # fmt: skip
        elif latest < self.pos[room]:
            self.run.counts["subscribe acks below the position (live frames first)"] += 1
        if self.ahead[room] and self.hole_timer[room] is None:
            self._start_hole_timer(room)

    def _start_hole_timer(self, room: int) -> None:
        loop = asyncio.get_running_loop()
        self.hole_timer[room] = loop.call_later(HOLE_GRACE, self._fill_hole, room)

    def _stop_hole_timer(self, room: int) -> None:
        timer = self.hole_timer[room]
        if timer is not None:
            timer.cancel()
            self.hole_timer[room] = None

    def _fill_hole(self, room: int) -> None:
        """The hole stayed open ``HOLE_GRACE`` s: subscribe again from the contiguous seq."""
        self.hole_timer[room] = None
        if not self.ahead[room] or self.ws is None:
            return
        following = min(self.ahead[room])
        replayed_to = self.replayed_to[room]
        if self.replay_seen[room] >= following:
            # subscription.js: the replay (in seq order) went past the hole without filling
            # it, so those changes no longer exist (docs/protocol.md); skip them. Nothing is
            # deleted outright here: ``complete`` fails on every skipped seq.
            for seq in range(self.pos[room] + 1, following):
                self.skipped[room].append((seq, replayed_to))
            self.run.counts["holes skipped"] += 1
            self.pos[room] = following - 1
            if self.conn is not None:
                self._drain(self.conn, room)
            return
        self.resyncing[room] = True
        self.run.counts["hole resubscribes"] += 1
        task = asyncio.ensure_future(self._resubscribe(room))
        task.add_done_callback(_consume)

    async def _resubscribe(self, room: int) -> None:
        since = self.pos[room]
        try:
            await self.request(
                {"type": "subscribe", "room": room, "since": since},
                functools.partial(self._subscribed, room, since),
            )
        except (ConnectionError, TimeoutError):
            self.resyncing[room] = False
            return
        except Rejected as rejected:
            self.resyncing[room] = False
            self.run.violate("clean", f"{self.key}: resubscribe refused: {rejected.frame}")

    # frames -----------------------------------------------------------------------------------

    def _frame(self, conn: Conn, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        self.run.counts["frames"] += 1
        if kind == "ack":
            hook = self.ack_hooks.pop(str(frame.get("ref")), None)
            if hook is not None:
                hook(frame)
            future = self.pending.pop(str(frame.get("ref")), None)
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "error":
            future = self.pending.pop(str(frame.get("ref")), None)
            if frame.get("code") == "server_error":
                self.run.violate("clean", f"{self.key}: {frame}")
            if future is not None and not future.done():
                future.set_exception(Rejected(frame))
            elif future is None:
                self.run.violate("clean", f"{self.key}: unsolicited error {frame}")
        elif kind == "notification":
            n = frame["notification"]
            conn.notifications.append((int(n["seq"]), int(n["id"]), conn.in_resume))
            self._deliver_notification(int(n["seq"]), int(n["id"]))
        elif kind in FEED:
            self._feed(conn, frame)
        elif kind == "presence":
            room = int(frame["room"])
            conn.presence_log.append((now(), frame))
            if frame.get("online") is not None:
                conn.presence[room] = set(frame["online"])
            else:
                view = conn.presence.setdefault(room, set())
                view |= set(frame.get("joined") or [])
                view -= set(frame.get("left") or [])
        elif kind not in ("pong", "typing", "room.read", "notification.read", "auth.expiring"):
            self.run.violate("clean", f"{self.key}: unexpected frame {frame}")

    def _deliver_notification(self, seq: int, nid: int) -> None:
        if seq > self.notif_base:
            self.notif_ahead.add(seq)
        while self.notif_base + 1 in self.notif_ahead:
            self.notif_base += 1
            self.notif_ahead.discard(self.notif_base)
        if nid in self.notifications:
            self.dedupes += 1
        self.notifications.add(nid)

    def _feed(self, conn: Conn, frame: dict[str, Any]) -> None:
        """A frame of a room's feed, live or replayed: applied once, in ``seq`` order."""
        room, seq = int(frame["room"]), frame.get("seq")
        if room not in self.pos or not isinstance(seq, int):
            self.run.violate("clean", f"{self.key}: feed frame of room {room}: {frame}")
            return
        replayed_to = self.replayed_to[room]
        if (
            DROP_FRAMES
            and seq > (replayed_to if replayed_to is not None else 0)
            and seq not in self.once_dropped[room]
            and self.run.rng.random() < DROP_FRAMES
        ):  # past the last replay's reach, so live: its publish "lost", once per seq
            self.once_dropped[room].add(seq)
            self.run.counts["feed frames dropped on purpose"] += 1
            return
        conn.received[room].append(seq)
        self.run.counts["feed frames"] += 1
        if replayed_to is not None and seq <= replayed_to:  # after the ack: the replay's
            self.replay_seen[room] = max(self.replay_seen[room], seq)
        if seq <= self.pos[room]:
            self.dedupes += 1
            return
        if seq > self.pos[room] + 1:
            self.ahead[room][seq] = frame
            self.run.counts["feed frames held beyond a hole"] += 1
            if self.hole_timer[room] is None and not self.resyncing[room]:
                self._start_hole_timer(room)
            return
        self._apply(conn, room, frame)
        self._drain(conn, room)

    def _drain(self, conn: Conn, room: int) -> None:
        while self.pos[room] + 1 in self.ahead[room]:
            self._apply(conn, room, self.ahead[room].pop(self.pos[room] + 1))
        for held in [s for s in self.ahead[room] if s <= self.pos[room]]:
            del self.ahead[room][held]
        if not self.ahead[room]:
            self._stop_hole_timer(room)

    def _apply(self, conn: Conn, room: int, frame: dict[str, Any]) -> None:
        seq = int(frame["seq"])
        self.pos[room] = seq
        conn.feed[room].append(seq)
        self.applied[room].append(seq)
        kind, held = frame["type"], self.held[room]
        if kind in ("message", "message.updated", "message.deleted"):
            m = frame["message"]
            if kind != "message" and int(m["id"]) not in held:
                self.run.violate("order", f"{self.key}: room {room} seq {seq}: {kind} of "
                                 f"message {m['id']}, never received")  # fmt: skip
            held[int(m["id"])] = _shown(m)
        elif kind == "reaction":
            mid = int(frame["message"])
            if mid not in held:
                self.run.violate("order", f"{self.key}: room {room} seq {seq}: reaction on "
                                 f"message {mid}, never received")  # fmt: skip
                return
            held[mid]["reactions"] = _reactions(frame["reactions"])

    # requests ---------------------------------------------------------------------------------

    async def request(
        self,
        frame: dict[str, Any],
        on_ack: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Send ``frame`` with a fresh ``ref``; its ``ack`` (``Rejected`` for an ``error``,
        ``ConnectionError`` when the socket goes, ``TimeoutError`` after ``ACK_TIMEOUT``)."""
        ws = self.ws
        if ws is None:
            raise ConnectionError("not connected")
        self.ref += 1
        ref = f"r{self.ref}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        self.pending[ref] = future
        if on_ack is not None:
            self.ack_hooks[ref] = on_ack
        await self._token()
        if self.ws is not ws:
            raise ConnectionError("disconnected")
        try:
            await ws.send(json.dumps({**frame, "ref": ref}))
        except ConnectionClosed as error:
            raise ConnectionError("disconnected") from error
        return await asyncio.wait_for(future, ACK_TIMEOUT)

    async def _token(self) -> None:
        """The client's token bucket (``RATE``, ``BURST``), as ``connection.js`` keeps one."""
        while True:
            t = now()
            self.tokens = min(BURST, self.tokens + (t - self.tokens_at) * RATE)
            self.tokens_at = t
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / RATE)

    async def _send_frame(self, client_id: str) -> None:
        item = self.outbox.get(client_id)
        if item is None:
            return
        item["tries"] += 1
        try:
            ack = await self.request(
                {
                    "type": "message.send",
                    "room": item["room"],
                    "body": item["body"],
                    "client_id": client_id,
                }  # fmt: skip
            )
        except Rejected as rejected:
            if rejected.frame.get("code") == "rate_limited":
                self.run.counts["rate_limited"] += 1
                return  # the next hello resends it
            self.outbox.pop(client_id, None)
            self.run.violate("clean", f"{self.key}: send refused: {rejected.frame}")
            return
        except (ConnectionError, TimeoutError):
            return  # the next hello resends it
        if client_id not in self.outbox:
            return
        del self.outbox[client_id]
        message = ack["message"]
        self.run.acked_messages[int(message["id"])] = {
            "room": item["room"], "client_id": client_id, "user": self.user_id,
            "body": item["body"], "seq": message.get("seq"),
            "via": self.conn.server if self.conn and item["tries"] == 1 else "?",
            "first": item["first"], "at": round(now() - self.run.chaos_started, 2),
        }  # fmt: skip
        # Not a delivery: the ack says nothing of the messages before it, which may have been
        # lost live (a resume position moved by acks would skip them; docs/reliability.md).

    # planned actions --------------------------------------------------------------------------

    async def act(self, step: Step) -> None:
        if self.stopped:
            return
        await getattr(self, f"do_{step.kind.replace('.', '_')}")(**step.args)

    async def do_send(self, room: int, body: str, client_id: str) -> None:
        room_id = self.run.room_ids[room]
        first = round(now() - self.run.chaos_started, 2)
        self.outbox[client_id] = {"room": room_id, "body": body, "tries": 0, "first": first}
        self.run.counts["sends planned"] += 1
        while client_id in self.outbox and not self.stopped:
            if self.ws is not None:
                await self._send_frame(client_id)
                return  # still unacked: every hello resends it
            await asyncio.sleep(0.2)

    async def do_post(self, room: int, body: str, client_id: str) -> None:
        room_id = self.run.room_ids[room]
        self.run.counts["posts planned"] += 1
        first = round(now() - self.run.chaos_started, 2)
        answer = await self.run.http(
            "POST", f"/api/rooms/{room_id}/messages/", self.run.rest_token(self.user_index),
            {"body": body, "client_id": client_id},
        )  # fmt: skip
        if answer.status_code != 201:
            self.run.violate("clean", f"{self.key}: POST message: {answer.status_code}")
            return
        self.run.acked_messages[int(answer.json()["id"])] = {
            "room": room_id, "client_id": client_id, "via": _via(answer), "user": self.user_id,
            "body": body, "seq": answer.json().get("seq"),
            "first": first, "at": round(now() - self.run.chaos_started, 2),
        }  # fmt: skip

    def _pick(self, room: int, pick: float, mine: bool) -> int | None:
        """One of the room's acknowledged messages not known deleted (the user's own when
        ``mine``), chosen by ``pick`` in [0, 1); ``None`` when there is none."""
        deleted = {c["message"] for c in self.run.changes if c["kind"] == "message.delete"}
        ids = sorted(
            mid
            for mid, info in self.run.acked_messages.items()
            if info["room"] == room and mid not in deleted
            and (not mine or info["user"] == self.user_id)
        )  # fmt: skip
        return ids[int(pick * len(ids))] if ids else None

    async def _change(self, kind: str, room: int, message: int, **extra: Any) -> None:
        """Send the command ``kind`` until acknowledged (after reconnects, like a send), and
        record it in ``Run.changes``: ``at`` stays ``None`` unless acknowledged. ``not_found``
        is expected once the message is deleted (by this user's other tab, or a retried
        deletion that had already been stored)."""
        record = {"kind": kind, "room": room, "message": message, "user": self.user_id,
                  "first": round(now() - self.run.chaos_started, 2), "at": None, **extra}  # fmt: skip
        self.run.changes.append(record)
        self.run.counts[f"{kind} planned"] += 1
        while not self.stopped:
            if self.ws is None:
                await asyncio.sleep(0.2)
                continue
            try:
                ack = await self.request({"type": kind, "room": room, "message": message, **extra})
            except (ConnectionError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            except Rejected as rejected:
                code = rejected.frame.get("code")
                if code == "rate_limited":
                    self.run.counts["rate_limited"] += 1
                    await asyncio.sleep(0.5)
                    continue
                record["refused"] = code
                if code == "not_found":
                    self.run.counts[f"{kind} not_found (deleted meanwhile)"] += 1
                else:
                    self.run.violate("clean", f"{self.key}: {kind} refused: {rejected.frame}")
                return
            record["at"] = round(now() - self.run.chaos_started, 2)
            record["ack"] = ack
            return

    async def do_message_edit(self, room: int, pick: float, body: str) -> None:
        room_id = self.run.room_ids[room]
        message = self._pick(room_id, pick, mine=True)
        if message is not None:
            await self._change("message.edit", room_id, message, body=body)

    async def do_message_delete(self, room: int, pick: float) -> None:
        room_id = self.run.room_ids[room]
        message = self._pick(room_id, pick, mine=True)
        if message is not None:
            await self._change("message.delete", room_id, message)

    async def do_reaction_add(self, room: int, pick: float, emoji: str) -> None:
        room_id = self.run.room_ids[room]
        message = self._pick(room_id, pick, mine=False)
        if message is not None:
            await self._change("reaction.add", room_id, message, emoji=emoji)

    async def do_reaction_remove(self, room: int, pick: float) -> None:
        room_id = self.run.room_ids[room]
        given = sorted(
            {(c["message"], c["emoji"]) for c in self.run.changes
             if c["kind"] == "reaction.add" and c["room"] == room_id and c["user"] == self.user_id
             and c["at"] is not None}
        )  # fmt: skip
        if given:
            message, emoji = given[int(pick * len(given))]
            await self._change("reaction.remove", room_id, message, emoji=emoji)

    async def do_reconnect(self, pause: float) -> None:
        if self.ws is not None:
            self.force.set()
            self.run.counts["planned reconnects"] += 1

    async def do_slow(self, seconds: float) -> None:
        ws = self.ws
        if ws is None:
            return
        self.run.counts["slow readers"] += 1
        transport = ws.transport
        transport.pause_reading()
        try:
            await asyncio.sleep(seconds)
        finally:
            with contextlib.suppress(Exception):
                transport.resume_reading()


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a request's failure as seen (a send that lost its socket is resent later)."""
    if not future.cancelled():
        future.exception()


def _reactions(rows: list[dict[str, Any]]) -> dict[str, frozenset[int]]:
    """``[{emoji, count, users}]`` as ``{emoji: users}`` (an emoji nobody keeps is absent)."""
    return {r["emoji"]: frozenset(int(u) for u in r["users"]) for r in rows if r["users"]}


def _shown(message: dict[str, Any]) -> dict[str, Any]:
    """What a user sees of a message: its body, whether it is a tombstone, its reactions."""
    return {
        "body": message["body"],
        "deleted": bool(message["deleted"]),
        "reactions": _reactions(message.get("reactions") or []),
    }


def _via(answer: httpx.Response) -> str:
    return str(getattr(answer, "chaos_via", "?"))


def _code(ws: ClientConnection) -> int | None:
    """The close code the server sent (``None``: the connection dropped without one)."""
    received = ws.protocol.close_rcvd
    if received is not None:
        return int(received.code)
    return None


# Faults -----------------------------------------------------------------------------------------


class Chaos:
    """Runs the plan's faults; :meth:`heal` undoes every one still in effect."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.tasks: set[asyncio.Task[None]] = set()
        self.down: set[int] = set()

    def start(self, step: Step) -> None:
        task = asyncio.ensure_future(self._run(step))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, step: Step) -> None:
        started = now()
        try:
            done = await getattr(self, step.kind)(**step.args)
            if done is not False:
                self.run.faults_done[step.kind] += 1
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.run.violate("checker", f"fault {step.kind}: {error!r}")
        finally:
            kind = step.kind
            if kind == "kill_daphne":
                kind += f" p{step.args['server'] + 1}"
            self.run.fault_windows.append((started, now(), kind))

    async def kill_daphne(self, server: int, down: float) -> bool:
        target = self.run.servers[server]
        if server in self.down or len(self.down) >= SERVERS - 1:
            return False
        self.down.add(server)
        try:
            target.kill()
            await asyncio.sleep(down)
            target.start()
            await target.wait("/healthz")
        finally:
            self.down.discard(server)
        return True

    async def kill_redis(self, down: float) -> bool:
        redis = self.run.redis
        assert redis is not None
        if redis.process is None:
            return False
        redis.kill()
        await asyncio.sleep(down)
        await redis.start()
        return True

    async def stop_redis(self, seconds: float) -> bool:
        redis = self.run.redis
        assert redis is not None
        if not redis.up:
            return False
        redis.pause()
        await asyncio.sleep(seconds)
        redis.resume()
        return True

    async def proxy_delay(self, delay: float, seconds: float) -> None:
        proxy = self.run.proxy
        assert proxy is not None
        proxy.delay = delay
        await asyncio.sleep(seconds)
        proxy.delay = 0.0

    async def proxy_hold(self, seconds: float) -> None:
        proxy = self.run.proxy
        assert proxy is not None
        proxy.hold()
        await asyncio.sleep(seconds)
        proxy.release()

    async def proxy_cut(self) -> None:
        assert self.run.proxy is not None
        self.run.counts["connections cut"] += self.run.proxy.cut()

    async def proxy_refuse(self, seconds: float) -> None:
        proxy = self.run.proxy
        assert proxy is not None
        proxy.refuse = True
        await asyncio.sleep(seconds)
        proxy.refuse = False

    async def heal(self) -> None:
        """Let every fault finish its own undo, then make sure all is up."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=30)
        for task in list(self.tasks):
            task.cancel()
        run = self.run
        assert run.redis is not None
        assert run.proxy is not None
        run.proxy.heal()
        run.redis.resume()
        if run.redis.process is None:
            await run.redis.start()
        for server in run.servers:
            if not server.up:
                server.start()
        await asyncio.gather(*(s.wait("/readyz") for s in run.servers))


# One seed ---------------------------------------------------------------------------------------


async def setup(run: Run) -> None:
    seed_tmp = run.tmp
    run.database_url = run.template.copy(f"s{run.plan.seed}")
    run.redis = Redis(seed_tmp)
    await run.redis.start()
    run.proxy = Proxy(run.redis.port)
    await run.proxy.start()
    env = server_env(run.database_url, run.proxy.url, seed_tmp / "metrics")
    run.servers = [Daphne(f"p{i + 1}", env, seed_tmp / f"daphne-p{i + 1}.log") for i in
                   range(SERVERS)]  # fmt: skip
    for server in run.servers:
        server.start()
    await asyncio.gather(*(s.wait("/readyz") for s in run.servers))
    # rooms, created by their first member
    for members in run.plan.rooms:
        owner, others = members[0], members[1:]
        answer = await run.http(
            "POST", "/api/rooms/", run.rest_token(owner),
            {"name": f"room {len(run.room_ids)}",
             "members": [run.user(u)["id"] for u in others]},
        )  # fmt: skip
        if answer.status_code != 201:
            raise RuntimeError(f"creating a room: {answer.status_code} {answer.text}")
        run.room_ids.append(int(answer.json()["id"]))


async def teardown(run: Run) -> None:
    for server in run.servers:
        server.close()
    if run.proxy is not None:
        await run.proxy.close()
    if run.redis is not None:
        run.redis.close()
    if run.database_url:
        run.template.drop(run.database_url)


async def notify(run: Run, step: Step, until: float) -> None:
    service = run.data["service"]["sessions"][0]["access"]
    title = f"seed {run.plan.seed} n{step.args['n']}"
    first = round(now() - run.chaos_started, 2)
    recipients = [run.user(u)["id"] for u in step.args["recipients"]]
    answer = await run.http(
        "POST", "/api/notifications/", service,
        {"recipients": recipients, "title": title, "body": title, "idempotency_key": title},
        until=until,
    )  # fmt: skip
    if answer.status_code != 201:
        run.violate("clean", f"POST notification: {answer.status_code} {answer.text[:200]}")
        return
    run.acked_notifications[title] = {
        "recipients": set(recipients), "via": _via(answer), "first": first,
        "at": round(now() - run.chaos_started, 2),
    }  # fmt: skip


async def revoke(run: Run, step: Step, until: float) -> None:
    user = run.user(step.args["user"])
    session_id = str(user["sessions"][step.args["session"]]["id"])
    run.revoked_session = session_id  # tabs treat a 4401 as expected from now on
    run.revoke_sent_at = now()
    attempts = 0
    while True:
        attempts += 1
        answer = await run.http(
            "DELETE", f"/api/auth/sessions/{session_id}/", run.rest_token(step.args["user"]),
            until=until, ok=(204, 404),
        )  # fmt: skip
        if answer.status_code == 204 or (answer.status_code == 404 and attempts > 1):
            run.revoked_at = now()
            run.counts["sessions revoked"] += 1
            return
        if answer.status_code == 404:
            run.violate("revocation", f"DELETE session: 404 at the first attempt {answer.text}")
            return
        await asyncio.sleep(0.3)


async def scheduled(start: float, steps: list[Step], do: Callable[[Step], Awaitable[None]],
                    tasks: set[asyncio.Task[Any]]) -> None:  # fmt: skip
    """Start each step at its time (without waiting for the one before)."""
    for step in steps:
        delay = start + step.at - now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(do(step))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def run_seed(run: Run) -> None:
    plan = run.plan
    await setup(run)
    run.tabs = [Tab(run, tp) for tp in plan.tabs]
    mains = [asyncio.ensure_future(tab.main()) for tab in run.tabs]
    await asyncio.wait_for(asyncio.gather(*(t.connected.wait() for t in run.tabs)), 60)
    chaos = Chaos(run)
    run.chaos_started = start = now()
    print(f"seed {plan.seed}: chaos starts at {time.strftime('%H:%M:%S', time.gmtime())} UTC "
          f"(logs in {run.tmp})", flush=True)  # fmt: skip
    end = start + plan.seconds
    work: set[asyncio.Task[Any]] = set()
    drivers = [
        scheduled(start, plan.faults, lambda s: _fault(chaos, s), work),
        scheduled(start, plan.notifications, lambda s: notify(run, s, end + 120), work),
        scheduled(start, [plan.revoke], lambda s: revoke(run, s, end + 120), work),
    ]
    by_key = {tab.key: tab for tab in run.tabs}
    for tp in plan.tabs:
        drivers.append(scheduled(start, tp.steps, by_key[tp.key].act, work))
    await asyncio.gather(*drivers)
    await asyncio.sleep(max(0.0, end - now()))
    # settle: faults heal, writes finish, every tab reconnects and resumes
    settle_started = now()
    await chaos.heal()
    if work:
        await asyncio.wait(list(work), timeout=SETTLE_TIMEOUT)
    await holes_filled(run)
    healed = run.settle_at = now()
    for tab in run.tabs:  # a revoked session's socket must be closed by now
        conn = tab.conn
        if (
            tab.session_id == run.revoked_session
            and run.revoked_at is not None
            and conn is not None
            and conn.started < run.revoked_at
        ):
            run.violate("revocation", f"{tab.key}: still open {healed - run.revoked_at:.1f} s "
                        f"after the revocation (connected to {conn.server})")  # fmt: skip
    for tab in run.tabs:
        tab.attempt = 0
        tab.force.set()
    await settle(run, healed)
    run.counts["settle seconds"] = round(now() - settle_started, 1)
    await check(run)
    for tab in run.tabs:
        tab.stopped = True
        tab.force.set()
    for task in mains:
        task.cancel()
    await asyncio.gather(*mains, return_exceptions=True)


async def holes_filled(run: Run) -> None:
    """Faults healed, writes done: a tab still connected fills every hole in its rooms' feeds
    by itself (a resubscribe ``HOLE_GRACE`` s after it opened), before the settle reconnects
    it. A hole still open ``HOLE_GRACE`` + 4 s later fails ``complete``."""
    deadline = now() + HOLE_GRACE + 4

    def open_holes() -> list[str]:
        return [
            f"{tab.key}: room {room} still at seq {tab.pos[room]} holding "
            f"{sorted(tab.ahead[room])[:10]} after the faults healed, connected to "
            f"{tab.conn.server}; {tab.room_story(room, tab.pos[room] + 1)}"
            for tab in run.tabs
            if tab.conn is not None and tab.conn.resumed and not tab.stopped
            for room in tab.rooms
            if tab.ahead[room]
        ]

    while (holes := open_holes()) and now() < deadline:  # noqa: ASYNC110  (polls the tabs)
        await asyncio.sleep(0.25)
    for hole in holes:
        run.violate("complete", hole)


async def _fault(chaos: Chaos, step: Step) -> None:
    chaos.start(step)


def _settled(tab: Tab, since: float) -> bool:
    conn = tab.conn
    return (
        conn is not None
        and conn.started >= since
        and conn.resumed
        and conn.subscribed >= set(tab.rooms)
        and not tab.outbox
    )


async def settle(run: Run, since: float) -> None:
    deadline = now() + SETTLE_TIMEOUT
    live = [t for t in run.tabs if not t.stopped and run.revoked_session != t.session_id]
    while not all(_settled(t, since) for t in live):
        if now() > deadline:
            for tab in live:
                if not _settled(tab, since):
                    conn = tab.conn
                    run.violate(
                        "delivered",
                        f"{tab.key}: not resumed {SETTLE_TIMEOUT:.0f} s after the faults "
                        f"healed (connected: {conn is not None}, outbox {len(tab.outbox)})",
                    )
            return
        for tab in live:  # an unacked send waits for the next hello: give it one
            conn = tab.conn
            if conn is not None and conn.started >= since and conn.resumed and tab.outbox:
                for cid in list(tab.outbox):
                    asyncio.ensure_future(tab._send_frame(cid))
        await asyncio.sleep(0.5)
    # the revoked session's tabs: give each a reconnect attempt after the revocation
    for tab in run.tabs:
        if run.revoked_session == tab.session_id and not tab.stopped:
            tab.force.set()


# Checks -----------------------------------------------------------------------------------------


@dataclass
class Truth:
    """What is stored at the end, over REST."""

    seq: dict[int, int]  # room → its latest feed seq
    messages: dict[int, dict[int, dict[str, Any]]]  # room → message id → ``_shown``
    notifications: dict[int, list[dict[str, Any]]]  # user id → rows


async def stored_truth(run: Run) -> Truth:
    """Every stored message per room (as shown), each room's ``seq``, and every notification
    per user, over REST."""
    truth = Truth({}, {}, {})
    for index, room in enumerate(run.room_ids):
        token = run.rest_token(run.plan.rooms[index][0])
        shown, path = {}, f"/api/rooms/{room}/messages/?page_size=200"
        while path:
            page = (await run.http("GET", path, token)).json()
            shown.update({int(m["id"]): _shown(m) for m in page["results"]})
            path = _relative(page.get("next"))
        truth.messages[room] = shown
        truth.seq[room] = int((await run.http("GET", f"/api/rooms/{room}/", token)).json()["seq"])
    for u in run.plan.users:
        rows, path = [], "/api/notifications/?page_size=200"
        while path:
            page = (await run.http("GET", path, run.rest_token(u))).json()
            rows += page["results"]
            path = _relative(page.get("next"))
        truth.notifications[int(run.user(u)["id"])] = rows
    return truth


def _relative(url: str | None) -> str:
    if not url:
        return ""
    parts = httpx.URL(url)
    return parts.raw_path.decode()


def _last(changes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The acknowledged change that must have committed last among ``changes`` (each attempted
    at ``first`` and acknowledged at ``at``, ``None`` if never): the latest acknowledged one,
    when it was first sent after every other one was acknowledged (else they were in flight
    together, and either order is right: ``None``)."""
    acked = [c for c in changes if c["at"] is not None]
    if not acked:
        return None
    last = max(acked, key=lambda c: c["at"])
    others = [c for c in changes if c is not last]
    if all(c["at"] is not None and c["at"] <= last["first"] for c in others):
        return last
    return None


def acked_changes_check(run: Run, truth: Truth) -> None:
    """``acked-stored`` for edits, deletions and reactions: an acknowledged deletion left a
    tombstone; the last acknowledged edit of a message still there is its body; the last
    acknowledged reaction command of a (message, user, emoji) decides whether it is there."""
    counts = run.counts
    by_message: dict[int, list[dict[str, Any]]] = defaultdict(list)
    by_reaction: dict[tuple[int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for change in run.changes:
        if change["kind"].startswith("reaction"):
            key = (change["message"], change["user"], change["emoji"])
            by_reaction[key].append(change)
        else:
            by_message[change["message"]].append(change)
        if change["at"] is not None:
            counts[f"acked {change['kind']}"] += 1
    for mid, changes in by_message.items():
        room = changes[0]["room"]
        stored = truth.messages[room].get(mid)
        if stored is None:
            run.violate("acked-stored", f"message {mid} edited or deleted, not stored")
            continue
        if any(c["kind"] == "message.delete" and c["at"] is not None for c in changes):
            if not stored["deleted"]:
                run.violate("acked-stored", f"message {mid}: deletion acked, not a tombstone "
                            f"{stored}; {changes}")  # fmt: skip
            continue
        if stored["deleted"]:
            continue  # a deletion whose ack was lost
        edits = [c for c in changes if c["kind"] == "message.edit"]
        last = _last(edits)
        if last is not None:
            counts["edits checked"] += 1
            if stored["body"] != last["body"]:
                run.violate("acked-stored", f"message {mid}: body {stored['body'][:40]!r}, "
                            f"the last acked edit {last}")  # fmt: skip
        elif edits:
            bodies = {c["body"] for c in edits}  # in flight together: any of them
            if not any(c["at"] is not None for c in edits):  # none acknowledged: maybe none
                bodies.add(run.acked_messages.get(mid, {}).get("body", stored["body"]))
            if stored["body"] not in bodies:
                run.violate("acked-stored", f"message {mid}: body {stored['body'][:40]!r}, none "
                            f"of its edits {edits}")  # fmt: skip
    for (mid, user, emoji), changes in by_reaction.items():
        room = changes[0]["room"]
        stored = truth.messages[room].get(mid)
        last = _last(changes)
        if stored is None or stored["deleted"] or last is None:
            continue
        counts["reactions checked"] += 1
        there = user in stored["reactions"].get(emoji, frozenset())
        if there != (last["kind"] == "reaction.add"):
            run.violate("acked-stored", f"message {mid}: user {user}'s {emoji} "
                        f"{'there' if there else 'absent'} after {last}")  # fmt: skip


def complete_errors(run: Run, truth: Truth, tabs: list["Tab"]) -> list[tuple[str, str]]:
    """Each tab holds every room's feed up to its stored ``seq`` and every message as stored
    (``complete``), and every notification of its user (``delivered``): ``(property, detail)``."""
    out = []
    for tab in tabs:
        if tab.stopped:
            continue
        for room in tab.rooms:
            stored, held = truth.messages[room], tab.held[room]
            if tab.pos[room] != truth.seq[room]:
                first = tab.pos[room] + 1
                change = _change_at(run, truth, room, first)
                out.append((
                    "complete",
                    f"{tab.key}: room {room} applied up to seq {tab.pos[room]} of "
                    f"{truth.seq[room]} (held beyond: {sorted(tab.ahead[room])[:10]}); seq "
                    f"{first}: {change}, its publish maybe lost: "
                    f"{run.lost_live(change) or 'no cause on record'}, faults then: "
                    f"{run.faults_near((change or {}).get('at'))}; "
                    f"tab's connections {tab.room_story(room, first)}",
                ))  # fmt: skip
                continue
            if tab.skipped[room]:
                seq, to = tab.skipped[room][0]
                out.append(("complete", f"{tab.key}: room {room} skipped seqs "
                            f"{[s for s, _ in tab.skipped[room]][:10]} (seq {seq}: the replay of a "
                            f"subscribe acknowledged with seq {to} had not brought it 1 s later); "
                            f"{tab.room_story(room, seq)}"))  # fmt: skip
            wrong = [m for m in stored if held.get(m) != stored[m]] + sorted(held - stored.keys())
            if wrong:
                m = wrong[0]
                out.append(("complete", f"{tab.key}: room {room} shows {len(wrong)} message(s) "
                            f"unlike the store, e.g. {m}: {held.get(m)} vs stored "
                            f"{stored.get(m)}; {run.acked_messages.get(m)}"))  # fmt: skip
        want = {int(r["id"]) for r in truth.notifications[tab.user_id]}
        lost = want - tab.notifications
        if lost:
            out.append(("delivered", f"{tab.key}: missing notifications {sorted(lost)[:10]}"))
    return out


def _change_at(run: Run, truth: Truth, room: int, seq: int) -> dict[str, Any] | None:
    """Our record of the message created as ``seq`` in ``room``, if it is one of ours."""
    for mid, info in run.acked_messages.items():
        if info["room"] == room and info.get("seq") == seq:
            return {"message": mid, **info}
    return None


async def check(run: Run) -> None:
    plan, counts = run.plan, run.counts
    live = [t for t in run.tabs if run.revoked_session != t.session_id]
    truth = await stored_truth(run)
    notifications = truth.notifications
    members = {
        run.room_ids[i]: {int(run.user(u)["id"]) for u in m} for i, m in enumerate(plan.rooms)
    }
    # acked-stored
    for mid, info in run.acked_messages.items():
        counts["acked messages"] += 1
        stored = truth.messages[info["room"]].get(mid)
        if stored is None:
            run.violate("acked-stored", f"message {mid} acked ({info}) but not stored")
        elif (
            not stored["deleted"]
            and not any(c["message"] == mid and c["kind"] == "message.edit" for c in run.changes)
            and stored["body"] != info["body"].strip()
        ):
            run.violate("acked-stored", f"message {mid}: stored body {stored['body'][:40]!r}, "
                        f"sent {info['body'][:40]!r}")  # fmt: skip
    acked_changes_check(run, truth)
    titles = defaultdict(set)
    for uid, rows in notifications.items():
        for row in rows:
            titles[row["title"]].add(uid)
    for title, info in run.acked_notifications.items():
        counts["acked notifications"] += 1
        if not info["recipients"] <= titles.get(title, set()):
            run.violate("acked-stored", f"notification {title!r} acked but not stored for "
                        f"{sorted(info['recipients'] - titles.get(title, set()))}")  # fmt: skip
    # seq-gap-free
    for uid, rows in notifications.items():
        seqs = sorted(int(r["seq"]) for r in rows)
        counts["stored notifications"] += len(seqs)
        if seqs != list(range(1, len(seqs) + 1)):
            run.violate("seq-gap-free", f"user {uid}: seqs {seqs[:20]}…")
    counts["stored messages"] = sum(len(m) for m in truth.messages.values())
    counts["stored feed changes"] = sum(truth.seq.values())

    # complete and delivered (wait for stragglers first)
    deadline = now() + DELIVERY_TIMEOUT
    while (gaps := complete_errors(run, truth, live)) and now() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    for prop, detail in gaps:
        run.violate(prop, detail)
    for tab in live:
        for room in tab.rooms:
            counts["feed changes checked (seq and content)"] += truth.seq[room]
            counts["messages checked as shown"] += len(truth.messages[room])
        counts["notification deliveries checked"] += len(notifications[tab.user_id])
        counts["client dedupes"] += tab.dedupes

    # no-duplicate and order, per connection
    title_of = {int(r["id"]): r["title"] for rows in notifications.values() for r in rows}
    n_info = {title_of[i]: run.acked_notifications.get(title_of[i]) for i in title_of}
    for tab in run.tabs:
        for room, seqs in tab.applied.items():
            dup = [s for s, c in Counter(seqs).items() if c > 1]
            if dup:
                run.violate("no-duplicate", f"{tab.key}: room {room} seqs applied twice "
                            f"{dup[:10]}")  # fmt: skip
        for conn in tab.conns:
            seqs = [s for s, _, _ in conn.notifications]
            counts["connections"] += 1
            counts["notification frames checked"] += len(seqs)
            dup = [s for s, c in Counter(seqs).items() if c > 1]
            if dup:
                run.violate("no-duplicate", f"{tab.key} conn {conn.index}: seqs twice {dup[:10]}")
            high, high_id = 0, 0
            for seq, nid, replay in conn.notifications:
                if seq < high:
                    why = swap(n_info.get(title_of.get(nid, "")),
                               n_info.get(title_of.get(high_id, "")))  # fmt: skip
                    if replay:
                        counts["order: swaps allowed (resume replay)"] += 1
                    elif why:
                        counts[f"order: swaps allowed ({why})"] += 1
                    else:
                        run.violate("order", f"{tab.key} conn {conn.index}: seq {seq} after "
                                    f"{high}: {n_info.get(title_of.get(nid, ''))} then "
                                    f"{n_info.get(title_of.get(high_id, ''))}")  # fmt: skip
                if seq > high:
                    high, high_id = seq, nid
            for room, applied in conn.feed.items():
                counts["feed frames applied"] += len(applied)
                skipped = {seq for seq, _ in tab.skipped.get(room, [])}  # failed ``complete``
                steps = [
                    b
                    for a, b in zip(applied, applied[1:], strict=False)
                    if b != a + 1 and not set(range(a + 1, b)) <= skipped
                ]
                if steps:
                    run.violate("order", f"{tab.key} conn {conn.index}: room {room} applied "
                                f"out of seq order or with a gap at {steps[:5]}")  # fmt: skip
    # presence
    deadline = now() + PRESENCE_BOUND + 5
    while True:
        wrong = presence_errors(run, live, members)
        if not wrong or now() > deadline:
            break
        await asyncio.sleep(0.25)
    for detail in wrong:
        run.violate("presence", detail)
    counts["presence views checked"] = sum(len(t.rooms) for t in live if not t.stopped)
    # revocation
    revocation_check(run)


def swap(older: dict[str, Any] | None, newer: dict[str, Any] | None) -> str:
    """Why two writes' live frames may arrive newer first (``""``: they may not).

    ``older`` committed first (a lower id or seq). Each process publishes in the order its
    writes call the publisher after commit; two writes in flight at once on one process (two
    REST requests run in two threads) may call it in either order, and two processes' publishes
    cross. Only a write sent through the same process after the older one was acknowledged
    must come after it."""
    if older is None or newer is None:
        return "not ours"
    if "?" in (older["via"], newer["via"]):
        return "retried: the process that stored it is unknown"
    if older["via"] != newer["via"]:
        return "two processes"
    if newer["first"] <= older["at"]:
        return "in flight together"
    return ""


def presence_errors(run: Run, live: list["Tab"], members: dict[int, set[int]]) -> list[str]:
    online: dict[int, set[int]] = defaultdict(set)
    for tab in run.tabs:
        conn = tab.conn
        if conn is None or tab.stopped:
            continue
        for room in conn.subscribed:
            online[room].add(tab.user_id)
    wrong = []
    for tab in live:
        conn = tab.conn
        if conn is None or tab.stopped:
            continue
        for room in tab.rooms:
            view = conn.presence.get(room, set()) | {tab.user_id}
            if view != online[room]:
                t0 = run.chaos_started
                frames = [
                    f"{at - t0:.2f} { ({k: v for k, v in f.items() if k != 'type'}) }"
                    for at, f in conn.presence_log
                    if f.get("room") == room
                ][-4:]
                others = {
                    t.key: t.timeline()[-2:] for t in run.tabs if t.user_id in view ^ online[room]
                }
                wrong.append(
                    f"{tab.key} room {room}: sees {sorted(view)}, open: {sorted(online[room])}; "
                    f"its presence frames {frames}; on {conn.server} since "
                    f"{(conn.hello_at or 0) - t0:.2f}; the others' tabs {others}"
                )
    return wrong


def revocation_check(run: Run) -> None:
    if run.revoked_at is None:
        run.violate("revocation", "the login session was never revoked")
        return
    for tab in run.tabs:
        if tab.session_id != run.revoked_session:
            continue
        run.counts["revoked tabs checked"] += 1
        opened = [c for c in tab.conns if c.hello_at is not None]
        last = opened[-1] if opened else None
        if last is not None and last.closed_at is None:
            run.violate("revocation", f"{tab.key}: still open after the revocation")
            continue
        if last is not None and last.closed_at is not None and last.closed_at >= run.revoked_at:
            latency = last.closed_at - run.revoked_at
            run.counts["revocation close latency ms (max)"] = max(
                run.counts["revocation close latency ms (max)"], int(latency * 1000)
            )
            quiet = not run.fault_active(run.revoked_at - 1, run.revoked_at + REVOKE_BOUND)
            if last.close_code == 4401 and quiet and latency > REVOKE_BOUND + REVOKE_SLACK:
                run.violate("revocation", f"{tab.key}: closed {latency:.2f} s after the "
                            "revocation, no fault active")  # fmt: skip
        # The server may close and refuse before its 204 reaches us: count from the request.
        sent = run.revoke_sent_at or run.revoked_at
        refused_after = [c for c in tab.conns if c.started > sent and c.refused is not None]
        if (
            last is not None
            and last.close_code != 4401
            and not any(c.refused == 4401 for c in refused_after)
        ):
            run.violate("revocation", f"{tab.key}: closed with {last.close_code} and no "
                        "reconnect was refused with 4401")  # fmt: skip
        if any(c.refused not in (4401, 4503, None) for c in refused_after):
            run.violate("revocation", f"{tab.key}: refusal codes "
                        f"{[c.refused for c in refused_after]}")  # fmt: skip


# Running seeds ----------------------------------------------------------------------------------


def describe(plan: Plan) -> str:
    tabs = Counter(t.user for t in plan.tabs)
    faults = Counter(f.kind for f in plan.faults)
    actions = Counter(s.kind for t in plan.tabs for s in t.steps)
    return (
        f"{len(plan.users)} users, {len(plan.tabs)} tabs {dict(sorted(tabs.items()))}, "
        f"rooms {plan.rooms}, {len(plan.notifications)} notifications, "
        f"actions {dict(sorted(actions.items()))}, faults {dict(sorted(faults.items()))}, "
        f"revoke u{plan.revoke.args['user']}.s{plan.revoke.args['session']} "
        f"at {plan.revoke.at:.1f} s"
    )


def reproduce(seed: int, seconds: float) -> str:
    database = os.environ.get("DATABASE_URL", "")
    prefix = f"DATABASE_URL={database} " if database else ""
    return f"{prefix}CHAOS_SEED={seed} CHAOS_SECONDS={seconds:g} make chaos"


async def one_seed(seed: int, seconds: float, template: Template, keep: bool) -> Run:
    plan = make_plan(seed, seconds, len(template.data["users"]))
    print(f"seed {seed}: {describe(plan)}; reproduce: {reproduce(seed, seconds)}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"herald-chaos-{seed}-", dir=template.tmp))
    run = Run(plan, template, tmp)
    started = now()
    try:
        await run_seed(run)
    except Exception as error:
        run.violate("checker", f"{error!r}\n{traceback.format_exc()[-3000:]}")
    finally:
        await teardown(run)
    wall = now() - started
    counts = dict(sorted(run.counts.items()))
    faults = dict(sorted(run.faults_done.items()))
    print(f"seed {seed}: {wall:.0f} s; faults {faults}; checked {counts}", flush=True)
    if run.violations:
        print(f"seed {seed}: FAILED; reproduce with: {reproduce(seed, seconds)}")
        by_prop: dict[str, list[str]] = defaultdict(list)
        for v in run.violations:
            by_prop[v.prop].append(v.detail)
        for prop, details in by_prop.items():
            print(f"  property {prop}: {len(details)} violation(s), e.g.:")
            for detail in details[:EXAMPLES]:
                print(f"    - {detail}")
        print(f"  logs: {tmp}", flush=True)
    elif not keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return run


async def main_async(seeds: list[int], seconds: float, keep: bool, keep_going: bool) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="herald-chaos-"))
    started = now()
    print(f"chaos: seeds {seeds[0]}..{seeds[-1]}, {seconds:g} s of faults each, "
          f"database {'PostgreSQL' if 'postgres' in os.environ.get('DATABASE_URL', '') else 'SQLite'}"
          f", logs under {tmp}", flush=True)  # fmt: skip
    template = await asyncio.to_thread(Template.create, tmp)
    failed: list[int] = []
    totals: Counter[str] = Counter()
    try:
        for seed in seeds:
            run = await one_seed(seed, seconds, template, keep)
            for key, value in run.counts.items():
                if "max" not in key and "seconds" not in key:
                    totals[key] += value
            totals.update({f"fault {k}": v for k, v in run.faults_done.items()})
            if run.violations:
                failed.append(seed)
                if not keep_going:
                    break
    finally:
        template.close()
    wall = now() - started
    ran = len(seeds) if keep_going or not failed else seeds.index(failed[0]) + 1
    print(f"chaos: {ran} seed(s) in "
          f"{wall:.0f} s; totals {dict(sorted(totals.items()))}")  # fmt: skip
    if failed:
        for seed in failed:
            print(f"chaos: FAILED at seed {seed}: {reproduce(seed, seconds)}")
        return 1
    if not keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print("chaos: every property held")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=_env_int("CHAOS_SEED"))
    parser.add_argument("--first", type=int, default=_env_int("CHAOS_FIRST_SEED") or 1)
    parser.add_argument("--seeds", type=int, default=_env_int("CHAOS_SEEDS") or 20)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", 20)))
    parser.add_argument("--keep", action="store_true", help="keep the logs of passing seeds")
    parser.add_argument("--keep-going", action="store_true", help="run every seed")
    args = parser.parse_args(argv)
    seeds = (
        [args.seed] if args.seed is not None else list(range(args.first, args.first + args.seeds))
    )
    return asyncio.run(main_async(seeds, args.seconds, args.keep, args.keep_going))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else None


if __name__ == "__main__":
    sys.exit(main())
