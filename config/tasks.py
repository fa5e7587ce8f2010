"""Background work: one decorator for every task, with retries, on django-tasks' database queue.

Herald's background work (webhook deliveries, Web Push, email digests) runs in
``python manage.py herald_worker`` processes (docs/deployment.md, "Background workers") on
django-tasks (Django's tasks API, DEP 0014) with the django-tasks-db backend: a task is a row of
``django_tasks_db.DBTaskResult`` in the project's own database, so enqueuing inside a
transaction commits or rolls back with the data it belongs to, and a worker claims a row with
``SELECT … FOR UPDATE SKIP LOCKED`` (an exclusive transaction on SQLite), so any number of
workers may run.

What the library leaves to us, and this module adds:

- **Retries.** django-tasks runs a task once. :func:`background_task` wraps the function: when
  it raises, the same task is enqueued again with ``run_after`` = now + an exponential backoff
  (``backoff * 2 ** (attempt - 1)`` seconds, capped at ``max_backoff``, ±10 % jitter), up to
  ``max_attempts`` attempts in all. The failed attempt's row is marked FAILED with
  :class:`RetryScheduled` (its traceback names the cause); the last attempt's row is FAILED with
  the task's own exception. Both show in the admin ("Task results", filter by status).
  :class:`PermanentFailure` fails at once, without a retry.
- **Lost workers.** django-tasks-db marks a claimed row RUNNING and never looks at it again: a
  worker killed mid-task (SIGKILL, OOM, a lost machine) would leave it RUNNING for ever.
  :func:`recover_stale_tasks` puts rows RUNNING longer than the lease (``HERALD_TASK_LEASE``
  seconds) back to READY, and gives up on (fails) a row after ``MAX_CLAIMS`` claims. Every
  ``herald_worker`` runs it at start and then every quarter lease. So delivery is *at least
  once*: a task must be idempotent, and must finish well within the lease, or it may run twice.

Usage (the public API)::

    from config.tasks import background_task, enqueue

    @background_task(max_attempts=8, backoff=5)
    def deliver(delivery_id: int) -> None:
        ...

    enqueue(deliver, delivery_id)  # JSON-serialisable arguments only

A task function must be defined at module level (django-tasks imports it by its dotted path in
the worker). Inside a ``transaction.atomic`` block, :func:`enqueue` writes the row in that
transaction: the worker sees it once the transaction commits, and never if it rolls back.
"""

import logging
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks import TaskContext, TaskResult, TaskResultStatus, task
from django_tasks.base import Task

logger = logging.getLogger("herald.tasks")

P = ParamSpec("P")
T = TypeVar("T")

ATTEMPT_KWARG = "herald_attempt"  # the attempt number, carried from one row to the next
MAX_CLAIMS = 3  # a row claimed this many times by workers that died is failed, not re-run


class RetryScheduled(Exception):  # noqa: N818 (a state, not an error of the caller)
    """The attempt failed and the next one is enqueued; the cause is chained (``__cause__``)."""


class PermanentFailure(Exception):  # noqa: N818
    """Raise from a task to fail it now, without a retry (e.g. its subject was deleted)."""


class WorkerLost(Exception):  # noqa: N818
    """Recorded on a row whose workers died while running it ``MAX_CLAIMS`` times."""


def retry_delay(attempt: int, *, backoff: float, max_backoff: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: ``backoff * 2 ** (attempt - 1)``, capped
    at ``max_backoff``, with ±10 % jitter so that retries of one outage spread out."""
    delay = min(backoff * 2 ** (attempt - 1), max_backoff)
    return float(delay * random.uniform(0.9, 1.1))  # noqa: S311 (jitter, not a secret)


def background_task(
    *,
    max_attempts: int = 5,
    backoff: float = 2.0,
    max_backoff: float = 3600.0,
    priority: int = 0,
    queue_name: str = "default",
) -> Callable[[Callable[P, Any]], Task[P, Any]]:
    """Decorate a module-level function as a django-tasks ``Task`` that retries on failure.

    ``max_attempts``: attempts in all (1: no retry); ``backoff``: seconds before the second
    attempt, doubling each time up to ``max_backoff``. ``priority`` (-100..100) and
    ``queue_name`` are django-tasks' own. Enqueue with :func:`enqueue` (or ``.enqueue()``); the
    worker calls the function with the arguments given there. Any ``Exception`` is a failed
    attempt; :class:`PermanentFailure` ends the task at once. The function's return value
    (JSON) is stored on the row.
    """

    def decorate(func: Callable[P, Any]) -> Task[P, Any]:
        def run(context: TaskContext, *args: Any, **kwargs: Any) -> Any:
            attempt = int(kwargs.pop(ATTEMPT_KWARG, 1))
            try:
                return func(*args, **kwargs)
            except PermanentFailure:
                logger.warning("task %s failed for good (attempt %d)", name, attempt)
                raise
            except Exception as error:
                if attempt >= max_attempts:
                    logger.error("task %s failed after %d attempts: %r", name, attempt, error)
                    raise
                delay = retry_delay(attempt, backoff=backoff, max_backoff=max_backoff)
                again = context.task_result.task.using(
                    run_after=timezone.now() + timedelta(seconds=delay)
                )
                again.enqueue(*args, **{**kwargs, ATTEMPT_KWARG: attempt + 1})
                logger.warning(
                    "task %s attempt %d/%d failed (%r); retrying in %.1f s",
                    name,
                    attempt,
                    max_attempts,
                    error,
                    delay,
                )
                raise RetryScheduled(
                    f"attempt {attempt}/{max_attempts} failed; attempt {attempt + 1} runs in "
                    f"{delay:.1f} s"
                ) from error

        # django-tasks finds the task in the worker by the function's dotted path, which must
        # be the decorated module-level name. Not functools.wraps: its __wrapped__ would make
        # django-tasks inspect ``func``'s signature, which does not start with ``context``.
        name = f"{func.__module__}.{func.__qualname__}"
        run.__module__, run.__name__ = func.__module__, func.__name__
        run.__qualname__, run.__doc__ = func.__qualname__, func.__doc__
        return task(takes_context=True, priority=priority, queue_name=queue_name)(run)  # type: ignore[return-value]

    return decorate


def enqueue(task_: Task[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskResult[Any]:
    """Enqueue ``task_`` (a :func:`background_task`) with JSON-serialisable arguments.

    Inside ``transaction.atomic`` the row is part of the transaction (database backend): it
    runs only if the transaction commits. Returns django-tasks' ``TaskResult`` (``.id``).
    """
    return task_.enqueue(*args, **kwargs)


def enqueue_on_commit(task_: Task[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
    """Enqueue ``task_`` once the current transaction commits (now, outside one): for callers
    that must not add a write to their transaction."""
    transaction.on_commit(lambda: task_.enqueue(*args, **kwargs))


def task_lease() -> float:
    """``HERALD_TASK_LEASE`` seconds: how long a task may stay RUNNING before it is taken for
    lost and run again (docs/deployment.md, "Background workers")."""
    return float(settings.HERALD["TASK_LEASE"])


def recover_stale_tasks(*, lease: float | None = None) -> tuple[int, int]:
    """Put tasks RUNNING for longer than ``lease`` seconds (default :func:`task_lease`) back to
    READY, so another worker runs them; fail those already claimed ``MAX_CLAIMS`` times
    (:class:`WorkerLost`). Returns ``(requeued, failed)``.

    django-tasks-db has no recovery of its own: its worker marks a claimed row RUNNING and a
    worker that dies (SIGKILL, OOM) never marks it again. Each row is updated only if it is
    still the RUNNING claim we read (its ``started_at``), so concurrent recoveries and a worker
    finishing at the same time do not clash.
    """
    from django_tasks_db.models import DBTaskResult

    cutoff = timezone.now() - timedelta(seconds=task_lease() if lease is None else lease)
    requeued = failed = 0
    stale = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING, started_at__lt=cutoff)
    for row in stale.only("id", "started_at", "worker_ids", "task_path"):
        claim = DBTaskResult.objects.filter(
            pk=row.pk, status=TaskResultStatus.RUNNING, started_at=row.started_at
        )
        if len(row.worker_ids) >= MAX_CLAIMS:
            failed += claim.update(
                status=TaskResultStatus.FAILED,
                finished_at=timezone.now(),
                exception_class_path=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}",
                traceback=f"WorkerLost: {len(row.worker_ids)} workers died running this task",
            )
            logger.error("task %s (%s) failed: its workers died", row.task_path, row.pk)
        elif claim.update(status=TaskResultStatus.READY):
            requeued += 1
            logger.warning(
                "task %s (%s) was RUNNING past its lease (worker %s lost): requeued",
                row.task_path,
                row.pk,
                row.worker_ids[-1] if row.worker_ids else "?",
            )
    return requeued, failed
