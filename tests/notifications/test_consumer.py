"""The ``/ws/`` consumer through the full ASGI app (docs/protocol.md, docs/security.md)."""

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from notifications import services
from notifications.models import Notification
from tests.support.asgi import closed_with
from tests.support.data import notifications_bulk

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/ws/"


async def frame(ws: Any, timeout: float = 2) -> dict[str, Any]:
    return await ws.receive_json_from(timeout=timeout)


async def hello(ws: Any) -> dict[str, Any]:
    first = await frame(ws)
    assert first["type"] == "hello", first
    return first


async def still_open(ws: Any, ref: Any = "alive") -> None:
    """The socket still answers: ``ping`` → ``pong`` with the ref."""
    await ws.send_json_to({"type": "ping", "ref": ref})
    assert await frame(ws) == {"type": "pong", "ref": ref}


@pytest.fixture
def open_socket(connect, login):
    """``await open_socket(user)`` → a socket of a new login session of ``user``, hello read."""

    async def _open(user: Any) -> Any:
        _, tokens = await database_sync_to_async(login)(user)
        ws = await connect(tokens["access"])
        await hello(ws)
        return ws

    return _open


async def test_first_frame_is_hello(connect, login, alice):
    session, tokens = await database_sync_to_async(login)(alice)
    ws = await connect(tokens["access"])
    first = await frame(ws)
    assert first["type"] == "hello"
    assert first["user"] == {"id": alice.pk, "username": "alice"}
    assert first["session_id"] == str(session.pk)
    assert isinstance(first["connection_id"], str)
    assert first["connection_id"]
    assert first["heartbeat"] == 25
    assert first["expires_at"].endswith("Z")
    second = await hello(await connect(tokens["access"]))
    assert second["connection_id"] != first["connection_id"]


class TestDelivery:
    async def test_rest_post_reaches_every_socket_of_the_recipient_only(
        self, open_socket, as_user, alice, bob, sender
    ):
        alice_tab, alice_phone = await open_socket(alice), await open_socket(alice)
        bobs = await open_socket(bob)
        client = await sync_to_async(as_user)(sender)
        response = await sync_to_async(client.post)(
            "/api/notifications/",
            {"recipients": [alice.pk], "title": "Ping", "data": {"x": 1}},
            format="json",
        )
        assert response.status_code == 201
        [notification_id] = response.json()["ids"]
        for ws in (alice_tab, alice_phone):
            got = await frame(ws)
            assert got["type"] == "notification"
            assert got["notification"]["id"] == notification_id
            assert got["notification"]["seq"] == 1
            assert got["notification"]["title"] == "Ping"
            assert got["notification"]["data"] == {"x": 1}
            assert got["notification"]["read_at"] is None
        assert await bobs.receive_nothing()
        assert await alice_tab.receive_nothing()  # exactly once

    async def test_service_call_reaches_the_socket_in_seq_order(self, open_socket, alice, bob):
        ws = await open_socket(alice)
        for title in ("a", "b", "c"):
            await database_sync_to_async(services.notification_create)(
                recipient_ids=[alice.pk, bob.pk], title=title
            )
        got = [(await frame(ws))["notification"] for _ in range(3)]
        assert [(n["seq"], n["title"]) for n in got] == [(1, "a"), (2, "b"), (3, "c")]

    async def test_nothing_reaches_sockets_before_commit(self, open_socket, alice):
        ws = await open_socket(alice)

        def create_then_check_inside_transaction() -> None:
            from asgiref.sync import async_to_sync
            from django.db import transaction

            with transaction.atomic():
                services.notification_create(recipient_ids=[alice.pk], title="later")
                assert async_to_sync(ws.receive_nothing)(0.2)

        await database_sync_to_async(create_then_check_inside_transaction)()
        assert (await frame(ws))["notification"]["title"] == "later"

    async def test_rolled_back_notification_never_reaches_the_socket(self, open_socket, alice):
        ws = await open_socket(alice)

        def create_and_fail() -> None:
            from django.db import transaction

            with transaction.atomic():
                services.notification_create(recipient_ids=[alice.pk], title="oops")
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await database_sync_to_async(create_and_fail)()
        assert await ws.receive_nothing(0.3)
        assert not await Notification.objects.aexists()


class TestResume:
    async def test_returns_exactly_the_missed_notifications_in_order_then_ack(
        self, open_socket, alice
    ):
        for title in ("m1", "m2", "m3"):  # sent while no socket was open
            await database_sync_to_async(services.notification_create)(
                recipient_ids=[alice.pk], title=title
            )
        ws = await open_socket(alice)
        await database_sync_to_async(services.notification_create)(
            recipient_ids=[alice.pk], title="live"
        )
        assert (await frame(ws))["notification"]["seq"] == 4

        await ws.send_json_to({"type": "resume", "notifications_since": 1, "ref": "r1"})
        replayed = [await frame(ws) for _ in range(3)]
        assert [f["type"] for f in replayed] == ["notification", "notification", "ack"]
        assert [f["notification"]["seq"] for f in replayed[:2]] == [2, 3]
        assert replayed[2]["ref"] == "r1"
        # Seq 4 came live on this socket: never sent twice, not even when asked from 0.
        await ws.send_json_to({"type": "resume", "notifications_since": 0, "ref": 9})
        again = await frame(ws)
        assert again["notification"]["seq"] == 1
        assert (await frame(ws))["type"] == "ack"
        assert await ws.receive_nothing()

        await database_sync_to_async(services.notification_create)(
            recipient_ids=[alice.pk], title="after"
        )
        assert (await frame(ws))["notification"]["seq"] == 5
        assert await ws.receive_nothing()

    async def test_a_new_socket_gets_the_gap_from_its_last_seen_seq(self, open_socket, alice):
        await database_sync_to_async(notifications_bulk)(alice, 6)
        ws = await open_socket(alice)
        await ws.send_json_to({"type": "resume", "notifications_since": 4})
        assert [(await frame(ws))["notification"]["seq"] for _ in range(2)] == [5, 6]
        assert (await frame(ws)) == {"type": "ack", "ref": None, "count": 2}

    async def test_nothing_missed_acks_at_once(self, open_socket, alice):
        ws = await open_socket(alice)
        await ws.send_json_to({"type": "resume", "notifications_since": 0, "ref": "x"})
        assert await frame(ws) == {"type": "ack", "ref": "x", "count": 0}

    async def test_more_than_a_page(self, open_socket, alice, bob):
        await database_sync_to_async(notifications_bulk)(alice, 1_100)
        await database_sync_to_async(notifications_bulk)(bob, 5)
        ws = await open_socket(alice)
        await ws.send_json_to({"type": "resume", "notifications_since": 0, "ref": "big"})
        seqs = [(await frame(ws))["notification"]["seq"] for _ in range(1_100)]
        assert seqs == list(range(1, 1_101))
        assert await frame(ws) == {"type": "ack", "ref": "big", "count": 1_100}

    async def test_only_own_notifications(self, open_socket, alice, bob):
        await database_sync_to_async(notifications_bulk)(bob, 3)
        ws = await open_socket(alice)
        await ws.send_json_to({"type": "resume", "notifications_since": 0})
        assert (await frame(ws))["type"] == "ack"


class TestRead:
    @pytest.fixture
    def unread(self, alice) -> list[int]:
        return [n.pk for n in notifications_bulk(alice, 3)]

    async def test_read_ids_acks_the_sender_and_tells_every_socket(
        self, open_socket, alice, bob, unread
    ):
        tab, phone, bobs = (
            await open_socket(alice),
            await open_socket(alice),
            await open_socket(bob),
        )
        await tab.send_json_to({"type": "notification.read", "ids": unread[:2], "ref": "r"})
        got = [await frame(tab), await frame(tab)]
        expected_read = {"type": "notification.read", "ids": unread[:2], "unread_count": 1}
        assert {"type": "ack", "ref": "r", "unread_count": 1} in got
        assert expected_read in got
        assert await frame(phone) == expected_read
        assert await bobs.receive_nothing()
        assert await Notification.objects.filter(read_at__isnull=True).acount() == 1

    async def test_read_all(self, open_socket, alice, unread):
        tab, phone = await open_socket(alice), await open_socket(alice)
        await tab.send_json_to({"type": "notification.read", "all": True, "ref": 1})
        got = [await frame(tab), await frame(tab)]
        expected_read = {"type": "notification.read", "all": True, "unread_count": 0}
        assert {"type": "ack", "ref": 1, "unread_count": 0} in got
        assert expected_read in got
        assert await frame(phone) == expected_read

    async def test_another_users_ids_are_not_read(self, open_socket, alice, bob, unread):
        ws = await open_socket(bob)
        await ws.send_json_to({"type": "notification.read", "ids": unread, "ref": "x"})
        got = [await frame(ws), await frame(ws)]
        assert {"type": "ack", "ref": "x", "unread_count": 0} in got
        assert await Notification.objects.filter(read_at__isnull=True).acount() == 3

    async def test_rest_read_reaches_every_socket(self, open_socket, as_user, alice, unread):
        tab, phone = await open_socket(alice), await open_socket(alice)
        client = await sync_to_async(as_user)(alice)
        response = await sync_to_async(client.post)(f"/api/notifications/{unread[0]}/read/")
        assert response.json() == {"unread_count": 2}
        expected = {"type": "notification.read", "ids": [unread[0]], "unread_count": 2}
        assert await frame(tab) == expected
        assert await frame(phone) == expected
        response = await sync_to_async(client.post)("/api/notifications/read-all/")
        assert response.json() == {"unread_count": 0}
        for ws in (tab, phone):
            assert await frame(ws) == {"type": "notification.read", "all": True, "unread_count": 0}


async def test_ping_pong(open_socket, alice):
    ws = await open_socket(alice)
    await ws.send_json_to({"type": "ping", "ref": 42})
    assert await frame(ws) == {"type": "pong", "ref": 42}
    await ws.send_json_to({"type": "ping"})
    assert await frame(ws) == {"type": "pong", "ref": None}


BAD_FRAMES = [
    # (text sent, error code, ref echoed)
    ("not json", "invalid_json", None),
    ("", "invalid_json", None),
    ("{'type': 'ping'}", "invalid_json", None),
    ("[" * 30_000 + "]" * 30_000, "invalid_json", None),  # deep, yet under the size limit
    ('[{"type": "ping"}]', "invalid_message", None),
    ('"ping"', "invalid_message", None),
    ("null", "invalid_message", None),
    ('{"ref": "a"}', "invalid_message", "a"),
    ('{"type": "subscribe-all", "ref": 1}', "invalid_message", 1),
    ('{"type": 5, "ref": 2}', "invalid_message", 2),
    ('{"type": "resume", "ref": 3}', "invalid_message", 3),
    ('{"type": "resume", "notifications_since": "5", "ref": 4}', "invalid_message", 4),
    ('{"type": "resume", "notifications_since": 5.0, "ref": 5}', "invalid_message", 5),
    ('{"type": "resume", "notifications_since": true, "ref": 6}', "invalid_message", 6),
    ('{"type": "resume", "notifications_since": null, "ref": 7}', "invalid_message", 7),
    ('{"type": "resume", "notifications_since": -1, "ref": 8}', "invalid_message", 8),
    ('{"type": "resume", "notifications_since": 1e400, "ref": 9}', "invalid_message", 9),
    ('{"type": "resume", "notifications_since": NaN, "ref": 10}', "invalid_message", 10),
    (
        f'{{"type": "resume", "notifications_since": {2**64}, "ref": 11}}',
        "invalid_message",
        11,
    ),
    (
        '{"type": "resume", "notifications_since": %s, "ref": 12}' % ("9" * 5000),
        None,  # CPython refuses to parse an int this long: either code is fine
        None,
    ),
    ('{"type": "notification.read", "ref": 13}', "invalid_message", 13),
    ('{"type": "notification.read", "ids": [1], "all": true, "ref": 14}', "invalid_message", 14),
    ('{"type": "notification.read", "all": false, "ref": 15}', "invalid_message", 15),
    ('{"type": "notification.read", "ids": [0], "ref": 16}', "invalid_message", 16),
    ('{"type": "notification.read", "ids": ["1"], "ref": 17}', "invalid_message", 17),
    ('{"type": "notification.read", "ids": 1, "ref": 18}', "invalid_message", 18),
    (
        json.dumps({"type": "notification.read", "ids": list(range(1, 1_002)), "ref": 19}),
        "invalid_message",
        19,
    ),
    (
        '{"type": "resume", "notifications_since": %s, "ref": 20}' % ("[" * 500 + "]" * 500),
        "invalid_message",
        20,
    ),
    ('{"type": "ping", "ref": true}', "invalid_message", None),
    ('{"type": "ping", "ref": {"a": 1}}', "invalid_message", None),
    (f'{{"type": "ping", "ref": {2**60}}}', "invalid_message", None),
    ('{"type": "ping", "ref": "%s"}' % ("r" * 129), "invalid_message", None),
]


@pytest.mark.usefixtures("roomy")
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(open_socket, alice):
    ws = await open_socket(alice)
    for text, code, ref in BAD_FRAMES:
        # As the ASGI server hands it over (send_to refuses an empty frame).
        await ws.send_input({"type": "websocket.receive", "text": text})
        got = await frame(ws)
        assert got["type"] == "error", (text[:80], got)
        if code is not None:
            assert (got["code"], got["ref"]) == (code, ref), (text[:80], got)
        else:
            assert got["code"] in ("invalid_json", "invalid_message"), (text[:80], got)
        assert isinstance(got["detail"], str)
        assert got["detail"]
        await still_open(ws, ref=text[:20])


async def test_binary_frame_is_an_error_and_the_socket_stays_open(open_socket, alice):
    ws = await open_socket(alice)
    await ws.send_to(bytes_data=b'{"type": "ping"}')
    got = await frame(ws)
    assert (got["type"], got["code"]) == ("error", "invalid_message")
    await still_open(ws)


async def test_unknown_extra_fields_are_ignored(open_socket, alice):
    ws = await open_socket(alice)
    await ws.send_json_to({"type": "ping", "ref": "x", "future": {"deep": [[[[1]]]]}})
    assert await frame(ws) == {"type": "pong", "ref": "x"}


async def test_lone_surrogate_escapes_never_reach_the_wire(open_socket, alice):
    # "\ud800" is valid JSON but no UTF-8 text can carry it; daphne encodes every frame to
    # UTF-8, so echoing it in a ref would crash the send and drop the socket.
    ws = await open_socket(alice)
    for text in ('{"type": "ping", "ref": "\\ud800"}', '{"type": "nope", "ref": "\\udc00x"}'):
        await ws.send_to(text_data=text)
        raw = await ws.receive_from(timeout=2)
        raw.encode("utf-8")  # what daphne does with every text frame
        assert json.loads(raw)["type"] == "error"
    await still_open(ws)


class TestLimits:
    async def test_frame_at_the_limit_is_accepted(self, open_socket, alice):
        ws = await open_socket(alice)
        head = '{"type": "ping", "ref": "edge", "pad": "'
        text = head + "x" * (65_536 - len(head) - 2) + '"}'
        assert len(text.encode()) == 65_536
        await ws.send_to(text_data=text)
        assert await frame(ws) == {"type": "pong", "ref": "edge"}

    @pytest.mark.parametrize(
        "payload",
        [
            {"text_data": '{"type": "ping", "pad": "' + "x" * 65_536 + '"}'},
            # 40 000 characters, 80 000 bytes: the limit is in bytes.
            {"text_data": '{"type": "ping", "pad": "' + "é" * 40_000 + '"}'},
            {"bytes_data": b"x" * 65_537},
        ],
        ids=["text", "multibyte", "binary"],
    )
    async def test_larger_frame_closes_with_4413(self, open_socket, alice, payload):
        ws = await open_socket(alice)
        await ws.send_to(**payload)
        assert await closed_with(ws) == 4413

    async def test_limit_follows_the_setting(self, open_socket, alice, settings):
        settings.HERALD = {**settings.HERALD, "WS_MAX_MESSAGE_BYTES": 100}
        ws = await open_socket(alice)
        await ws.send_to(text_data='{"type": "ping", "pad": "' + "x" * 100 + '"}')
        assert await closed_with(ws) == 4413

    async def test_rate_limit_errors_then_recovers(self, open_socket, alice, settings):
        settings.HERALD = {**settings.HERALD, "WS_RATE": 20.0, "WS_BURST": 2}
        ws = await open_socket(alice)
        for ref in (1, 2):
            await ws.send_json_to({"type": "ping", "ref": ref})
            assert await frame(ws) == {"type": "pong", "ref": ref}
        await ws.send_json_to({"type": "ping", "ref": 3})
        limited = await frame(ws)
        assert (limited["type"], limited["code"]) == ("error", "rate_limited")
        await asyncio.sleep(0.2)  # a client that slows down is served again
        await still_open(ws)

    async def test_sustained_abuse_closes_with_4429(self, open_socket, alice, settings):
        settings.HERALD = {**settings.HERALD, "WS_RATE": 1.0, "WS_BURST": 3}
        ws = await open_socket(alice)
        for ref in range(3):
            await ws.send_json_to({"type": "ping", "ref": ref})
            assert await frame(ws) == {"type": "pong", "ref": ref}
        for _ in range(3):
            await ws.send_json_to({"type": "ping"})
            assert (await frame(ws))["code"] == "rate_limited"
        await ws.send_json_to({"type": "ping"})
        assert await closed_with(ws) == 4429

    async def test_rate_limit_is_per_connection(self, open_socket, alice, settings):
        settings.HERALD = {**settings.HERALD, "WS_RATE": 1.0, "WS_BURST": 1}
        first, second = await open_socket(alice), await open_socket(alice)
        await still_open(first)
        await first.send_json_to({"type": "ping"})
        assert (await frame(first))["code"] == "rate_limited"
        await still_open(second)
