"""Long-lived sockets: idle sockets keep working, daphne pings, dead peers are dropped.

These check the background probes that the ``cluster`` fixture opens at session start (see
``conftest.py``); the conftest runs this module last so the other tests use the waiting time.
"""

import json
import time

import httpx
import pytest
from websockets.protocol import State

pytestmark = pytest.mark.crossprocess


def _wait_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()))


def test_a_socket_idle_for_60_s_is_open_and_still_receives(cluster, metrics):
    """redis-py 8's 5 s default socket timeout killed idle channel layers (close 1011)."""
    probe, user = cluster.idle, cluster.users["idle"]
    _wait_until(probe.opened_at + cluster.idle_seconds)
    ws = probe.ws
    assert ws.state is State.OPEN, f"closed with {ws.close_code} while idle"
    assert len(ws.data_frames) == 1, "a frame other than hello arrived on the idle socket"
    assert probe.hello["user"]["id"] == user.id

    service = cluster.tokens("service", cluster.p1)
    sent = time.monotonic()
    answer = httpx.post(
        f"{cluster.p1.http}/api/notifications/",
        json={"recipients": [user.id], "title": "after the silence"},
        headers={"Authorization": f"Bearer {service.access}"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    frame = json.loads(ws.recv(timeout=10))
    latency = ws.data_frames[-1] - sent
    metrics["idle socket: delivery after 60 s of silence (ms)"] = round(latency * 1000, 1)
    assert frame["type"] == "notification"
    assert frame["notification"]["id"] == answer.json()["ids"][0]
    assert ws.state is State.OPEN


def test_daphne_pings_an_idle_socket_every_heartbeat(cluster):
    """``python -m config.serve`` passes ``HERALD_WS_HEARTBEAT`` as daphne's ping interval."""
    probe, heartbeat = cluster.idle, cluster.heartbeat
    _wait_until(probe.opened_at + cluster.idle_seconds)
    times = [probe.opened_at, *probe.ws.pings]
    gaps = [round(b - a, 1) for a, b in zip(times, times[1:], strict=False)]
    # daphne checks every 2 s for sockets silent longer than the interval: N..N+2 s apart.
    assert len(gaps) >= cluster.idle_seconds // (heartbeat + 3), gaps
    assert all(heartbeat - 0.5 <= gap <= heartbeat + 5 for gap in gaps), gaps


def test_daphne_drops_a_peer_that_misses_two_pings(cluster):
    """A client that never answers is dropped ``2 × HERALD_WS_HEARTBEAT`` after the first ping."""
    probe, heartbeat = cluster.dead_peer, cluster.heartbeat
    assert probe.done.wait(max(0.0, probe.opened_at + 3 * heartbeat + 30 - time.monotonic())), (
        f"a peer that answered no ping for {time.monotonic() - probe.opened_at:.0f} s is open"
    )
    _, first_opcode, first_payload = probe.frames[0]
    assert first_opcode == 0x1  # text: it was authenticated, not closed with 4401
    assert b'"type":"hello"' in first_payload
    pings = probe.pings()
    assert len(pings) >= 2, f"dropped after {len(pings)} ping(s)"
    assert probe.dropped_at is not None
    waited = probe.dropped_at - pings[0]
    assert 2 * heartbeat - 1 <= waited <= 2 * heartbeat + 8, f"dropped {waited:.1f} s after a ping"
