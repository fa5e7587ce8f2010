"""Message search (docs/protocol.md, "Search"): ``GET /api/search/messages/``.

The same tests run on SQLite (word containment) and on PostgreSQL (full-text search); the
PostgreSQL-only ones check that the GIN index exists and that the search query uses it.
"""

import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat import services as chat_services
from chat.models import Message
from chat.search import message_search
from tests.support.data import send_as

pytestmark = pytest.mark.django_db

URL = "/api/search/messages/"
INDEX = "message_body_search_idx"
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="full-text search and its index: PostgreSQL only"
)


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str), body
    return body


def ids_of(page: dict[str, Any]) -> list[int]:
    return [result["message"]["id"] for result in page["results"]]


def search(client: Any, **query: Any) -> dict[str, Any]:
    response = client.get(URL, query)
    assert response.status_code == 200, response.content
    return response.json()


class TestFinds:
    def test_only_in_the_callers_rooms(self, as_user, make_room, alice, bob, carol):
        ours = make_room(alice, bob, name="ours")
        theirs = make_room(bob, carol, name="theirs")
        mine = send_as(bob, ours, "the deploy is done")
        others = send_as(carol, theirs, "the deploy is done here too")
        send_as(alice, ours, "nothing to see")

        page = search(as_user(alice), q="deploy")

        assert ids_of(page) == [mine]
        assert (page["next"], page["previous"]) == (None, None)
        [result] = page["results"]
        assert result["room"] == {"id": ours.pk, "name": "ours", "kind": "group"}
        # The message exactly as the room's history shows it.
        [in_history] = [
            m
            for m in as_user(alice).get(f"/api/rooms/{ours.pk}/messages/").json()["results"]
            if m["id"] == mine
        ]
        assert result["message"] == in_history
        assert ids_of(search(as_user(carol), q="deploy")) == [others]

    def test_a_former_member_finds_nothing_of_the_room(self, as_user, make_room, alice, bob):
        room = make_room(alice, bob)
        send_as(alice, room, "secret plans")
        assert len(search(as_user(bob), q="secret")["results"]) == 1
        room.memberships.filter(user=bob).delete()
        assert search(as_user(bob), q="secret")["results"] == []

    def test_every_word_must_match_in_any_case(self, as_user, make_room, alice):
        room = make_room(alice)
        both = send_as(alice, room, "Deploy of build 42 is DONE")
        send_as(alice, room, "deploy failed")
        send_as(alice, room, "done with lunch")
        client = as_user(alice)
        assert ids_of(search(client, q="deploy done")) == [both]
        assert ids_of(search(client, q="  DEPLOY   Done  ")) == [both]
        assert search(client, q="deploy rollback")["results"] == []

    def test_direct_rooms_are_searched_and_named_by_kind(self, as_user, alice, bob):
        direct = as_user(alice).post("/api/rooms/", {"direct_with": bob.pk}, format="json")
        room_id = direct.json()["id"]
        answer = as_user(bob).post(
            f"/api/rooms/{room_id}/messages/", {"body": "lunch at noon?"}, format="json"
        )
        assert answer.status_code == 201
        [result] = search(as_user(alice), q="lunch")["results"]
        assert result["room"] == {"id": room_id, "name": "", "kind": "direct"}

    def test_unicode_words(self, as_user, make_room, alice):
        room = make_room(alice)
        found = send_as(alice, room, "Café ☕ mit Müller, 日本 😀")
        client = as_user(alice)
        assert ids_of(search(client, q="café")) == [found]
        assert ids_of(search(client, q="müller")) == [found]


class TestRoomFilter:
    def test_only_that_room(self, as_user, make_room, alice, bob):
        one = make_room(alice, name="one")
        two = make_room(alice, bob, name="two")
        send_as(alice, one, "release notes")
        wanted = send_as(bob, two, "release notes")
        assert ids_of(search(as_user(alice), q="release", room=two.pk)) == [wanted]

    def test_a_room_of_others_is_404_like_a_missing_one(self, as_user, make_room, alice, bob):
        theirs = make_room(bob)
        send_as(bob, theirs, "hidden words")
        client = as_user(alice)
        for room in (theirs.pk, theirs.pk + 1000, 2**63 - 1):
            body = error_of(client.get(URL, {"q": "hidden", "room": room}), 404, "not_found")
            # The same answer as the room's own routes give.
            history = client.get(f"/api/rooms/{room}/messages/")
            assert body == error_of(history, 404, "not_found")

    @pytest.mark.parametrize(
        ("room", "code"),
        [("abc", "invalid"), ("1.5", "invalid"), ("0", "min_value"), (str(2**64), "max_value")],
    )
    def test_a_bad_room_is_400(self, as_user, alice, room, code):
        body = error_of(as_user(alice).get(URL, {"q": "x", "room": room}), 400, code)
        assert set(body["errors"]) == {"room"}


class TestPages:
    def test_newest_first_across_pages_without_gaps_or_repeats(self, as_user, make_room, alice):
        room = make_room(alice)
        noise = make_room(alice, name="noise")
        matching = []
        for n in range(45):
            matching.append(send_as(alice, room, f"report number {n}"))
            send_as(alice, noise, f"other {n}")
        client = as_user(alice)

        seen, url, pages = [], f"{URL}?q=report", []
        while url:
            response = client.get(url)
            assert response.status_code == 200, response.content
            page = response.json()
            pages.append(ids_of(page))
            seen += ids_of(page)
            url = page["next"]
        assert [len(p) for p in pages] == [20, 20, 5]  # page_size defaults to 20
        assert seen == sorted(matching, reverse=True)

        # `previous` of the last page leads back to the middle one.
        middle = client.get(f"{URL}?q=report").json()["next"]
        last = client.get(client.get(middle).json()["next"]).json()
        assert ids_of(client.get(last["previous"]).json()) == pages[1]

    def test_page_size_up_to_100(self, as_user, make_room, alice):
        room = make_room(alice)
        for n in range(105):
            send_as(alice, room, f"tick {n}")
        client = as_user(alice)
        assert len(search(client, q="tick", page_size=7)["results"]) == 7
        assert len(search(client, q="tick", page_size=1000)["results"]) == 100

    def test_new_messages_do_not_shift_the_next_page(self, as_user, make_room, alice):
        room = make_room(alice)
        old = [send_as(alice, room, f"entry {n}") for n in range(5)]
        client = as_user(alice)
        first = search(client, q="entry", page_size=3)
        send_as(alice, room, "entry newest")
        assert ids_of(client.get(first["next"]).json()) == old[:2][::-1]

    def test_a_bad_cursor_is_404_not_500(self, as_user, alice):
        error_of(as_user(alice).get(URL, {"q": "x", "cursor": "garbage"}), 404, "not_found")


class TestDeleted:
    def test_a_deleted_message_is_not_found(self, as_user, make_room, alice, bob):
        room = make_room(alice, bob)
        kept = send_as(alice, room, "budget draft one")
        gone = send_as(alice, room, "budget draft two")
        client = as_user(bob)
        assert ids_of(search(client, q="budget")) == [gone, kept]
        chat_services.message_delete(room_id=room.pk, message_id=gone, user_id=alice.pk)
        assert ids_of(search(client, q="budget")) == [kept]
        assert search(client, q="two")["results"] == []


class TestCost:
    def test_queries_per_page_do_not_grow_with_results(self, as_user, make_room, alice, bob):
        one = make_room(alice, bob, name="one")
        two = make_room(bob, alice, name="two")
        first = send_as(alice, one, "standup notes")
        for n in range(30):
            room = one if n % 2 else two
            reply = chat_services.room_message_send(
                room_id=room.pk,
                author_id=bob.pk,
                body=f"standup notes {n} @alice",
                reply_to=first if room is one else None,
            )
            chat_services.reaction_set(
                room_id=room.pk, message_id=reply.pk, user_id=alice.pk, emoji="👍", add=True
            )
        client = as_user(alice)
        search(client, q="standup")  # warm caches (login session)

        def queries(page_size: int) -> int:
            with CaptureQueriesContext(connection) as captured:
                page = search(client, q="standup", page_size=page_size)
            assert len(page["results"]) == page_size
            return len(captured)

        assert queries(2) == queries(20)
        result = search(client, q="standup", page_size=1)["results"][0]["message"]
        assert result["reactions"] == [{"emoji": "👍", "count": 1, "users": [alice.pk]}]
        assert result["reply_to"]["id"] == first


class TestBadInput:
    @pytest.mark.parametrize(
        "q",
        ["", "   ", "\t\n", "x" * 201, "x" * 10_000, "a\x00b", "\x00"],
        ids=["empty", "spaces", "whitespace", "201", "10000", "nul", "only-nul"],
    )
    def test_q_out_of_bounds_is_400_invalid(self, as_user, alice, q):
        body = error_of(as_user(alice).get(URL, {"q": q}), 400, "invalid")
        assert set(body["errors"]) == {"q"}

    def test_200_characters_after_trimming_is_fine(self, as_user, make_room, alice):
        make_room(alice)
        assert search(as_user(alice), q="  " + "y" * 200 + "  ")["results"] == []

    def test_missing_q_is_400(self, as_user, alice):
        body = error_of(as_user(alice).get(URL), 400, "required")
        assert set(body["errors"]) == {"q"}

    def test_raw_query_strings_never_500(self, as_user, make_room, alice):
        make_room(alice)
        client = as_user(alice)
        for raw in ("q=%ED%A0%80", "q=%FF%FE", "q=%00", "q=a&q=b", "q=%25%5F%5C", "q=a&room="):
            assert client.get(f"{URL}?{raw}").status_code in (200, 400), raw

    def test_unauthenticated_is_401(self, api_client):
        error_of(api_client().get(URL, {"q": "x"}), 401, "not_authenticated")


# LIKE wildcards and escapes, quotes and websearch operators, only punctuation, a NUL, long words.
@given(q=st.text(max_size=250))
@example(q="%")
@example(q="_")
@example(q="\\")
@example(q='"unclosed')
@example(q="-")
@example(q="or")
@example(q="!!! ???")
@example(q="a & | ! :* <-> b")
@example(q="x" * 200)
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_any_text_is_answered_never_a_500(as_user, make_room, alice, bob, q):
    if not Message.objects.exists():
        room = make_room(alice, bob)
        send_as(bob, room, "100% sure_thing \\ back\"slash 'quote' or -minus <-> a & b")
    answer = as_user(alice).get(URL, {"q": q})
    text = q.strip()
    if 1 <= len(text) <= 200 and "\x00" not in text:
        assert answer.status_code == 200, answer.content
        for result in answer.json()["results"]:
            assert result["room"]["kind"] == "group"
    else:
        error_of(answer, 400, "invalid")


class TestMatching:
    def test_postgresql_matches_whole_words_sqlite_substrings(self, as_user, make_room, alice):
        room = make_room(alice)
        deployed = send_as(alice, room, "we deployed it")
        found = ids_of(search(as_user(alice), q="deploy"))
        assert found == ([] if connection.vendor == "postgresql" else [deployed])

    @on_postgresql
    def test_websearch_syntax(self, as_user, make_room, alice):
        room = make_room(alice)
        done = send_as(alice, room, "deploy done")
        reverse = send_as(alice, room, "done deploy")
        failed = send_as(alice, room, "deploy failed")
        lunch = send_as(alice, room, "lunch")
        client = as_user(alice)
        assert ids_of(search(client, q='"deploy done"')) == [done]
        assert ids_of(search(client, q="deploy -failed")) == [reverse, done]
        assert ids_of(search(client, q="lunch or failed")) == [lunch, failed]
        assert search(client, q="!!! ???")["results"] == []


def _search_migration() -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """The key of the migration that creates the index, and the keys it depends on."""
    graph = MigrationExecutor(connection).loader.graph
    [key] = [k for k in graph.nodes if k[0] == "chat" and k[1].endswith("_message_search")]
    return key, [parent.key for parent in graph.node_map[key].parents]


@pytest.mark.django_db(transaction=True)
def test_the_index_migration_runs_both_ways():
    key, before = _search_migration()
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    assert not _index_exists()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert _index_exists() == (connection.vendor == "postgresql")


def _index_exists() -> bool:
    with connection.cursor() as cursor:
        return INDEX in connection.introspection.get_constraints(cursor, Message._meta.db_table)


@on_postgresql
class TestPostgresIndex:
    def test_the_gin_index_exists_on_the_search_expression(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname = %s",
                [Message._meta.db_table, INDEX],
            )
            [(definition,)] = cursor.fetchall()
        assert "USING gin" in definition
        assert "to_tsvector('simple'::regconfig, body)" in definition

    def test_a_selective_search_uses_the_index(self, make_room, alice, bob):
        room = make_room(alice, bob)
        rows = [
            Message(room=room, author=bob, body=f"routine status line {n}", client_id=uuid.uuid4())
            for n in range(3000)
        ]
        rows[1234].body = "the zanzibar incident"
        Message.objects.bulk_create(rows)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Message._meta.db_table}")
        # The query the view runs for the first page (20 results and one to see if more exist).
        page = message_search(user_id=alice.pk, text="zanzibar").order_by("-id")[:21]

        plan = page.explain()
        assert INDEX in plan, plan
        assert [m.body for m in page] == ["the zanzibar incident"]

        # With a room filter too (the membership check and the room are index lookups).
        in_room = message_search(user_id=alice.pk, text="zanzibar", room_id=room.pk)
        plan = in_room.order_by("-id")[:21].explain()
        assert INDEX in plan, plan

    def test_a_word_frequent_elsewhere_reads_only_the_callers_rooms(self, make_room, alice, bob):
        """The planner trap of ``ORDER BY id DESC LIMIT``: walking every message newest first,
        hoping to meet the caller's rooms soon, when the word fills other rooms only."""
        busy = make_room(bob, name="busy")
        quiet = make_room(alice, name="quiet")
        Message.objects.bulk_create(
            Message(room=busy, author=bob, body=f"deploy {n}", client_id=uuid.uuid4())
            for n in range(20_000)
        )
        Message.objects.bulk_create(
            Message(room=quiet, author=alice, body=f"chatter {n}", client_id=uuid.uuid4())
            for n in range(2_000)
        )
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Message._meta.db_table}")
        page = message_search(user_id=alice.pk, text="deploy").order_by("-id")[:21]
        plan = json.loads(page.explain(format="json", analyze=True))

        def rows_read(node: dict[str, Any]) -> int:
            own = 0
            if node.get("Relation Name") == Message._meta.db_table:
                loops = node.get("Actual Loops", 1)
                own = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
            return own + sum(rows_read(child) for child in node.get("Plans", []))

        assert list(page) == []
        assert rows_read(plan[0]["Plan"]) <= 2_000, plan
