"""The queue's bookkeeping in one process: stale RUNNING rows recovered or given up, the
backoff schedule, and failed tasks in the admin."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from config.tasks import MAX_CLAIMS, recover_stale_tasks, retry_delay
from tests.support.tasks import record

pytestmark = pytest.mark.django_db


def running_row(*, age: float, workers: int) -> DBTaskResult:
    row = DBTaskResult.objects.get(pk=record.enqueue("/nowhere", "x").id)
    row.status = "RUNNING"
    row.started_at = timezone.now() - timedelta(seconds=age)
    row.worker_ids = [f"w{i}" for i in range(workers)]
    row.save()
    return row


def test_stale_running_tasks_are_requeued_and_fresh_ones_left_alone() -> None:
    stale, fresh = running_row(age=30, workers=1), running_row(age=1, workers=1)
    lost_thrice = running_row(age=30, workers=MAX_CLAIMS)

    assert recover_stale_tasks(lease=10) == (1, 1)

    stale.refresh_from_db(), fresh.refresh_from_db(), lost_thrice.refresh_from_db()
    assert stale.status == "READY"
    assert DBTaskResult.objects.ready().filter(pk=stale.pk).exists()  # a worker takes it
    assert fresh.status == "RUNNING"
    assert lost_thrice.status == "FAILED"
    assert lost_thrice.exception_class_path == "config.tasks.WorkerLost"
    assert recover_stale_tasks(lease=10) == (0, 0)


def test_backoff_doubles_and_is_capped() -> None:
    delays = [retry_delay(n, backoff=2, max_backoff=30) for n in range(1, 7)]
    for delay, expected in zip(delays, [2, 4, 8, 16, 30, 30], strict=True):
        assert expected * 0.9 <= delay <= expected * 1.1


def test_failed_tasks_are_listed_in_the_admin(admin_client: Client, superuser: Any) -> None:
    row = running_row(age=30, workers=MAX_CLAIMS)
    recover_stale_tasks(lease=10)
    page = admin_client.get("/admin/django_tasks_database/dbtaskresult/?status__exact=FAILED")
    assert page.status_code == 200
    assert str(row.pk) in page.content.decode()
    detail = admin_client.get(f"/admin/django_tasks_database/dbtaskresult/{row.pk}/change/")
    assert "WorkerLost" in detail.content.decode()
