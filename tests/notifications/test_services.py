"""Services: stored first, numbered gap-free per user, published after commit, idempotent."""

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction

from notifications import services
from notifications.models import Notification

pytestmark = pytest.mark.django_db


def seqs_of(user: Any) -> list[int]:
    return sorted(Notification.objects.filter(recipient=user).values_list("seq", flat=True))


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads started together, each with its own connection."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as error:  # reported by the caller's assertion
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


class TestCreate:
    def test_stores_one_row_per_recipient_and_publishes_each_after_commit(
        self, alice, bob, sender, listen, django_capture_on_commit_callbacks
    ):
        to_alice, to_bob = listen(alice), listen(bob)
        with django_capture_on_commit_callbacks(execute=True):
            batch = services.notification_create(
                recipient_ids=[alice.pk, bob.pk, alice.pk],  # a duplicate is sent once
                title="Deploy done",
                body="v2 is live",
                data={"build": 7},
                sender_id=sender.pk,
            )
            assert to_alice.events() == []  # nothing is pushed before the commit
        assert batch.count == 2
        rows = Notification.objects.filter(pk__in=batch.ids).order_by("recipient_id")
        assert [(n.recipient_id, n.seq, n.title, n.body, n.data) for n in rows] == [
            (alice.pk, 1, "Deploy done", "v2 is live", {"build": 7}),
            (bob.pk, 1, "Deploy done", "v2 is live", {"build": 7}),
        ]
        [frame] = to_alice.frames()
        mine = Notification.objects.get(pk__in=batch.ids, recipient=alice)
        assert frame["type"] == "notification"
        assert frame["notification"] == {
            "id": mine.pk,
            "seq": 1,
            "title": "Deploy done",
            "body": "v2 is live",
            "data": {"build": 7},
            "created_at": frame["notification"]["created_at"],
            "read_at": None,
        }
        assert frame["notification"]["created_at"].endswith("Z")
        assert [f["notification"]["seq"] for f in to_bob.frames()] == [1]

    def test_seq_rises_by_one_per_user(self, alice, bob, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            for _ in range(3):
                services.notification_create(recipient_ids=[alice.pk], title="a")
            services.notification_create(recipient_ids=[alice.pk, bob.pk], title="both")
        assert seqs_of(alice) == [1, 2, 3, 4]
        assert seqs_of(bob) == [1]

    def test_rolled_back_transaction_stores_and_publishes_nothing(
        self, alice, listen, django_capture_on_commit_callbacks
    ):
        to_alice = listen(alice)

        def create_then_fail() -> None:
            with transaction.atomic():
                services.notification_create(recipient_ids=[alice.pk], title="never")
                raise RuntimeError("the caller's transaction fails")

        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            with pytest.raises(RuntimeError):
                create_then_fail()
        assert callbacks == []
        assert to_alice.events() == []
        assert not Notification.objects.exists()
        # The rolled-back seq is given again: numbering stays gap-free.
        with django_capture_on_commit_callbacks(execute=True):
            services.notification_create(recipient_ids=[alice.pk], title="kept")
        assert seqs_of(alice) == [1]
        assert [f["notification"]["title"] for f in to_alice.frames()] == ["kept"]

    def test_ten_thousand_recipients_in_one_call(
        self, alice, listen, django_capture_on_commit_callbacks, record_property
    ):
        user_model = get_user_model()
        user_model.objects.bulk_create(user_model(username=f"bulk{i}") for i in range(9_999))
        ids = [
            alice.pk,
            *user_model.objects.filter(username__startswith="bulk").values_list("pk", flat=True),
        ]
        assert len(ids) == 10_000
        services.notification_create(recipient_ids=[alice.pk], title="earlier")
        to_alice = listen(alice)
        to_last = listen(user_model.objects.get(pk=max(ids)))

        started = time.perf_counter()
        with django_capture_on_commit_callbacks(execute=True):
            batch = services.notification_create(recipient_ids=ids, title="All hands")
        elapsed = time.perf_counter() - started
        record_property("ten_thousand_recipients_seconds", round(elapsed, 2))
        print(f"\n10 000 recipients: {elapsed:.2f} s")

        assert batch.count == 10_000
        assert len(set(batch.ids)) == 10_000
        assert Notification.objects.filter(title="All hands").count() == 10_000
        assert set(
            Notification.objects.filter(title="All hands").values_list("recipient_id", flat=True)
        ) == set(ids)
        assert seqs_of(alice) == [1, 2]
        assert [f["notification"]["seq"] for f in to_alice.frames()] == [2]
        assert [f["notification"]["title"] for f in to_last.frames()] == ["All hands"]
        assert elapsed < 30, "a 10 000-recipient fan-out must not take minutes"


class TestIdempotency:
    def test_same_key_twice_returns_the_first_batch_and_stores_nothing(
        self, alice, bob, sender, listen, django_capture_on_commit_callbacks
    ):
        to_alice = listen(alice)
        with django_capture_on_commit_callbacks(execute=True):
            first = services.notification_create(
                recipient_ids=[alice.pk, bob.pk],
                title="t",
                sender_id=sender.pk,
                idempotency_key="order-42",
            )
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            again = services.notification_create(
                recipient_ids=[alice.pk, bob.pk],
                title="t",
                sender_id=sender.pk,
                idempotency_key="order-42",
            )
        assert (again.count, again.ids) == (first.count, first.ids) == (2, first.ids)
        assert callbacks == []
        assert Notification.objects.count() == 2
        assert len(to_alice.events()) == 1  # pushed once
        assert seqs_of(alice) == [1]

    def test_key_is_per_sender(self, alice, sender, make_user):
        other_service = make_user(username="other-service")
        a = services.notification_create(
            recipient_ids=[alice.pk], title="t", sender_id=sender.pk, idempotency_key="k"
        )
        b = services.notification_create(
            recipient_ids=[alice.pk], title="t", sender_id=other_service.pk, idempotency_key="k"
        )
        assert a.ids != b.ids
        assert seqs_of(alice) == [1, 2]

    @pytest.mark.django_db(transaction=True)
    def test_concurrent_calls_with_one_key_store_once(self, threads_database, alice, bob, sender):
        def create(_: int) -> tuple[int, list[int]]:
            batch = services.notification_create(
                recipient_ids=[alice.pk, bob.pk],
                title="t",
                sender_id=sender.pk,
                idempotency_key="retry-storm",
            )
            return batch.count, batch.ids

        results = run_threads(6, create)
        assert not [r for r in results if isinstance(r, Exception)], results
        stored = sorted(Notification.objects.values_list("pk", flat=True))
        assert len(stored) == 2
        assert all(result == (2, stored) for result in results), results
        assert seqs_of(alice) == seqs_of(bob) == [1]


class TestConcurrentSeq:
    @pytest.mark.django_db(transaction=True)
    def test_threads_creating_for_one_user_get_unique_gap_free_seqs(
        self, threads_database, alice, bob
    ):
        per_thread, threads = 5, 8

        def create(i: int) -> list[int]:
            ids = []
            for _ in range(per_thread):
                # Alternate the recipient lists so batches lock counters in overlapping sets.
                recipients = [alice.pk, bob.pk] if i % 2 else [alice.pk]
                ids += services.notification_create(recipient_ids=recipients, title=str(i)).ids
            return ids

        results = run_threads(threads, create)
        assert not [r for r in results if isinstance(r, Exception)], results
        total = per_thread * threads
        assert seqs_of(alice) == list(range(1, total + 1))
        assert seqs_of(bob) == list(range(1, total // 2 + 1))
        assert sum(len(ids) for ids in results) == total + total // 2


class TestMarkRead:
    @pytest.fixture
    def three(self, alice) -> list[int]:
        return [
            services.notification_create(recipient_ids=[alice.pk], title=str(i)).ids[0]
            for i in range(3)
        ]

    def test_mark_read_returns_unread_count_and_tells_every_socket(
        self, alice, bob, three, listen, django_capture_on_commit_callbacks
    ):
        bobs = services.notification_create(recipient_ids=[bob.pk], title="b").ids
        to_alice, to_bob = listen(alice), listen(bob)
        with django_capture_on_commit_callbacks(execute=True):
            # Bob's id is not Alice's to read: ignored, and not echoed to her sockets.
            unread = services.notification_mark_read(
                user_id=alice.pk, ids=[three[2], three[0], *bobs]
            )
            assert to_alice.events() == []
        assert unread == 1
        assert to_alice.frames() == [
            {"type": "notification.read", "ids": sorted([three[0], three[2]]), "unread_count": 1}
        ]
        assert to_bob.events() == []
        assert Notification.objects.get(pk=bobs[0]).read_at is None
        assert list(
            Notification.objects.filter(recipient=alice, read_at__isnull=True).values_list(
                "pk", flat=True
            )
        ) == [three[1]]

    def test_mark_read_twice_keeps_the_first_read_time(self, alice, three):
        services.notification_mark_read(user_id=alice.pk, ids=[three[0]])
        first = Notification.objects.get(pk=three[0]).read_at
        assert first is not None
        assert services.notification_mark_read(user_id=alice.pk, ids=[three[0]]) == 2
        assert Notification.objects.get(pk=three[0]).read_at == first

    def test_mark_all_read(self, alice, bob, three, listen, django_capture_on_commit_callbacks):
        services.notification_create(recipient_ids=[bob.pk], title="b")
        to_alice = listen(alice)
        with django_capture_on_commit_callbacks(execute=True):
            assert services.notification_mark_all_read(user_id=alice.pk) == 0
        assert to_alice.frames() == [{"type": "notification.read", "all": True, "unread_count": 0}]
        assert not Notification.objects.filter(recipient=alice, read_at__isnull=True).exists()
        assert Notification.objects.filter(recipient=bob, read_at__isnull=True).count() == 1


def test_the_hand_built_payload_is_the_serializers(alice):
    """``notification_payload`` skips DRF on the hot path; it must give what the serializer
    gives, for a read one and an unread one."""
    from notifications.models import Notification
    from notifications.serializers import NotificationSerializer, notification_payload

    services.notification_create(recipient_ids=[alice.pk], title="t", body="b", data={"k": [1]})
    services.notification_create(recipient_ids=[alice.pk], title="u")
    first = Notification.objects.get(recipient=alice, seq=1)
    services.notification_mark_read(user_id=alice.pk, ids=[first.pk])
    for notification in Notification.objects.filter(recipient=alice):
        expected = json.loads(json.dumps(NotificationSerializer(notification).data))
        assert notification_payload(notification) == expected
