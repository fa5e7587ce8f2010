"""REST: ``/api/notifications/`` (docs/protocol.md): send, list, read state, and the error shape."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from notifications import services
from notifications.models import Notification
from notifications.serializers import NotificationCreateSerializer
from tests.support.data import notifications_bulk

pytestmark = pytest.mark.django_db

URL = "/api/notifications/"


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The contract's error shape: the status, JSON ``{"detail": str, "code": str}``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("detail"), str)
    assert body["detail"]
    assert isinstance(body.get("code"), str)
    assert body["code"]
    if code is not None:
        assert body["code"] == code, body
    return body


class TestSend:
    def test_created_with_count_and_ids(
        self, as_user, sender, alice, bob, listen, django_capture_on_commit_callbacks
    ):
        to_alice = listen(alice)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_user(sender).post(
                URL,
                {
                    "recipients": [alice.pk, bob.pk],
                    "title": "Hi",
                    "body": "there",
                    "data": {"k": 1},
                },
                format="json",
            )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["count"] == 2
        stored = Notification.objects.filter(pk__in=body["ids"])
        assert sorted(stored.values_list("recipient_id", flat=True)) == sorted([alice.pk, bob.pk])
        assert {n.sender_id for n in stored} == {sender.pk}
        [frame] = to_alice.frames()
        assert frame["notification"]["title"] == "Hi"
        assert frame["notification"]["data"] == {"k": 1}

    def test_same_idempotency_key_twice_gives_the_same_answer(self, as_user, sender, alice):
        client = as_user(sender)
        payload = {"recipients": [alice.pk], "title": "Hi", "idempotency_key": "evt-1"}
        first = client.post(URL, payload, format="json")
        second = client.post(URL, payload, format="json")
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert Notification.objects.count() == 1

    def test_ten_thousand_recipients_pass_validation_one_more_is_400(self, as_user, sender):
        # Storing 10 000 is timed in test_services; here the API's own checks at the boundary
        # (one query for 10 000 ids must work on every database).
        user_model = get_user_model()
        users = user_model.objects.bulk_create(
            user_model(username=f"bulk{i}") for i in range(10_000)
        )
        ids = [u.pk for u in users]
        body = NotificationCreateSerializer(data={"recipients": ids, "title": "All"})
        assert body.is_valid(), body.errors
        assert body.validated_data["recipients"] == sorted(ids)
        response = as_user(sender).post(
            URL, {"recipients": [*ids, sender.pk], "title": "All"}, format="json"
        )
        assert_error(response, 400, "max_length")
        assert not Notification.objects.exists()

    def test_without_the_permission_is_forbidden(self, as_user, alice, bob):
        response = as_user(alice).post(URL, {"recipients": [bob.pk], "title": "x"}, format="json")
        assert_error(response, 403, "permission_denied")
        assert not Notification.objects.exists()

    def test_unauthenticated(self, api_client, alice):
        response = api_client().post(URL, {"recipients": [alice.pk], "title": "x"}, format="json")
        assert_error(response, 401, "not_authenticated")
        assert_error(api_client("not-a-jwt").get(URL), 401, "token_not_valid")

    def test_refresh_token_is_not_an_access_token(self, login, api_client, alice):
        _, tokens = login(alice)
        assert_error(api_client(tokens["refresh"]).get(URL), 401)

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"recipients": []}, "min_length"),
            ({"recipients": [999_999]}, "unknown_recipients"),
            ({"recipients": ["abc"]}, "invalid"),
            ({"recipients": [1.5]}, "invalid"),
            ({"recipients": [0]}, "min_value"),
            ({"recipients": [-3]}, "min_value"),
            ({"recipients": [2**64]}, "max_value"),
            ({"recipients": [None]}, "null"),
            ({"recipients": {"a": 1}}, "not_a_list"),
            ({"recipients": "1"}, "not_a_list"),
            ({"title": None}, "null"),
            ({"title": ""}, "blank"),
            ({"title": "x" * 201}, "max_length"),
            ({"data": [1, 2]}, "not_a_dict"),
            ({"data": "text"}, "not_a_dict"),
            ({"data": {"blob": "x" * 20_000}}, "too_large"),
            ({"data": {"k": "a\x00b"}}, "invalid_characters"),  # PostgreSQL jsonb refuses NUL
            ({"data": {"k": nested(40)}}, "too_deep"),
            ({"data": {"k": nested(500)}}, "too_deep"),  # parseable: below the recursion limit
            ({"title": "a\x00b"}, "invalid"),
            ({"idempotency_key": "k" * 129}, "max_length"),
        ],
    )
    def test_bad_input_is_400_with_a_code(self, as_user, sender, alice, change, code):
        payload = {"recipients": [alice.pk], "title": "ok", **change}
        body = assert_error(as_user(sender).post(URL, payload, format="json"), 400, code)
        assert set(body["errors"]) == {next(iter(change))}
        assert not Notification.objects.exists()

    def test_missing_title(self, as_user, sender, alice):
        response = as_user(sender).post(URL, {"recipients": [alice.pk]}, format="json")
        body = assert_error(response, 400, "required")
        assert set(body["errors"]) == {"title"}

    @pytest.mark.parametrize(
        "raw", [b"[1, 2]", b'"text"', b"{not json", b"", b'{"recipients": [1], "title": NaN}']
    )
    def test_malformed_body_is_400(self, as_user, sender, raw):
        response = as_user(sender).post(URL, raw, content_type="application/json")
        assert_error(response, 400)

    def test_json_nested_deeper_than_the_parser_allows_is_400(self, as_user, sender, alice):
        deep = b"[" * 100_000 + b"]" * 100_000
        raw = b'{"recipients": [%d], "title": "t", "data": {"k": %s}}' % (alice.pk, deep)
        response = as_user(sender).post(URL, raw, content_type="application/json")
        assert_error(response, 400, "parse_error")

    @pytest.mark.parametrize(
        ("field", "code"),
        [
            (b'"data": {"k": "\\ud800"}', "invalid_characters"),
            (b'"data": {"\\udfff": 1}', "invalid_characters"),
            (b'"title": "\\ud800"', "surrogate_characters_not_allowed"),
        ],
    )
    def test_text_with_no_utf8_encoding_is_refused(self, as_user, sender, alice, field, code):
        # JSON may escape a lone UTF-16 surrogate ("\\ud800"); no UTF-8 text can carry it, so
        # once stored it would break the recipient's list (a 500) and every live frame.
        raw = b'{"recipients": [%d], "title": "t", %s}' % (alice.pk, field)
        response = as_user(sender).post(URL, raw, content_type="application/json")
        assert_error(response, 400, code)
        assert not Notification.objects.exists()

    def test_unicode_is_stored_and_listed(self, as_user, sender, alice):
        payload = {"recipients": [alice.pk], "title": "Café ☕", "data": {"ключ": "😀"}}
        assert as_user(sender).post(URL, payload, format="json").status_code == 201
        [item] = as_user(alice).get(URL).json()["results"]
        assert (item["title"], item["data"]) == ("Café ☕", {"ключ": "😀"})


class TestList:
    def test_own_newest_first_with_cursor_pages(self, as_user, alice, bob):
        notifications_bulk(alice, 7)
        notifications_bulk(bob, 3)
        client = as_user(alice)
        seen, url = [], f"{URL}?page_size=3"
        pages = 0
        while url:
            response = client.get(url)
            assert response.status_code == 200, response.content
            page = response.json()
            seen += [n["seq"] for n in page["results"]]
            url = page["next"]
            pages += 1
        assert seen == [7, 6, 5, 4, 3, 2, 1]
        assert pages == 3

    def test_item_shape(self, as_user, alice):
        services.notification_create(
            recipient_ids=[alice.pk], title="T", body="B", data={"url": "/x"}
        )
        [item] = as_user(alice).get(URL).json()["results"]
        assert set(item) == {"id", "seq", "title", "body", "data", "created_at", "read_at"}
        assert (item["seq"], item["title"], item["body"], item["data"], item["read_at"]) == (
            1,
            "T",
            "B",
            {"url": "/x"},
            None,
        )
        assert item["created_at"].endswith("Z")

    def test_unread_filter(self, as_user, alice):
        rows = notifications_bulk(alice, 4)
        services.notification_mark_read(user_id=alice.pk, ids=[rows[0].pk, rows[2].pk])
        page = as_user(alice).get(URL, {"unread": "1"}).json()
        assert [n["seq"] for n in page["results"]] == [4, 2]
        assert all(n["read_at"] is None for n in page["results"])

    def test_after_seq_filter_and_pages_keep_it(self, as_user, alice):
        notifications_bulk(alice, 10)
        client = as_user(alice)
        first = client.get(URL, {"after_seq": "4", "page_size": "4"}).json()
        assert [n["seq"] for n in first["results"]] == [10, 9, 8, 7]
        second = client.get(first["next"]).json()
        assert [n["seq"] for n in second["results"]] == [6, 5]
        assert second["next"] is None
        assert client.get(URL, {"after_seq": "10"}).json()["results"] == []

    @pytest.mark.parametrize(
        "query",
        [{"after_seq": "abc"}, {"after_seq": "-1"}, {"after_seq": str(2**64)}, {"unread": "maybe"}],
    )
    def test_bad_filters_are_400(self, as_user, alice, query):
        assert_error(as_user(alice).get(URL, query), 400)

    def test_bad_cursor_is_not_a_500(self, as_user, alice):
        response = as_user(alice).get(URL, {"cursor": "garbage"})
        assert_error(response, 404)

    def test_unauthenticated(self, api_client):
        assert_error(api_client().get(URL), 401, "not_authenticated")


class TestReadState:
    def test_read_one(self, as_user, alice, listen, django_capture_on_commit_callbacks):
        rows = notifications_bulk(alice, 3)
        to_alice = listen(alice)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_user(alice).post(f"{URL}{rows[1].pk}/read/")
        assert response.status_code == 200, response.content
        assert response.json() == {"unread_count": 2}
        assert to_alice.frames() == [
            {"type": "notification.read", "ids": [rows[1].pk], "unread_count": 2}
        ]
        assert Notification.objects.get(pk=rows[1].pk).read_at is not None

    def test_another_users_notification_is_404_and_stays_unread(
        self, as_user, alice, bob, listen, django_capture_on_commit_callbacks
    ):
        [theirs] = notifications_bulk(bob, 1)
        to_bob = listen(bob)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_user(alice).post(f"{URL}{theirs.pk}/read/")
        assert_error(response, 404, "not_found")
        assert Notification.objects.get(pk=theirs.pk).read_at is None
        assert to_bob.events() == []

    @pytest.mark.parametrize("notification_id", ["999999", str(2**63), str(10**30)])
    def test_unknown_id_is_404(self, as_user, alice, notification_id):
        assert_error(as_user(alice).post(f"{URL}{notification_id}/read/"), 404, "not_found")

    def test_read_all_and_unread_count(
        self, as_user, alice, bob, listen, django_capture_on_commit_callbacks
    ):
        notifications_bulk(alice, 3)
        notifications_bulk(bob, 2)
        client = as_user(alice)
        assert client.get(f"{URL}unread-count/").json() == {"unread_count": 3}
        to_alice = listen(alice)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(f"{URL}read-all/")
        assert response.status_code == 200
        assert response.json() == {"unread_count": 0}
        assert to_alice.frames() == [{"type": "notification.read", "all": True, "unread_count": 0}]
        assert client.get(f"{URL}unread-count/").json() == {"unread_count": 0}
        assert as_user(bob).get(f"{URL}unread-count/").json() == {"unread_count": 2}

    @pytest.mark.parametrize("path", ["read-all/", "1/read/"])
    def test_read_needs_authentication(self, api_client, path):
        assert_error(api_client().post(f"{URL}{path}"), 401, "not_authenticated")

    def test_unread_count_needs_authentication(self, api_client):
        assert_error(api_client().get(f"{URL}unread-count/"), 401, "not_authenticated")
