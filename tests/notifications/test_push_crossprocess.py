"""Web Push across processes: two daphne processes, Redis, a ``herald_worker`` and a push
service on 127.0.0.1 (``tests.support.pushservice``: the VAPID JWT verified with the key the
page is given, the body decrypted with the browser's private key).

A notification sent through process 1 reaches a user whose socket is open on process 2 live
and is not pushed; a user with no socket anywhere gets a push within 5 s; a subscription the
push service answers 410 for is deleted.
"""

import contextlib
import json
import time
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.sync.client import connect

from tests.support.pushservice import PushService
from tests.support.rig import (
    PYTHON,
    Deployment,
    Server,
    create_database,
    create_users,
    popen,
    server_env,
    start_redis,
    start_servers,
    stop,
    tail,
    temp_dir,
    user_spec,
)

pytestmark = [pytest.mark.processes, pytest.mark.crossprocess]

PASSWORD = "push-Pw-4b2e-xproc"
PUSH_WITHIN = 5.0  # s from the POST to the push service receiving it
USERS = ["service", "online", "offline", "gone", "closer", "flaky"]


@dataclass
class PushDeployment(Deployment):
    p1: Server
    p2: Server
    service: PushService
    worker_log: object


@pytest.fixture(scope="module")
def deployment() -> Iterator[PushDeployment]:
    with contextlib.ExitStack() as stack:
        tmp = temp_dir(stack, "herald-push-")
        redis_url = start_redis(tmp, stack).url
        database_url = create_database(tmp, stack)
        private = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
        env = server_env(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            HERALD_VAPID_PRIVATE_KEY=urlsafe_b64encode(private.to_bytes(32, "big")).decode(),
            HERALD_VAPID_SUBJECT="mailto:ops@herald.test",
            HERALD_WEBHOOK_ALLOW_PRIVATE="1",
        )
        specs = [user_spec(n, PASSWORD, can_send=n == "service") for n in USERS]
        users = create_users(env, tmp, specs, migrate=True)
        p1, p2 = start_servers(["p1", "p2"], env, tmp, stack)
        log = tmp / "worker.log"
        worker = popen(
            [PYTHON, "manage.py", "herald_worker", "--interval", "0.1", "--no-startup-delay"],
            env=env,
            log=log,
        )
        stack.callback(stop, worker)
        # The key the page is given is the one every push must be signed with.
        service = PushService().start()
        stack.callback(service.stop)
        deployment = PushDeployment(tmp, database_url, redis_url, users, p1, p2, service, log)
        service.expected_key = httpx.get(
            f"{p1.http}/api/push/vapid-public-key/",
            headers=bearer(deployment.tokens("service", p1).access),
            timeout=30,
        ).json()["public_key"]
        yield deployment
        assert worker.poll() is None, tail(log)


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def subscribe(d: PushDeployment, name: str) -> str:
    """Log ``name`` in on p1, subscribe a fresh browser of theirs; their access token."""
    access = d.tokens(name, d.p1).access
    answer = httpx.post(
        f"{d.p1.http}/api/push/subscriptions/",
        json=d.service.subscribe(name).as_json(),
        headers=bearer(access),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return access


def notify(d: PushDeployment, names: list[str], title: str) -> float:
    """``POST /api/notifications/`` on p1 as the service; when it was sent (``time.time()``)."""
    sent = time.time()
    answer = httpx.post(
        f"{d.p1.http}/api/notifications/",
        json={
            "recipients": [d.users[n].id for n in names],
            "title": title,
            "body": f"body of {title}",
            "data": {"url": "/#/rooms/1"},
        },
        headers=bearer(d.tokens("service", d.p1).access),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return sent


def test_pushed_only_to_users_without_an_open_socket(deployment: PushDeployment) -> None:
    d = deployment
    online_access = subscribe(d, "online")
    subscribe(d, "offline")
    with connect(d.p2.ws, additional_headers=bearer(online_access), open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        sent = notify(d, ["online", "offline"], "Deploy done")
        frame = json.loads(ws.recv(timeout=10))
        assert frame["type"] == "notification"
        assert frame["notification"]["title"] == "Deploy done"

        (push,) = d.service.wait_for("offline", timeout=PUSH_WITHIN + 1)
        latency = push.at - sent
        assert latency < PUSH_WITHIN, latency
        print(f"\npush received {latency:.2f} s after the POST")
        assert push.message["title"] == "Deploy done"
        assert push.message["body"] == "body of Deploy done"
        assert push.message["url"] == "/#/rooms/1"
        # The same task handled both recipients; give a late push to "online" time to show.
        time.sleep(1.5)
        assert d.service.messages("online") == []
    assert d.service.rejected == []


def test_a_closed_socket_no_longer_counts(deployment: PushDeployment) -> None:
    d = deployment
    access = subscribe(d, "closer")
    with connect(d.p2.ws, additional_headers=bearer(access), open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    notify(d, ["closer"], "After closing")
    (push,) = d.service.wait_for("closer", timeout=PUSH_WITHIN + 1)
    assert push.message["title"] == "After closing"


def test_gone_subscription_is_deleted(deployment: PushDeployment) -> None:
    d = deployment
    access = subscribe(d, "gone")
    d.service.answers["gone"] = 410
    notify(d, ["gone"], "Into the void")
    d.service.wait_for("gone", timeout=PUSH_WITHIN + 1)
    deadline = time.monotonic() + 5
    while True:
        devices = httpx.get(
            f"{d.p2.http}/api/push/subscriptions/", headers=bearer(access), timeout=30
        ).json()
        if devices == []:
            break
        assert time.monotonic() < deadline, (devices, tail(d.worker_log))
        time.sleep(0.1)


def test_a_failing_push_service_is_retried_through_the_queue(deployment: PushDeployment) -> None:
    d = deployment
    access = subscribe(d, "flaky")
    d.service.answers["flaky"] = 503
    notify(d, ["flaky"], "Try again")
    d.service.wait_for("flaky", timeout=PUSH_WITHIN + 1)  # answered 503
    d.service.answers["flaky"] = 201
    first, again = d.service.wait_for("flaky", count=2, timeout=20)
    assert again.message == first.message
    assert again.at - first.at >= 4  # the queue's delay, not an immediate loop
    devices = httpx.get(f"{d.p1.http}/api/push/subscriptions/", headers=bearer(access), timeout=30)
    assert len(devices.json()) == 1  # kept
