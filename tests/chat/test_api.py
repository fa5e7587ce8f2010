"""The rooms REST API (docs/protocol.md): rooms, direct rooms, members, history, posting."""

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import Membership, Message, Room
from tests.support.data import send_as

pytestmark = pytest.mark.django_db


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str), body
    return body


class TestRooms:
    def test_create_a_group_room(self, as_user, alice, bob):
        answer = as_user(alice).post(
            "/api/rooms/", {"name": " general ", "members": [bob.pk, bob.pk]}, format="json"
        )
        assert answer.status_code == 201, answer.content
        room = answer.json()
        assert room["name"] == "general"
        assert room["kind"] == "group"
        assert room["created_by"] == alice.pk
        assert room["created_at"].endswith("Z")
        assert [(m["id"], m["username"], m["role"]) for m in room["members"]] == [
            (alice.pk, "alice", "owner"),
            (bob.pk, "bob", "member"),
        ]
        assert room["unread_count"] == 0
        assert room["last_message"] is None

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"name": "  "},
            {"name": "x" * 101},
            {"name": "a", "direct_with": 1},
            {"name": "a", "members": [999_999]},
            {"name": "a", "members": "bob"},
            {"direct_with": 999_999},
            {"direct_with": 2**70},
        ],
    )
    def test_bad_bodies_are_400(self, as_user, alice, bob, body):
        answer = as_user(alice).post("/api/rooms/", body, format="json")
        assert answer.status_code == 400, answer.content
        assert set(answer.json()) >= {"detail", "code"}
        assert Room.objects.count() == 0

    def test_direct_room_is_one_per_pair(self, as_user, alice, bob):
        first = as_user(alice).post("/api/rooms/", {"direct_with": bob.pk}, format="json")
        again = as_user(bob).post("/api/rooms/", {"direct_with": alice.pk}, format="json")
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        assert first.json()["kind"] == "direct"
        assert {m["id"] for m in first.json()["members"]} == {alice.pk, bob.pk}
        assert Room.objects.filter(kind="direct").count() == 1
        error_of(
            as_user(alice).post("/api/rooms/", {"direct_with": alice.pk}, format="json"),
            400,
            "invalid",
        )

    def test_list_shows_members_unread_count_and_last_message(
        self, as_user, make_room, alice, bob, carol
    ):
        quiet = make_room(alice, bob, name="quiet")
        busy = make_room(bob, alice, carol, name="busy")
        for body in ("one", "two", "three"):
            send_as(bob, busy, body)
        mine = send_as(alice, busy, "mine")  # the caller's own messages are never unread
        make_room(bob, carol, name="not alice's")

        rooms = as_user(alice).get("/api/rooms/").json()

        assert [r["name"] for r in rooms] == ["busy", "quiet"]  # most recently active first
        assert rooms[0]["unread_count"] == 3
        assert rooms[0]["last_message"]["id"] == mine
        assert rooms[0]["last_message"]["author"] == {"id": alice.pk, "username": "alice"}
        assert {m["username"] for m in rooms[0]["members"]} == {"alice", "bob", "carol"}
        assert rooms[1]["id"] == quiet.pk
        assert rooms[1]["unread_count"] == 0

    def test_list_costs_the_same_queries_for_many_rooms(self, as_user, make_room, alice, bob):
        client = as_user(alice)
        send_as(bob, make_room(alice, bob), "hi")
        client.get("/api/rooms/")  # the first request also records the login session's use
        with CaptureQueriesContext(connection) as one:
            assert len(client.get("/api/rooms/").json()) == 1
        for i in range(10):
            send_as(bob, make_room(bob, alice, name=f"r{i}"), "hi")
        with CaptureQueriesContext(connection) as eleven:
            assert len(client.get("/api/rooms/").json()) == 11
        assert len(eleven) == len(one)

    def test_detail_for_members(self, as_user, make_room, alice, bob):
        room = make_room(alice, bob)
        send_as(alice, room, "hello")
        answer = as_user(bob).get(f"/api/rooms/{room.pk}/")
        assert answer.status_code == 200
        assert answer.json()["unread_count"] == 1


class TestNonMembersGet404:
    """Every room route answers a non-member exactly as for a room that does not exist."""

    ROUTES = [
        ("get", "/api/rooms/{id}/", None),
        ("get", "/api/rooms/{id}/messages/", None),
        ("post", "/api/rooms/{id}/messages/", {"body": "hi"}),
        ("post", "/api/rooms/{id}/members/", {"user_id": "{carol}"}),
        ("delete", "/api/rooms/{id}/members/{carol}/", None),
    ]

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    def test_same_404_as_a_missing_room(
        self, as_user, make_room, alice, bob, carol, method, path, body
    ):
        room = make_room(alice, bob)
        client = as_user(carol)

        def call(room_id: int) -> Any:
            url = path.format(id=room_id, carol=carol.pk)
            data = {k: (carol.pk if v == "{carol}" else v) for k, v in (body or {}).items()}
            return getattr(client, method)(url, data or None, format="json")

        hidden, missing = call(room.pk), call(room.pk + 1000)
        error_of(hidden, 404, "not_found")
        assert hidden.json() == missing.json()
        error_of(call(2**64), 404, "not_found")  # beyond any database integer: still a 404
        assert Message.objects.count() == 0
        assert not Membership.objects.filter(user=carol).exists()


class TestMembers:
    def test_owner_adds_and_removes(self, as_user, make_room, alice, bob, carol):
        room = make_room(alice, bob)
        owner = as_user(alice)
        added = owner.post(f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk}, format="json")
        assert added.status_code == 201
        assert added.json()["id"] == carol.pk
        assert added.json()["role"] == "member"
        again = owner.post(f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk}, format="json")
        assert again.status_code == 200
        promoted = owner.post(
            f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk, "role": "owner"}, format="json"
        )
        assert (promoted.status_code, promoted.json()["role"]) == (200, "owner")
        kept = owner.post(f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk}, format="json")
        assert kept.json()["role"] == "owner"  # no role given: the role is kept
        assert owner.delete(f"/api/rooms/{room.pk}/members/{carol.pk}/").status_code == 204
        error_of(owner.delete(f"/api/rooms/{room.pk}/members/{carol.pk}/"), 404, "not_found")

    def test_members_cannot_manage_others_but_can_leave(
        self, as_user, make_room, alice, bob, carol
    ):
        room = make_room(alice, bob)
        member = as_user(bob)
        error_of(
            member.post(f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk}, format="json"),
            403,
            "permission_denied",
        )
        error_of(
            member.delete(f"/api/rooms/{room.pk}/members/{alice.pk}/"), 403, "permission_denied"
        )
        assert member.delete(f"/api/rooms/{room.pk}/members/{bob.pk}/").status_code == 204
        error_of(member.get(f"/api/rooms/{room.pk}/"), 404, "not_found")

    def test_moderators_manage_any_room_and_staff_alone_do_not(
        self, as_user, make_room, make_user, alice, bob, carol
    ):
        from django.contrib.auth.models import Group

        staff = make_user(username="staff", is_staff=True)
        room = make_room(alice, bob)
        error_of(
            as_user(staff).post(
                f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk}, format="json"
            ),
            404,
            "not_found",
        )
        admin = make_user(username="admin")
        admin.groups.add(Group.objects.get(name="Moderators"))  # the data migration's group
        client = as_user(admin)
        assert (
            client.post(
                f"/api/rooms/{room.pk}/members/", {"user_id": carol.pk}, format="json"
            ).status_code
            == 201
        )
        assert client.delete(f"/api/rooms/{room.pk}/members/{bob.pk}/").status_code == 204
        assert set(room.memberships.values_list("user_id", flat=True)) == {alice.pk, carol.pk}

    def test_direct_room_members_never_change(self, as_user, alice, bob, carol):
        room = as_user(alice).post("/api/rooms/", {"direct_with": bob.pk}, format="json").json()
        client = as_user(alice)
        error_of(
            client.post(f"/api/rooms/{room['id']}/members/", {"user_id": carol.pk}, format="json"),
            403,
            "permission_denied",
        )
        error_of(
            client.delete(f"/api/rooms/{room['id']}/members/{alice.pk}/"), 403, "permission_denied"
        )

    def test_unknown_user_is_400(self, as_user, make_room, alice):
        room = make_room(alice)
        error_of(
            as_user(alice).post(
                f"/api/rooms/{room.pk}/members/", {"user_id": 999_999}, format="json"
            ),
            400,
            "invalid",
        )


class TestHistory:
    @pytest.fixture
    def history(self, make_room, alice, bob) -> tuple[Room, list[int]]:
        room = make_room(alice, bob)
        return room, [send_as(bob if i % 2 else alice, room, f"m{i}") for i in range(7)]

    def test_newest_page_first_then_older_pages(self, as_user, history, alice):
        room, ids = history
        client = as_user(alice)
        page = client.get(f"/api/rooms/{room.pk}/messages/?page_size=3").json()
        assert [m["id"] for m in page["results"]] == [ids[6], ids[5], ids[4]]
        assert page["previous"] is None
        assert f"before={ids[4]}" in page["next"]

        page = client.get(page["next"]).json()
        assert [m["id"] for m in page["results"]] == [ids[3], ids[2], ids[1]]
        assert f"after={ids[3]}" in page["previous"]
        page = client.get(page["next"]).json()
        assert [m["id"] for m in page["results"]] == [ids[0]]
        assert page["next"] is None

    def test_after_catches_up_from_a_cursor(self, as_user, history, alice):
        room, ids = history
        client = as_user(alice)
        page = client.get(f"/api/rooms/{room.pk}/messages/?after={ids[1]}&page_size=2").json()
        assert [m["id"] for m in page["results"]] == [ids[3], ids[2]]
        assert f"before={ids[2]}" in page["next"]
        page = client.get(page["previous"]).json()
        assert [m["id"] for m in page["results"]] == [ids[5], ids[4]]
        page = client.get(page["previous"]).json()
        assert [m["id"] for m in page["results"]] == [ids[6]]
        assert page["previous"] is None

    def test_before_and_after_bound_a_range(self, as_user, history, alice):
        room, ids = history
        page = (
            as_user(alice)
            .get(f"/api/rooms/{room.pk}/messages/?after={ids[1]}&before={ids[5]}")
            .json()
        )
        assert [m["id"] for m in page["results"]] == [ids[4], ids[3], ids[2]]

    @pytest.mark.parametrize(
        "query", ["before=x", "after=-1", "page_size=0", "page_size=201", f"before={2**64}"]
    )
    def test_bad_queries_are_400(self, as_user, history, alice, query):
        room, _ = history
        answer = as_user(alice).get(f"/api/rooms/{room.pk}/messages/?{query}")
        assert answer.status_code == 400
        assert "code" in answer.json()


class TestPost:
    def test_post_stores_and_answers_the_message(
        self, as_user, make_room, alice, bob, django_capture_on_commit_callbacks
    ):
        room = make_room(alice, bob)
        client_id = str(uuid.uuid4())
        bob_client = as_user(bob)  # signs in: not inside the block that counts callbacks
        with django_capture_on_commit_callbacks() as callbacks:
            first = bob_client.post(
                f"/api/rooms/{room.pk}/messages/",
                {"body": " hi ", "client_id": client_id},
                format="json",
            )
        assert first.status_code == 201
        assert len(callbacks) == 1  # pushed live after commit
        message = first.json()
        assert message["body"] == "hi"
        assert message["client_id"] == client_id
        assert message["author"] == {"id": bob.pk, "username": "bob"}
        assert message["room"] == room.pk

        with django_capture_on_commit_callbacks() as callbacks:
            again = bob_client.post(
                f"/api/rooms/{room.pk}/messages/",
                {"body": "hi again", "client_id": client_id},
                format="json",
            )
        assert again.status_code == 201
        assert again.json() == message
        assert callbacks == []
        assert Message.objects.count() == 1

    def test_without_client_id_each_post_is_a_message(self, as_user, make_room, alice):
        room = make_room(alice)
        client = as_user(alice)
        for _ in range(2):
            assert (
                client.post(
                    f"/api/rooms/{room.pk}/messages/", {"body": "bot"}, format="json"
                ).status_code
                == 201
            )
        assert Message.objects.count() == 2

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"body": ""},
            {"body": "   "},
            {"body": "x" * 4001},
            {"body": "a", "client_id": "nope"},
        ],
    )
    def test_invalid_bodies_are_400(self, as_user, make_room, alice, body):
        room = make_room(alice)
        answer = as_user(alice).post(f"/api/rooms/{room.pk}/messages/", body, format="json")
        assert answer.status_code == 400
        assert "code" in answer.json()
        assert Message.objects.count() == 0
