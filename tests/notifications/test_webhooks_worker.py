"""Webhooks as deployed: a daphne process and a ``herald_worker`` process on one database, a
service using only its API key (register an endpoint, post to a room), and a real receiver in
this process verifying every delivery's signature with the ``standardwebhooks`` library; then a
failing receiver: retries with backoff, the endpoint disabled, its owner notified."""

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.queue import Queue, start_queue, wait_until
from tests.support.rig import PYTHON, ROOT, Server, free_port, popen, start_servers, stop
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.processes

BACKOFF = 0.3  # s: HERALD_WEBHOOK_BACKOFF of the worker

_SETUP = """
import json
from io import StringIO
from django.core.management import call_command
from django.contrib.auth import get_user_model
from chat import services
alice = get_user_model().objects.create_user(username="alice", password="pw-alice-93f1")
out = StringIO()
call_command("herald_service_key", "create", "deploy-bot", "--scope", "rooms:post",
             "--scope", "webhooks:manage", stdout=out)
bot = get_user_model().objects.get(username="deploy-bot")
room = services.room_create(creator_id=alice.pk, name="deploys", member_ids=[bot.pk])
print("SETUP=" + json.dumps({"key": out.getvalue().split()[-1], "room": room.pk, "bot": bot.pk}))
"""

_STATE = """
import json
from notifications.models import Notification, WebhookDelivery, WebhookEndpoint
print("STATE=" + json.dumps({
    "endpoints": list(WebhookEndpoint.objects.values("id", "enabled", "failure_count")),
    "deliveries": list(WebhookDelivery.objects.order_by("id").values(
        "event_type", "status", "attempts", "status_code")),
    "notes": list(Notification.objects.filter(recipient__username="deploy-bot").values_list(
        "title", flat=True)),
}))
"""


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Queue, Server, dict[str, Any]]]:
    with contextlib.ExitStack() as stack:
        queue = start_queue(
            stack,
            HERALD_WEBHOOK_ALLOW_PRIVATE="1",  # the receiver listens on 127.0.0.1
            HERALD_WEBHOOK_BACKOFF=str(BACKOFF),
            HERALD_WEBHOOK_ATTEMPTS="3",
            HERALD_WEBHOOK_DISABLE_AFTER="3",
        )
        line = next(x for x in queue.shell(_SETUP).splitlines() if x.startswith("SETUP="))
        setup = json.loads(line[6:])
        [web] = start_servers(["web"], queue.env, queue.tmp, stack)
        queue.start_worker()
        yield queue, web, setup


def state(queue: Queue) -> dict[str, Any]:
    line = next(x for x in queue.shell(_STATE).splitlines() if x.startswith("STATE="))
    return json.loads(line[6:])  # type: ignore[no-any-return]


def test_a_service_gets_signed_events_then_a_failing_endpoint_is_disabled(
    site: tuple[Queue, Server, dict[str, Any]],
) -> None:
    queue, web, setup = site
    service = httpx.Client(
        base_url=web.http, headers={"Authorization": f"Api-Key {setup['key']}"}, timeout=30
    )
    receiver = Receiver().start()
    try:
        answer = service.post(
            "/api/webhooks/", json={"url": receiver.url, "events": ["message.created"]}
        )
        assert answer.status_code == 201, answer.text
        receiver.secret = answer.json()["secret"]

        posted = service.post(f"/api/rooms/{setup['room']}/messages/", json={"body": "v2 is out"})
        assert posted.status_code == 201, posted.text
        [got] = receiver.wait(1)
        assert got.verified, got.error  # standardwebhooks' own verify, with the shown secret
        assert got.json["type"] == "message.created"
        assert got.json["data"]["message"]["body"] == "v2 is out"
        assert got.json["data"]["message"]["author"]["id"] == setup["bot"]

        receiver.status = 503  # the receiver breaks
        posted = service.post(f"/api/rooms/{setup['room']}/messages/", json={"body": "v3"})
        assert posted.status_code == 201
        first, second, third = receiver.wait(4, timeout=30)[1:]
        assert {r.headers["webhook-id"] for r in (first, second, third)} == {
            first.headers["webhook-id"]
        }
        assert all(r.verified for r in (first, second, third))
        assert second.at - first.at >= BACKOFF * 0.9  # exponential backoff through the queue
        assert third.at - second.at >= 2 * BACKOFF * 0.9

        now = wait_until(
            lambda: (s := state(queue))["notes"] and s, what="the owner's notification"
        )
        assert now["endpoints"] == [
            {"id": now["endpoints"][0]["id"], "enabled": False, "failure_count": 3}
        ]
        assert now["deliveries"] == [
            {
                "event_type": "message.created",
                "status": "delivered",
                "attempts": 1,
                "status_code": 204,
            },
            {
                "event_type": "message.created",
                "status": "failed",
                "attempts": 3,
                "status_code": 503,
            },
        ]
        assert now["notes"] == ["Webhook endpoint disabled"]
        listed = service.get("/api/webhooks/").json()
        assert [e["enabled"] for e in listed] == [False]

        # Disabled: a new message makes no delivery.
        service.post(f"/api/rooms/{setup['room']}/messages/", json={"body": "v4"})
        time.sleep(2.5)
        assert len(receiver.received) == 4
    finally:
        receiver.stop()


def test_the_receiver_example_registers_verifies_and_prints_events(
    site: tuple[Queue, Server, dict[str, Any]],
) -> None:
    """docs/examples/webhook_receiver.py, run as a service would: register, serve, receive."""
    queue, web, setup = site
    example = str(ROOT / "docs" / "examples" / "webhook_receiver.py")
    port = free_port()
    env = {**queue.env, "HERALD_API_KEY": setup["key"]}
    url = f"http://127.0.0.1:{port}/hook"
    registered = subprocess.run(
        [PYTHON, example, "register", web.http, url, "message.created"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert registered.returncode == 0, registered.stderr
    secret = registered.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    log = queue.tmp / "receiver-example.log"
    process = popen(
        [PYTHON, example, "serve", str(port)], env={**env, "WEBHOOK_SECRET": secret}, log=log
    )
    try:
        wait_until(lambda: _listening(port), what="the example receiver")
        posted = httpx.post(
            f"{web.http}/api/rooms/{setup['room']}/messages/",
            json={"body": "from the example"},
            headers={"Authorization": f"Api-Key {setup['key']}"},
            timeout=30,
        )
        assert posted.status_code == 201
        line = wait_until(
            lambda: next((x for x in log.read_text().splitlines() if x.startswith("{")), None),
            what="an event line",
        )
        event = json.loads(line)
        assert event["type"] == "message.created"
        assert event["data"]["message"]["body"] == "from the example"
        forged = httpx.post(
            url,
            content=b'{"type": "message.created"}',
            headers={
                "webhook-id": "msg_x",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 401
    finally:
        stop(process)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False
