"""``GET, PATCH /api/me/preferences/`` (docs/protocol.md, "Preferences"), the mute rule a
mention uses, and quiet hours."""

from datetime import UTC, datetime, time

import pytest

from chat import services as chat_services
from notifications import preferences, push, services
from notifications.preferences import QuietHours

pytestmark = pytest.mark.django_db

URL = "/api/me/preferences/"


def assert_400(response, code: str, field: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code, body
    assert field in body["errors"], body
    assert body["detail"]


@pytest.fixture
def rooms(alice, bob):
    """``(alice's and bob's room, bob's own room)``."""
    shared = chat_services.room_create(creator_id=alice.pk, name="shared", member_ids=[bob.pk])
    other = chat_services.room_create(creator_id=bob.pk, name="bob only")
    return shared, other


def test_defaults(as_user, alice):
    response = as_user(alice).get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "push": True,
        "email_digest": "daily",
        "quiet_hours": None,
        "muted_rooms": [],
    }


def test_patch_changes_only_what_is_given_and_persists(as_user, alice, rooms):
    shared, _ = rooms
    client = as_user(alice)
    response = client.patch(URL, {"push": False, "email_digest": "hourly"}, format="json")
    assert response.status_code == 200, response.content
    quiet = {"start": "22:30", "end": "07:00", "timezone": "Europe/Berlin"}
    response = client.patch(URL, {"quiet_hours": quiet, "muted_rooms": [shared.pk]}, format="json")
    assert response.status_code == 200, response.content
    expected = {
        "push": False,
        "email_digest": "hourly",
        "quiet_hours": quiet,
        "muted_rooms": [shared.pk],
    }
    assert response.json() == expected
    assert client.get(URL).json() == expected
    assert preferences.email_digest_of(alice.pk) == "hourly"
    # null clears quiet hours; [] unmutes everything
    response = client.patch(URL, {"quiet_hours": None, "muted_rooms": []}, format="json")
    assert response.json()["quiet_hours"] is None
    assert response.json()["muted_rooms"] == []


def test_preferences_are_per_user(as_user, alice, bob):
    as_user(alice).patch(URL, {"push": False}, format="json")
    assert as_user(bob).get(URL).json()["push"] is True


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"email_digest": "weekly"}, "invalid_choice", "email_digest"),
        ({"push": "maybe"}, "invalid", "push"),
        (
            {"quiet_hours": {"start": "25:00", "end": "07:00", "timezone": "UTC"}},
            "invalid",
            "quiet_hours.start",
        ),
        (
            {"quiet_hours": {"start": "7am", "end": "07:00", "timezone": "UTC"}},
            "invalid",
            "quiet_hours.start",
        ),
        (
            {"quiet_hours": {"start": "22:00", "end": "7:0", "timezone": "UTC"}},
            "invalid",
            "quiet_hours.end",
        ),
        (
            {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}},
            "invalid",
            "quiet_hours.timezone",
        ),
        (
            {"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}},
            "invalid",
            "quiet_hours",
        ),
        ({"quiet_hours": {"start": "22:00", "timezone": "UTC"}}, "invalid", "quiet_hours"),
        ({"quiet_hours": "22-07"}, "invalid", "quiet_hours"),
        ({"muted_rooms": ["x"]}, "invalid", "muted_rooms"),
        ({"muted_rooms": 5}, "not_a_list", "muted_rooms"),
        ({"sound": True}, "invalid", "sound"),
    ],
)
def test_bad_input_is_a_400_with_a_code(as_user, alice, body, code, field):
    response = as_user(alice).patch(URL, body, format="json")
    assert_400(response, code, field)
    assert as_user(alice).get(URL).json()["push"] is True  # nothing stored


def test_muting_a_room_one_is_not_a_member_of_or_that_does_not_exist(as_user, alice, rooms):
    shared, others = rooms
    for bad in ([others.pk], [shared.pk, 10**9]):
        response = as_user(alice).patch(URL, {"muted_rooms": bad}, format="json")
        assert_400(response, "invalid", "muted_rooms")
    assert as_user(alice).get(URL).json()["muted_rooms"] == []


def test_unauthenticated(api_client):
    assert api_client().get(URL).status_code == 401
    assert api_client().patch(URL, {"push": False}, format="json").status_code == 401


def test_mute_rule_for_mentions(as_user, alice, bob, rooms):
    shared, _ = rooms
    assert not services.is_room_muted(bob.pk, shared.pk)
    as_user(bob).patch(URL, {"muted_rooms": [shared.pk]}, format="json")
    assert services.is_room_muted(bob.pk, shared.pk)
    assert not services.is_room_muted(alice.pk, shared.pk)
    assert services.muted_user_ids(room_id=shared.pk, user_ids=[alice.pk, bob.pk]) == {bob.pk}


def test_digest_unsubscribe_turns_digests_off(alice):
    preferences.email_digest_off(alice.pk)
    assert preferences.email_digest_of(alice.pk) == "off"
    assert preferences.preferences_get(user_id=alice.pk)["push"] is True


@pytest.mark.parametrize(
    ("start", "end", "utc", "quiet"),
    [
        # Berlin is UTC+1 in January: 22:00..07:00 Berlin is 21:00..06:00 UTC
        (time(22), time(7), datetime(2026, 1, 5, 21, 0, tzinfo=UTC), True),
        (time(22), time(7), datetime(2026, 1, 5, 20, 59, tzinfo=UTC), False),
        (time(22), time(7), datetime(2026, 1, 6, 5, 59, tzinfo=UTC), True),
        (time(22), time(7), datetime(2026, 1, 6, 6, 0, tzinfo=UTC), False),
        (time(9), time(17), datetime(2026, 7, 1, 7, 0, tzinfo=UTC), True),  # UTC+2 in summer
        (time(9), time(17), datetime(2026, 7, 1, 15, 0, tzinfo=UTC), False),
    ],
)
def test_quiet_hours_in_the_users_time_zone(start, end, utc, quiet):
    assert QuietHours(start, end, "Europe/Berlin").contains(utc) is quiet


def test_settings_page(client, alice):
    assert client.get("/settings/").status_code == 302  # to the sign-in page
    signed_in = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert signed_in.status_code == 302, signed_in.content
    page = client.get("/settings/")
    assert page.status_code == 200
    assert "worker-src 'self'" in page["Content-Security-Policy"]
    assert "script-src 'self'" in page["Content-Security-Policy"]
    html = page.content.decode()
    for part in ("push-enabled", "email-digest", "quiet-start", "muted-list"):
        assert f'id="{part}"' in html
    assert push.vapid_public_key() in html
    home = client.get("/").content.decode()
    assert 'href="/settings/"' in home
    assert 'id="room-mute"' in home


def test_service_worker_is_served_at_the_root(client):
    response = client.get("/push-sw.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Cache-Control"] == "no-cache"
    body = response.content.decode()
    assert "showNotification" in body
    assert "openWindow" in body


def test_a_room_one_left_drops_out_of_the_muted_list(as_user, alice, bob, rooms):
    shared, bobs = rooms
    client = as_user(bob)
    assert (
        client.patch(URL, {"muted_rooms": [shared.pk, bobs.pk]}, format="json").status_code == 200
    )
    chat_services.room_member_remove(room_id=shared.pk, actor_id=bob.pk, user_id=bob.pk)
    assert client.get(URL).json()["muted_rooms"] == [bobs.pk]
    # what the page read can be sent back as it is
    assert client.patch(URL, {"muted_rooms": [bobs.pk]}, format="json").status_code == 200
