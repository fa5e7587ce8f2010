"""Webhooks in one process: the API (service keys, scopes, SSRF refusals), who receives which
event, the send path's queries, and deliveries to a real receiver (a thread) run by an
in-process worker loop: signatures, retries, disable, the check at delivery time."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chat import services as chat_services
from notifications import services, webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit runs, as in production


@pytest.fixture
def private_ok(settings: Any) -> None:
    """Endpoints on 127.0.0.1 (the test receiver) are allowed, as HERALD_WEBHOOK_ALLOW_PRIVATE=1."""
    settings.HERALD = {**settings.HERALD, "WEBHOOK_ALLOW_PRIVATE": True}


@pytest.fixture(autouse=True)
def _fresh_flag() -> None:
    webhooks._flag_changed()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def service(name: str, *scopes: str) -> tuple[Any, APIClient]:
    out = StringIO()
    args = [a for s in scopes for a in ("--scope", s)]
    call_command("herald_service_key", "create", name, *args, stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {out.getvalue().split()[-1]}")
    return get_user_model().objects.get(username=name), client


def register(client: APIClient, url: str, *events: str) -> dict[str, Any]:
    answer = client.post("/api/webhooks/", {"url": url, "events": list(events)}, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()


def run_worker(*, due_now: bool = False) -> None:
    """Run every due task in this process (django-tasks-db's worker loop, batch mode);
    ``due_now``: first make waiting retries due."""
    if due_now:
        DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())
    Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="in-process",
        excluded_queue_names=[],
    ).run()


# The API -----------------------------------------------------------------------------------------


def test_register_list_delete(private_ok: None) -> None:
    _, client = service("hook-bot", "webhooks:manage")
    created = register(client, "http://127.0.0.1:9/x", "message.created", "member.joined")
    assert created["secret"].startswith("whsec_")
    Webhook(created["secret"])  # the library reads it
    assert created["events"] == ["member.joined", "message.created"]
    listed = client.get("/api/webhooks/").json()
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]  # shown once
    assert client.delete(f"/api/webhooks/{created['id']}/").status_code == 204
    assert client.get("/api/webhooks/").json() == []


def test_another_service_cannot_see_or_delete_an_endpoint(private_ok: None) -> None:
    _, owner = service("owner-bot", "webhooks:manage")
    _, other = service("other-bot", "webhooks:manage")
    created = register(owner, "http://127.0.0.1:9/x", "message.created")
    assert other.get("/api/webhooks/").json() == []
    assert other.delete(f"/api/webhooks/{created['id']}/").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=created["id"]).exists()


def test_only_service_keys_with_the_scope(alice: Any, as_user: Callable[[Any], APIClient]) -> None:
    _, narrow = service("narrow-bot", "rooms:post")
    answer = narrow.get("/api/webhooks/")
    assert (answer.status_code, answer.json()["code"]) == (403, "scope_required")
    answer = as_user(alice).get("/api/webhooks/")
    assert (answer.status_code, answer.json()["code"]) == (403, "service_key_required")
    assert APIClient().get("/api/webhooks/").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:9/x", "events": ["message.exploded"]},
        {"url": "http://127.0.0.1:9/x", "events": []},
        {"url": "not a url", "events": ["message.created"]},
        {"events": ["message.created"]},
    ],
)
def test_bad_bodies_are_400(private_ok: None, body: dict[str, Any]) -> None:
    _, client = service("body-bot", "webhooks:manage")
    answer = client.post("/api/webhooks/", body, format="json")
    assert answer.status_code == 400
    assert set(answer.json()) >= {"detail", "code"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",  # loopback
        "http://localhost:8000/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",  # RFC 1918
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "http://100.64.0.1/hook",  # shared address space
        "http://224.0.0.1/hook",  # multicast
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "http://[fd00::1]/hook",  # unique local
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://no-such-host.invalid/hook",
    ],
)
def test_unsafe_urls_are_refused_at_registration(url: str) -> None:
    _, client = service("ssrf-bot", "webhooks:manage")
    answer = client.post("/api/webhooks/", {"url": url, "events": ["member.left"]}, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["code"] in ("invalid_url", "invalid")
    assert not WebhookEndpoint.objects.exists()


def test_a_public_address_is_accepted() -> None:
    webhooks.check_url("https://93.184.215.14/hook")  # a global address; no request is made


# Events ------------------------------------------------------------------------------------------


def test_a_message_send_does_no_webhook_query_without_endpoints(alice: Any) -> None:
    room = chat_services.room_create(creator_id=alice.pk, name="quiet")
    # The first send of a process learns (one query) that no endpoint exists, and caches it.
    chat_services.room_message_send(room_id=room.pk, author_id=alice.pk, body="first")
    with CaptureQueriesContext(connection) as queries:
        chat_services.room_message_send(
            room_id=room.pk, author_id=alice.pk, body="hi", author_username="alice"
        )
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if "webhook" in s.lower() or "membership" in s.lower()[:80]]
    assert len([s for s in sql if s.startswith(("SELECT", "INSERT", "UPDATE"))]) == 2


def test_message_events_reach_only_bots_in_the_room(private_ok: None, alice: Any) -> None:
    bot, client = service("room-bot", "webhooks:manage")
    outsider, other = service("outside-bot", "webhooks:manage")
    register(client, "http://127.0.0.1:9/in", "message.created")
    register(other, "http://127.0.0.1:9/out", "message.created")
    quiet, _ = service("quiet-bot", "webhooks:manage")
    register(_, "http://127.0.0.1:9/quiet", "member.left")  # not subscribed to messages
    room = chat_services.room_create(creator_id=alice.pk, name="ops", member_ids=[bot.pk, quiet.pk])
    message = chat_services.room_message_send(room_id=room.pk, author_id=alice.pk, body="deploy")
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.endpoint.owner == bot
    assert delivery.event_type == "message.created"
    assert delivery.payload["type"] == "message.created"
    assert delivery.payload["timestamp"].endswith("Z")
    assert delivery.payload["data"]["room"] == room.pk
    assert delivery.payload["data"]["message"]["id"] == message.pk
    assert delivery.payload["data"]["message"]["body"] == "deploy"
    assert DBTaskResult.objects.filter(task_path="notifications.webhooks.deliver").count() == 1


def test_edits_and_deletions_are_message_events(private_ok: None, alice: Any) -> None:
    bot, client = service("edit-bot", "webhooks:manage")
    register(client, "http://127.0.0.1:9/e", "message.updated", "message.deleted")
    room = chat_services.room_create(creator_id=alice.pk, name="ops", member_ids=[bot.pk])
    message = chat_services.room_message_send(room_id=room.pk, author_id=alice.pk, body="dpeloy")
    chat_services.message_edit(
        room_id=room.pk, message_id=message.pk, user_id=alice.pk, body="deploy"
    )
    chat_services.message_delete(room_id=room.pk, message_id=message.pk, user_id=alice.pk)
    updated, deleted = WebhookDelivery.objects.order_by("pk")
    assert updated.event_type == "message.updated"
    assert updated.payload["data"]["message"]["body"] == "deploy"
    assert updated.payload["data"]["message"]["edited_at"] is not None
    assert deleted.event_type == "message.deleted"
    assert deleted.payload["data"]["message"]["deleted"] is True
    assert deleted.payload["data"]["message"]["body"] == ""


def test_member_events(private_ok: None, alice: Any, bob: Any) -> None:
    bot, client = service("member-bot", "webhooks:manage")
    register(client, "http://127.0.0.1:9/m", "member.joined", "member.left")
    room = chat_services.room_create(creator_id=alice.pk, name="team", member_ids=[bot.pk])
    chat_services.room_member_add(room_id=room.pk, actor_id=alice.pk, user_id=bob.pk)
    chat_services.room_member_remove(room_id=room.pk, actor_id=alice.pk, user_id=bob.pk)
    chat_services.room_member_remove(room_id=room.pk, actor_id=alice.pk, user_id=bot.pk)
    got = [
        (d.event_type, d.payload["data"]["user"]) for d in WebhookDelivery.objects.order_by("id")
    ]
    assert got == [
        ("member.joined", {"id": bob.pk, "username": "bob"}),
        ("member.left", {"id": bob.pk, "username": "bob"}),
        ("member.left", {"id": bot.pk, "username": "member-bot"}),  # its own leaving, the last
    ]


def test_a_rolled_back_change_delivers_nothing(private_ok: None, alice: Any) -> None:
    bot, client = service("rb-bot", "webhooks:manage")
    register(client, "http://127.0.0.1:9/m", "member.left")
    room = chat_services.room_create(creator_id=alice.pk, name="team", member_ids=[bot.pk])
    with pytest.raises(chat_services.ChatNotFound):  # no such member: rolled back
        chat_services.room_member_remove(room_id=room.pk, actor_id=alice.pk, user_id=999_999)
    assert not WebhookDelivery.objects.exists()


def test_notification_read_goes_to_each_sender_with_its_own_ids(
    private_ok: None, alice: Any
) -> None:
    one, one_client = service("one-bot", "webhooks:manage", "notifications:send")
    two, two_client = service("two-bot", "webhooks:manage", "notifications:send")
    register(one_client, "http://127.0.0.1:9/1", "notification.read")
    register(two_client, "http://127.0.0.1:9/2", "notification.read")
    [a] = services.notification_create(recipient_ids=[alice.pk], title="a", sender_id=one.pk).ids
    [b] = services.notification_create(recipient_ids=[alice.pk], title="b", sender_id=two.pk).ids
    services.notification_mark_read(user_id=alice.pk, ids=[a])
    services.notification_mark_all_read(user_id=alice.pk)
    got = [
        (d.endpoint.owner.username, d.payload["data"])
        for d in WebhookDelivery.objects.order_by("id")
    ]
    assert got == [
        ("one-bot", {"user": {"id": alice.pk}, "ids": [a], "all": False}),
        ("two-bot", {"user": {"id": alice.pk}, "ids": [b], "all": True}),
    ]


# Deliveries --------------------------------------------------------------------------------------


def test_a_delivery_is_signed_and_verifies(
    private_ok: None, alice: Any, receiver: Receiver
) -> None:
    bot, client = service("sign-bot", "webhooks:manage")
    receiver.secret = register(client, receiver.url, "message.created")["secret"]
    room = chat_services.room_create(creator_id=alice.pk, name="r", member_ids=[bot.pk])
    chat_services.room_message_send(room_id=room.pk, author_id=alice.pk, body="signed")
    run_worker()
    [got] = receiver.wait(1)
    assert got.verified, got.error
    assert got.json["data"]["message"]["body"] == "signed"
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["content-type"] == "application/json"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.status_code) == ("delivered", 1, 204)
    assert delivery.latency_ms is not None

    # What a receiver must refuse: another secret, a changed body, an old (replayed) timestamp.
    forged = Webhook(webhooks.new_secret())
    with pytest.raises(WebhookVerificationError):
        forged.verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(got.body.replace("signed", "forged"), got.headers)
    old = webhooks.sign(
        receiver.secret,
        msg_id=got.headers["webhook-id"],
        timestamp=datetime.now(UTC) - timedelta(minutes=10),
        body=got.body,
    )
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(receiver.secret).verify(got.body, old)


def test_a_failing_receiver_is_retried_then_the_endpoint_disabled(
    private_ok: None, settings: Any, alice: Any, receiver: Receiver
) -> None:
    settings.HERALD = {**settings.HERALD, "WEBHOOK_DISABLE_AFTER": 3}
    attempts = settings.HERALD["WEBHOOK_ATTEMPTS"]
    assert attempts >= 3
    bot, client = service("fail-bot", "webhooks:manage")
    endpoint = register(client, receiver.url, "message.created")
    receiver.secret, receiver.status = endpoint["secret"], 500
    room = chat_services.room_create(creator_id=alice.pk, name="r", member_ids=[bot.pk])
    chat_services.room_message_send(room_id=room.pk, author_id=alice.pk, body="x")
    run_worker()
    run_worker(due_now=True)
    run_worker(due_now=True)
    run_worker(due_now=True)  # nothing more: disabled
    got = receiver.wait(3)
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in got}) == 1  # one event, three attempts
    assert all(r.verified for r in got)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.status_code) == ("failed", 3, 500)
    state = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert not state.enabled
    assert state.disabled_at is not None
    [note] = bot.notifications.all()
    assert note.title == "Webhook endpoint disabled"
    assert receiver.url in note.body
    # Disabled: the next message makes no delivery.
    chat_services.room_message_send(room_id=room.pk, author_id=alice.pk, body="y")
    assert WebhookDelivery.objects.count() == 1


def test_the_address_is_checked_again_at_delivery(
    settings: Any, private_ok: None, alice: Any, receiver: Receiver
) -> None:
    """Registered while loopback was allowed (as if the name resolved to a public address then);
    at delivery it resolves to loopback: refused, nothing sent."""
    bot, client = service("rebind-bot", "webhooks:manage")
    receiver.secret = register(client, receiver.url, "message.created")["secret"]
    room = chat_services.room_create(creator_id=alice.pk, name="r", member_ids=[bot.pk])
    chat_services.room_message_send(room_id=room.pk, author_id=alice.pk, body="x")
    settings.HERALD = {**settings.HERALD, "WEBHOOK_ALLOW_PRIVATE": False}
    run_worker()
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 1
    assert "non-public address" in delivery.error
    assert receiver.received == []


def test_endpoints_and_deliveries_in_the_admin(private_ok: None, admin_client: Any) -> None:
    _, client = service("admin-bot", "webhooks:manage")
    created = register(client, "http://127.0.0.1:9/admin", "member.joined")
    page = admin_client.get("/admin/notifications/webhookendpoint/")
    assert "127.0.0.1:9/admin" in page.content.decode()
    detail = admin_client.get(f"/admin/notifications/webhookendpoint/{created['id']}/change/")
    assert detail.status_code == 200
    assert created["secret"] not in detail.content.decode()
    assert admin_client.get("/admin/notifications/webhookdelivery/").status_code == 200


def test_a_service_reads_its_own_notifications_with_any_key(alice: Any) -> None:
    bot, client = service("reader-bot", "rooms:post")
    services.notification_create(recipient_ids=[bot.pk], title="Webhook endpoint disabled")
    services.notification_create(recipient_ids=[alice.pk], title="not the bot's")
    answer = client.get("/api/notifications/")
    assert answer.status_code == 200
    assert [n["title"] for n in answer.json()["results"]] == ["Webhook endpoint disabled"]
