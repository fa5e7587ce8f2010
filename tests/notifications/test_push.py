"""Web Push in one process: the subscription API, the VAPID key, and what
``notifications.push`` sends, checked by a real push service on 127.0.0.1
(``tests.support.pushservice``: VAPID signature verified, body decrypted)."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django_tasks_db.models import DBTaskResult

from chat import services as chat_services
from notifications import push, services
from notifications.models import Notification, PushSubscription
from tests.support.pushservice import PushService, b64url

pytestmark = pytest.mark.django_db

SUBS = "/api/push/subscriptions/"
PREFS = "/api/me/preferences/"


@pytest.fixture
def service():
    svc = PushService(expected_key=push.vapid_public_key()).start()
    yield svc
    svc.stop()


def subscribe(client, sub) -> None:
    response = client.post(SUBS, sub.as_json(), format="json", HTTP_USER_AGENT="Firefox/140")
    assert response.status_code == 201, response.content


def notify(user, title="Build finished", **data) -> Notification:
    batch = services.notification_create(
        recipient_ids=[user.pk], title=title, body="main is green", data=data
    )
    return Notification.objects.get(pk=batch.ids[0])


# The API -----------------------------------------------------------------------------------------


def test_vapid_public_key_matches_the_signing_key(api_client, as_user, alice):
    assert api_client().get("/api/push/vapid-public-key/").status_code == 401
    response = as_user(alice).get("/api/push/vapid-public-key/")
    assert response.status_code == 200
    key = response.json()["public_key"]
    assert key == push.vapid_public_key()
    assert len(key) == 87  # base64url of a 65-byte uncompressed P-256 point


def test_subscribe_list_resubscribe_unsubscribe(as_user, alice, bob, service):
    sub = service.subscribe("a1")
    client = as_user(alice)
    subscribe(client, sub)
    devices = client.get(SUBS).json()
    assert [(d["endpoint"], d["user_agent"]) for d in devices] == [(sub.endpoint, "Firefox/140")]
    assert devices[0]["created_at"].endswith("Z")
    assert as_user(bob).get(SUBS).json() == []
    # the same browser, now signed in as bob: the endpoint moves, it is not duplicated
    again = as_user(bob).post(SUBS, sub.as_json(), format="json")
    assert again.status_code == 200
    assert client.get(SUBS).json() == []
    assert as_user(bob).delete(SUBS, {"endpoint": sub.endpoint}, format="json").status_code == 204
    assert PushSubscription.objects.count() == 0
    missing = as_user(bob).delete(SUBS, {"endpoint": sub.endpoint}, format="json")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def _bad(sub, **change):
    body = sub.as_json()
    for key, value in change.items():
        if key in ("p256dh", "auth"):
            body["keys"][key] = value
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"endpoint": "http://push.example.net/x"}, "invalid", "endpoint"),  # not https
        ({"endpoint": "http://10.0.0.1/x"}, "invalid", "endpoint"),  # http, not loopback
        ({"endpoint": "ftp://127.0.0.1/x"}, "invalid", "endpoint"),
        ({"endpoint": "https:///nohost"}, "invalid", "endpoint"),
        (
            {"endpoint": "https://push.example.net/\ud800"},
            "surrogate_characters_not_allowed",
            "endpoint",
        ),
        ({"endpoint": "https://push.example.net/caf\u00e9"}, "invalid", "endpoint"),
        ({"endpoint": "https://push.example.net/a b"}, "invalid", "endpoint"),
        ({"endpoint": "https://push.example.net:99999999/x"}, "invalid", "endpoint"),
        ({"endpoint": "https://push.example.net:port/x"}, "invalid", "endpoint"),
        ({"p256dh": b64url(b"\x04" + b"\x01" * 64)}, "invalid", "keys.p256dh"),  # not on curve
        ({"p256dh": b64url(b"\x04" * 33)}, "invalid", "keys.p256dh"),  # wrong length
        ({"p256dh": "not base64url!"}, "invalid", "keys.p256dh"),
        ({"auth": b64url(b"x" * 15)}, "invalid", "keys.auth"),
        ({"auth": "a+b/c="}, "invalid", "keys.auth"),  # base64, not base64url
        ({"keys": None}, "null", "keys"),
    ],
)
def test_bad_subscription_is_a_400(as_user, alice, service, change, code, field):
    sub = service.subscribe("bad")
    # json.dumps writes a lone surrogate as the escape "\ud800", as a client could
    body = json.dumps(_bad(sub, **change))
    response = as_user(alice).post(SUBS, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code, response.json()
    assert field in response.json()["errors"]
    assert PushSubscription.objects.count() == 0


def test_http_loopback_needs_the_setting(as_user, alice, service, settings):
    settings.HERALD = {**settings.HERALD, "PUSH_ALLOW_LOOPBACK": False}
    response = as_user(alice).post(SUBS, service.subscribe("lo").as_json(), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_unauthenticated(api_client):
    assert api_client().get(SUBS).status_code == 401
    assert api_client().post(SUBS, {}, format="json").status_code == 401


# Sending -----------------------------------------------------------------------------------------


def test_push_is_signed_encrypted_and_carries_title_body_url(as_user, alice, service):
    subscribe(as_user(alice), service.subscribe("a1"))
    subscribe(as_user(alice), service.subscribe("a2"))  # a second browser
    n = notify(alice, url="https://ci.example.com/builds/9")
    result = push.push_notifications([n.pk])
    assert result.sent == 2
    for name in ("a1", "a2"):
        (got,) = service.wait_for(name)
        assert got.message == {
            "title": "Build finished",
            "body": "main is green",
            "url": "https://ci.example.com/builds/9",
            "id": n.pk,
            "tag": f"herald-{n.pk}",
        }
        assert int(got.headers["ttl"]) > 0
    assert service.rejected == []


def test_url_that_is_not_http_becomes_the_web_ui(as_user, alice, service):
    subscribe(as_user(alice), service.subscribe("a1"))
    n = notify(alice, url="javascript:alert(1)")
    push.push_notifications([n.pk])
    assert service.wait_for("a1")[0].message["url"] == "/"


def test_push_off_quiet_hours_and_muted_room_suppress_push(as_user, alice, bob, service):
    client = as_user(alice)
    subscribe(client, service.subscribe("a1"))
    room = chat_services.room_create(creator_id=bob.pk, name="noisy", member_ids=[alice.pk])
    client.patch(PREFS, {"muted_rooms": [room.pk]}, format="json")
    muted = notify(alice, "in the muted room", room=room.pk)
    other = notify(alice, "elsewhere")
    assert push.push_notifications([muted.pk, other.pk]).sent == 1
    assert [m["title"] for m in service.messages("a1")] == ["elsewhere"]

    # quiet from an hour ago to an hour from now (over midnight or not)
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    client.patch(PREFS, {"quiet_hours": quiet}, format="json")
    assert push.push_notifications([notify(alice, "at night").pk]).sent == 0
    client.patch(PREFS, {"quiet_hours": None, "push": False}, format="json")
    assert push.push_notifications([notify(alice, "push off").pk]).sent == 0
    client.patch(PREFS, {"push": True}, format="json")
    read = notify(alice, "read already")
    services.notification_mark_read(user_id=alice.pk, ids=[read.pk])
    assert push.push_notifications([read.pk]).sent == 0
    assert push.push_notifications([notify(alice, "back").pk]).sent == 1
    assert [m["title"] for m in service.messages("a1")] == ["elsewhere", "back"]


def test_gone_subscription_is_deleted(as_user, alice, service):
    subscribe(as_user(alice), service.subscribe("gone"))
    subscribe(as_user(alice), service.subscribe("fine"))
    service.answers["gone"] = 410
    result = push.push_notifications([notify(alice).pk])
    assert (result.sent, result.deleted) == (1, 1)
    assert [s.endpoint.rsplit("/", 1)[1] for s in PushSubscription.objects.all()] == ["fine"]


def test_other_failures_are_retried_through_the_queue(as_user, alice, service):
    subscribe(as_user(alice), service.subscribe("flaky"))
    service.answers["flaky"] = 503
    n = notify(alice)
    result = push.push_notifications([n.pk])
    assert (result.sent, result.retried) == (0, 1)
    row = DBTaskResult.objects.get(task_path="notifications.push.retry")
    assert row.args_kwargs["args"] == [PushSubscription.objects.get().pk, n.pk]
    assert row.run_after is not None
    assert PushSubscription.objects.count() == 1  # kept
    # the retry, once the service is back
    service.answers["flaky"] = 201
    assert push.send(PushSubscription.objects.get(), n) is True
    assert len(service.messages("flaky")) == 2


def test_storing_a_notification_enqueues_one_delivery_only_for_subscribed_users(
    as_user, alice, bob, service, django_capture_on_commit_callbacks
):
    subscribe(as_user(alice), service.subscribe("a1"))
    with django_capture_on_commit_callbacks(execute=True):
        services.notification_create(recipient_ids=[alice.pk, bob.pk], title="t")
    (row,) = DBTaskResult.objects.filter(task_path="notifications.push.deliver")
    (ids,) = row.args_kwargs["args"]
    assert Notification.objects.get(pk__in=ids).recipient_id == alice.pk
    with django_capture_on_commit_callbacks(execute=True):
        services.notification_create(recipient_ids=[bob.pk], title="nobody subscribed")
    assert DBTaskResult.objects.filter(task_path="notifications.push.deliver").count() == 1
    as_user(alice).patch(PREFS, {"push": False}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        services.notification_create(recipient_ids=[alice.pk], title="push off")
    assert DBTaskResult.objects.filter(task_path="notifications.push.deliver").count() == 1
    assert get_user_model().objects.count() == 2


def test_vapid_key_may_be_pem(settings):
    from py_vapid import Vapid

    key = Vapid()
    key.generate_keys()
    settings.HERALD = {**settings.HERALD, "VAPID_PRIVATE_KEY": key.private_pem().decode()}
    push.vapid.cache_clear()
    try:
        raw = key.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        assert push.vapid_public_key() == b64url(raw)
    finally:
        push.vapid.cache_clear()


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({}, True),
        ({"HERALD_VAPID_PRIVATE_KEY": "eQ5UxumAFNqdoBcAj-Puoc3TLMXX7ehJsPxjDTOPJeI"}, True),
        (
            {
                "HERALD_VAPID_PRIVATE_KEY": "eQ5UxumAFNqdoBcAj-Puoc3TLMXX7ehJsPxjDTOPJeI",
                "HERALD_VAPID_SUBJECT": "mailto:ops@example.com",
            },
            False,
        ),
    ],
)
def test_production_settings_require_the_vapid_key_and_subject(env, refused, tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HERALD_"))}
    clean.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="push-test-" + "0123456789abcdef" * 4,
        DJANGO_DEBUG="0",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        **env,
    )
    result = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", "import django; django.setup()"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    if refused:
        assert result.returncode != 0
        assert "HERALD_VAPID_PRIVATE_KEY and HERALD_VAPID_SUBJECT are required" in result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_staff_see_subscriptions_and_preferences_in_the_admin(client, alice, as_user, service):
    subscribe(as_user(alice), service.subscribe("a1"))
    as_user(alice).patch(PREFS, {"email_digest": "off"}, format="json")
    admin = get_user_model().objects.create_superuser("root", password="pw-root-admin-1")
    client.force_login(admin)
    subs = client.get("/admin/notifications/pushsubscription/")
    assert subs.status_code == 200
    assert "Firefox/140" in subs.content.decode()
    assert client.get("/admin/notifications/pushsubscription/add/").status_code == 403
    prefs = client.get("/admin/notifications/preferences/")
    assert prefs.status_code == 200
    assert "alice" in prefs.content.decode()
