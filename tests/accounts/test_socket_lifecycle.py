"""The token lifecycle in one process: token expiry and refresh on open sockets, every revocation path."""

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework_simplejwt.tokens import AccessToken

from accounts import services
from accounts.models import LoginSession
from config.asgi import application
from tests.support.asgi import closed_with

pytestmark = pytest.mark.django_db(transaction=True)


def short_token(session, seconds: float) -> str:
    """An access token of ``session`` living ``seconds``."""
    token = AccessToken.for_user(session.user)
    token["sid"] = str(session.pk)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


async def connect(token: str) -> tuple[WebsocketCommunicator, dict]:
    comm = WebsocketCommunicator(application, f"/ws/?token={token}")
    connected, _ = await comm.connect()
    assert connected
    hello = await comm.receive_json_from(timeout=2)
    assert hello["type"] == "hello"
    return comm, hello


async def test_expiring_then_refresh_survives_old_expiry(alice, login):
    session, _ = await database_sync_to_async(login)(alice)
    comm, hello = await connect(short_token(session, 3))
    assert hello["expires_at"] is not None
    expiring = await comm.receive_json_from(timeout=3)  # at half of the 3 s lifetime
    assert expiring == {"type": "auth.expiring", "expires_at": hello["expires_at"]}
    await comm.send_json_to({"type": "auth.refresh", "token": short_token(session, 30), "ref": 7})
    ack = await comm.receive_json_from(timeout=2)
    assert ack["type"] == "ack"
    assert ack["ref"] == 7
    assert ack["expires_at"] > hello["expires_at"]
    # Past the first token's expiry the socket still answers.
    await comm.receive_nothing(timeout=2.5)
    await comm.send_json_to({"type": "ping", "ref": 1})
    assert await comm.receive_json_from(timeout=2) == {"type": "pong", "ref": 1}
    await comm.disconnect()


async def test_no_refresh_closes_4401_at_expiry(alice, login):
    session, _ = await database_sync_to_async(login)(alice)
    comm, _ = await connect(short_token(session, 2))
    assert (await comm.receive_json_from(timeout=2))["type"] == "auth.expiring"
    assert await closed_with(comm, timeout=3) == 4401


async def test_refresh_with_another_users_token_closes_4403(alice, bob, login):
    session, _ = await database_sync_to_async(login)(alice)
    _, bob_tokens = await database_sync_to_async(login)(bob)
    comm, _ = await connect(short_token(session, 60))
    await comm.send_json_to({"type": "auth.refresh", "token": bob_tokens["access"], "ref": "r"})
    error = await comm.receive_json_from(timeout=2)
    assert error["type"] == "error"
    assert error["code"] == "forbidden"
    assert error["ref"] == "r"
    assert await closed_with(comm) == 4403


async def test_refresh_with_garbage_or_refresh_token_is_an_error_and_keeps_socket(alice, login):
    session, pair = await database_sync_to_async(login)(alice)
    comm, _ = await connect(pair["access"])
    for bad in ("garbage", pair["refresh"]):
        await comm.send_json_to({"type": "auth.refresh", "token": bad})
        error = await comm.receive_json_from(timeout=2)
        assert error["type"] == "error"
        assert error["code"] == "invalid_message"
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=2))["type"] == "pong"
    await comm.disconnect()


async def test_password_change_closes_every_session_4401(alice, login):
    one, first = await database_sync_to_async(login)(alice)
    two, second = await database_sync_to_async(login)(alice)
    comm_one, _ = await connect(first["access"])
    comm_two, _ = await connect(second["access"])

    def change_password():
        user = get_user_model().objects.get(pk=alice.pk)
        user.set_password("a new password 123")
        user.save()

    await database_sync_to_async(change_password)()
    assert await closed_with(comm_one, timeout=1) == 4401
    assert await closed_with(comm_two, timeout=1) == 4401
    revoked = await database_sync_to_async(
        lambda: set(
            LoginSession.objects.filter(revoked_at__isnull=False).values_list("pk", flat=True)
        )
    )()
    assert revoked == {one.pk, two.pk}


async def test_deactivation_by_plain_save_closes_4403(alice, bob, login):
    _, pair = await database_sync_to_async(login)(alice)
    _, bob_pair = await database_sync_to_async(login)(bob)
    comm, _ = await connect(pair["access"])
    bob_comm, _ = await connect(bob_pair["access"])

    def deactivate():
        user = get_user_model().objects.get(pk=alice.pk)
        user.is_active = False
        user.save()

    await database_sync_to_async(deactivate)()
    assert await closed_with(comm, timeout=1) == 4403
    assert await bob_comm.receive_nothing(timeout=0.5)
    await bob_comm.disconnect()


async def test_admin_action_revokes_and_closes(alice, login, make_user):
    session, pair = await database_sync_to_async(login)(alice)
    _, other = await database_sync_to_async(login)(alice)
    comm, _ = await connect(pair["access"])
    other_comm, _ = await connect(other["access"])
    admin = await database_sync_to_async(make_user)(
        username="root", is_staff=True, is_superuser=True
    )

    def run_action():
        from django.test import Client

        client = Client()
        client.force_login(admin)
        response = client.post(
            "/admin/accounts/loginsession/",
            {"action": "revoke", "_selected_action": [str(session.pk)]},
        )
        assert response.status_code == 302

    await database_sync_to_async(run_action)()
    assert await closed_with(comm, timeout=1) == 4401
    assert await other_comm.receive_nothing(timeout=0.5)
    await other_comm.disconnect()


async def test_cookie_socket_closes_when_django_session_expires(alice):
    def web_login():
        from django.test import Client

        client = Client()
        assert (
            client.post("/login/", {"username": "alice", "password": "pw-alice"}).status_code == 302
        )
        session = client.session
        session.set_expiry(2)
        session.save()
        return client.cookies["sessionid"].value

    cookie = await database_sync_to_async(web_login)()
    comm = WebsocketCommunicator(
        application,
        "/ws/",
        headers=[
            (b"cookie", f"sessionid={cookie}".encode()),
            (b"host", b"localhost:8000"),
            (b"origin", b"http://localhost:8000"),
        ],
    )
    assert (await comm.connect())[0]
    hello = await comm.receive_json_from(timeout=2)
    assert hello["type"] == "hello"
    assert hello["expires_at"] is None
    assert await closed_with(comm, timeout=4) == 4401


async def test_handshake_updates_last_seen(alice, login):
    session, pair = await database_sync_to_async(login)(alice)
    await database_sync_to_async(LoginSession.objects.filter(pk=session.pk).update)(
        last_seen_at=session.created_at - timedelta(days=1)
    )
    comm, _ = await connect(pair["access"])
    seen = await database_sync_to_async(
        lambda: LoginSession.objects.get(pk=session.pk).last_seen_at
    )()
    assert seen > session.created_at - timedelta(minutes=1)
    await comm.disconnect()


def test_prune_deletes_old_dead_sessions(alice, login):
    old, _ = login(alice)
    services.login_session_revoke(session=old, reason="logout")
    LoginSession.objects.filter(pk=old.pk).update(revoked_at=old.created_at - timedelta(days=40))
    fresh_revoked, _ = login(alice)
    services.login_session_revoke(session=fresh_revoked, reason="logout")
    live, _ = login(alice)
    call_command("herald_prune", "--days", "30")
    assert set(LoginSession.objects.values_list("pk", flat=True)) == {fresh_revoked.pk, live.pk}


def test_rotated_refresh_reuse_revokes_session(alice, login, api_client):
    _, pair = login(alice)
    first = api_client().post(
        "/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
    )
    assert first.status_code == 200
    reuse = api_client().post(
        "/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
    )
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "session_invalid"
    newest = api_client().post(
        "/api/auth/token/refresh/", {"refresh": first.json()["refresh"]}, format="json"
    )
    assert newest.status_code == 401
    assert api_client(first.json()["access"]).get("/api/me/").status_code == 401
    assert json.loads(reuse.content)["detail"]
