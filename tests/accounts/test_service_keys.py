"""Service accounts' API keys: the command, ``Authorization: Api-Key``, scopes on the routes
that take them, revocation, ``last_used_at``, the admin, and keys kept out of logs."""

import logging
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ServiceKey
from chat import services as chat_services
from config.logging import RedactSecretsFilter

pytestmark = pytest.mark.django_db


def create_key(name: str, *scopes: str, user: str | None = None) -> tuple[str, str]:
    """``herald_service_key create``: ``(everything printed, the last line)``."""
    out = StringIO()
    args = ["create", name, *[a for s in scopes for a in ("--scope", s)]]
    if user:
        args += ["--user", user]
    call_command("herald_service_key", *args, stdout=out)
    printed = out.getvalue()
    return printed, printed.rstrip("\n").splitlines()[-1]


def keyed(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_create_prints_the_key_once_alone_on_the_last_line() -> None:
    printed, key = create_key("ci-bot", "notifications:send", "rooms:post")
    prefix, dot, secret = key.partition(".")
    assert dot
    assert len(prefix) == 8
    assert len(secret) >= 32
    assert printed.count(key) == 1
    row = ServiceKey.objects.get(prefix=prefix)
    assert row.user.username == "ci-bot"
    assert row.user.is_service
    assert not row.user.has_usable_password()
    assert sorted(row.scopes) == ["notifications:send", "rooms:post"]
    assert secret not in row.hashed_key
    assert secret not in row.pk
    me = keyed(key).get("/api/me/")
    assert me.status_code == 200
    assert me.json() == {"id": row.user.pk, "username": "ci-bot", "display_name": "ci-bot"}


@pytest.mark.parametrize("scopes", [("notifications:sned",), ()])
def test_an_unknown_or_missing_scope_is_refused(scopes: tuple[str, ...]) -> None:
    with pytest.raises(CommandError, match="scope"):
        create_key("typo-bot", *scopes)
    assert not get_user_model().objects.filter(username="typo-bot").exists()


def test_a_person_is_never_turned_into_a_service(alice: Any) -> None:
    with pytest.raises(CommandError, match="not a service account"):
        create_key("alice", "rooms:post")


def test_revoke_by_prefix_refuses_the_key_at_once() -> None:
    _, key = create_key("rev-bot", "notifications:send")
    client = keyed(key)
    assert client.get("/api/me/").status_code == 200
    out = StringIO()
    call_command("herald_service_key", "revoke", key.split(".")[0], stdout=out)
    answer = client.get("/api/me/")
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_api_key"
    with pytest.raises(CommandError, match="No service key"):
        call_command("herald_service_key", "revoke", "nope1234")


@pytest.mark.parametrize(
    "header",
    ["Api-Key nonsense", "Api-Key abcdefgh.wrong-secret", "Api-Key ", "Api-Key a.b.c"],
)
def test_a_bad_key_is_401(header: str) -> None:
    create_key("real-bot", "rooms:post")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    answer = client.get("/api/me/")
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_api_key"


def test_a_forged_secret_with_a_real_prefix_is_401() -> None:
    _, key = create_key("forge-bot", "rooms:post")
    prefix = key.split(".")[0]
    assert keyed(f"{prefix}.{'A' * 32}").get("/api/me/").status_code == 401


def test_an_inactive_service_account_cannot_use_its_key() -> None:
    _, key = create_key("off-bot", "rooms:post")
    user = get_user_model().objects.get(username="off-bot")
    user.is_active = False
    user.save()
    assert keyed(key).get("/api/me/").status_code == 401


def test_send_notifications_with_the_scope(alice: Any, bob: Any) -> None:
    _, key = create_key("notify-bot", "notifications:send")
    answer = keyed(key).post(
        "/api/notifications/",
        {"recipients": [alice.pk, bob.pk], "title": "Deployed", "body": "v2"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["count"] == 2
    assert alice.notifications.get().title == "Deployed"


def test_send_notifications_without_the_scope_is_403(alice: Any) -> None:
    _, key = create_key("room-bot", "rooms:post")
    answer = keyed(key).post(
        "/api/notifications/", {"recipients": [alice.pk], "title": "x"}, format="json"
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "scope_required"
    assert "notifications:send" in answer.json()["detail"]


def test_a_bearer_user_with_the_permission_still_sends(
    sender: Any, alice: Any, as_user: Callable[[Any], APIClient]
) -> None:
    answer = as_user(sender).post(
        "/api/notifications/", {"recipients": [alice.pk], "title": "x"}, format="json"
    )
    assert answer.status_code == 201


def test_a_bot_posts_to_rooms_it_belongs_to(alice: Any) -> None:
    _, key = create_key("chat-bot", "rooms:post")
    bot = get_user_model().objects.get(username="chat-bot")
    room = chat_services.room_create(creator_id=alice.pk, name="ops", member_ids=[bot.pk])
    other = chat_services.room_create(creator_id=alice.pk, name="private")
    client = keyed(key)
    answer = client.post(f"/api/rooms/{room.pk}/messages/", {"body": "build green"}, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["author"]["username"] == "chat-bot"
    refused = client.post(f"/api/rooms/{other.pk}/messages/", {"body": "x"}, format="json")
    assert refused.status_code == 404  # not a member: the room's existence is not revealed


def test_a_key_reaches_only_the_routes_of_its_scopes(alice: Any) -> None:
    _, key = create_key("narrow-bot", "notifications:send")
    client = keyed(key)
    for method, path in [
        ("get", "/api/rooms/"),
        ("post", "/api/notifications/read-all/"),
        ("post", "/api/auth/ws-ticket/"),
        ("post", "/api/rooms/1/messages/"),
    ]:
        answer = getattr(client, method)(path, {}, format="json")
        assert answer.status_code == 403, (path, answer.content)
        assert answer.json()["code"] == "scope_required"


def test_last_used_at_moves_on_use() -> None:
    _, key = create_key("used-bot", "rooms:post")
    row = ServiceKey.objects.get(prefix=key.split(".")[0])
    assert row.last_used_at is None
    keyed(key).get("/api/me/")
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_the_admin_lists_keys_and_shows_a_new_one_once(admin_client: Client) -> None:
    create_key("listed-bot", "rooms:post")
    bot = get_user_model().objects.get(username="listed-bot")
    page = admin_client.get("/admin/accounts/servicekey/")
    assert page.status_code == 200
    assert "listed-bot" in page.content.decode()
    added = admin_client.post(
        "/admin/accounts/servicekey/add/",
        {"name": "from-admin", "user": bot.pk, "scopes": '["webhooks:manage"]'},
        follow=True,
    )
    text = added.content.decode()
    row = ServiceKey.objects.get(name="from-admin")
    assert f"{row.prefix}." in text  # the key, in the one-time message
    refused = admin_client.post(
        "/admin/accounts/servicekey/add/",
        {"name": "bad", "user": bot.pk, "scopes": '["everything"]'},
    )
    assert refused.status_code == 200
    assert "Unknown scope" in refused.content.decode()
    assert not ServiceKey.objects.filter(name="bad").exists()


def test_a_key_never_reaches_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    _, key = create_key("log-bot", "rooms:post")
    record = logging.LogRecord(
        "t", logging.WARNING, __file__, 1, "got %s", (f"Api-Key {key}",), None
    )
    RedactSecretsFilter().filter(record)
    assert key.split(".")[1] not in record.getMessage()
    assert "Api-Key [redacted]" in record.getMessage()
