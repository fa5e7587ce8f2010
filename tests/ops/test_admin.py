"""Django admin as a superuser: every page an operator uses, and sending a notification."""

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group

from chat.models import Message, Room
from notifications.models import Notification
from realtime import groups
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class Listener:
    """A channel on the layer, added to ``user.<id>``: what a socket of that user would get."""

    def __init__(self, user_id: int) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(groups.user_group(user_id), self.channel)

    def frames(self) -> list[dict[str, Any]]:
        async def drain() -> list[dict[str, Any]]:
            got = []
            while True:
                try:
                    event = await asyncio.wait_for(self.layer.receive(self.channel), 0.05)
                except TimeoutError:
                    return got
                got.append(json.loads(event["text"]))

        return async_to_sync(drain)()


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/accounts/user/?q=ali",
        "/admin/accounts/user/?is_active__exact=1&groups__id__exact=1",
        "/admin/accounts/loginsession/?q=ali&kind__exact=api&revoked_at__isnull=True",
        "/admin/notifications/notification/?q=hello&read_at__isnull=True",
        "/admin/chat/room/?q=ali&kind__exact=group",
        "/admin/chat/message/?q=hi",
        "/admin/notifications/notification/send/",
        "/admin/auth/group/",
    ],
)
def test_every_operator_page_renders(admin_client, url):
    UserFactory(username="alice")
    assert admin_client.get(url).status_code == 200


def test_the_users_page_shows_sessions_and_open_sockets(admin_client, login):
    alice = UserFactory(username="alice")
    session, _ = login(alice)
    page = admin_client.get(f"/admin/accounts/user/{alice.pk}/change/").content.decode()
    assert str(session.pk) in page
    # The counts themselves cross processes: tests/crossprocess/test_ops.py.
    assert "open sockets (all processes)" in page.lower()


def test_rooms_list_members_and_link_their_messages(admin_client):
    alice = UserFactory(username="alice")
    room = Room.objects.create(name="ops", created_by=alice)
    room.memberships.create(user=alice, role="owner")
    Message.objects.create(room=room, author=alice, body="hi", client_id="0" * 32)
    listing = admin_client.get("/admin/chat/room/").content.decode()
    link = f"/admin/chat/message/?room__id__exact={room.pk}"
    assert link in listing
    assert "1 message(s)" in listing
    messages = admin_client.get(link)
    assert messages.status_code == 200
    assert "hi" in messages.content.decode()
    change = admin_client.get(f"/admin/chat/room/{room.pk}/change/").content.decode()
    assert "alice" in change or str(alice.pk) in change


def test_the_users_action_opens_the_send_form_with_them(admin_client):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    answer = admin_client.post(
        "/admin/accounts/user/",
        {"action": "send_notification", "_selected_action": [alice.pk, bob.pk]},
    )
    assert answer.status_code == 302
    assert answer["Location"].endswith(f"/send/?users={alice.pk},{bob.pk}")
    form = admin_client.get(answer["Location"]).content.decode()
    assert f'value="{alice.pk},{bob.pk}"' in form


def test_sending_to_selected_users_stores_and_pushes(
    admin_client, superuser, django_capture_on_commit_callbacks
):
    alice, bob, carol = (UserFactory(username=n) for n in ("alice", "bob", "carol"))
    alices, carols = Listener(alice.pk), Listener(carol.pk)
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(
            "/admin/notifications/notification/send/",
            {
                "users": f"{alice.pk}, {bob.pk}",
                "title": "Maintenance",
                "body": "at noon",
                "data": '{"url": "/status"}',
            },
        )
    assert answer.status_code == 302
    stored = Notification.objects.filter(title="Maintenance")
    assert sorted(stored.values_list("recipient_id", flat=True)) == [alice.pk, bob.pk]
    assert {n.sender_id for n in stored} == {superuser.pk}
    (frame,) = alices.frames()
    assert frame["type"] == "notification"
    assert frame["notification"]["title"] == "Maintenance"
    assert frame["notification"]["data"] == {"url": "/status"}
    assert frame["notification"]["seq"] == 1
    assert carols.frames() == []


def test_sending_to_a_group_and_to_everyone(admin_client, django_capture_on_commit_callbacks):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    UserFactory(username="gone", is_active=False)
    staff = Group.objects.create(name="oncall")
    alice.groups.add(staff)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/notifications/notification/send/", {"group": staff.pk, "title": "Page"}
        )
        admin_client.post(
            "/admin/notifications/notification/send/", {"everyone": "on", "title": "All"}
        )
    assert list(Notification.objects.filter(title="Page").values_list("recipient", flat=True)) == [
        alice.pk
    ]
    everyone = set(Notification.objects.filter(title="All").values_list("recipient", flat=True))
    assert alice.pk in everyone
    assert bob.pk in everyone
    assert "gone" not in set(
        Notification.objects.filter(title="All").values_list("recipient__username", flat=True)
    )


def test_the_send_form_refuses_an_unclear_audience(admin_client):
    UserFactory(username="alice")
    page = admin_client.post(
        "/admin/notifications/notification/send/", {"everyone": "on", "users": "1", "title": "x"}
    )
    assert page.status_code == 200
    assert "Choose exactly one of" in page.content.decode()
    assert not Notification.objects.exists()


def test_staff_without_the_send_permission_cannot_send(client):
    clerk = UserFactory(username="clerk", is_staff=True)
    client.force_login(clerk)
    assert client.get("/admin/notifications/notification/send/").status_code == 403
