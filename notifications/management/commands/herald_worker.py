"""``manage.py herald_worker``: one background worker (webhooks, push, email); run any number.

It is django-tasks-db's ``db_worker`` (same options: ``--interval``, ``--batch``,
``--max-tasks``, ``--worker-id``, ...) with Herald's defaults, every queue (``*``) and no
autoreload, plus the recovery of tasks whose worker died (``config.tasks.recover_stale_tasks``):
once at start, then every quarter of ``HERALD_TASK_LEASE`` in a background thread
(docs/deployment.md, "Background workers").
"""

import logging
import threading
from argparse import ArgumentParser
from typing import Any

from django.db import connection
from django_tasks_db.management.commands import db_worker

from config.tasks import recover_stale_tasks, task_lease

logger = logging.getLogger("herald.tasks")


def _recover_once() -> None:
    try:
        recover_stale_tasks()
    except Exception:  # a database hiccup must not stop the worker; the next round retries
        logger.exception("recovering stale tasks failed")
    finally:
        connection.close()  # this thread's own connection


def _recover_forever(stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        _recover_once()


class Command(db_worker.Command):
    help = (
        "Run one Herald background worker (any number may run): django-tasks-db's db_worker "
        "on every queue, recovering tasks whose worker died."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(queue_name="*", reload=False)

    def handle(self, *args: Any, **options: Any) -> None:
        _recover_once()
        stop = threading.Event()
        every = max(task_lease() / 4, 1.0)
        threading.Thread(
            target=_recover_forever, args=(stop, every), name="task-recovery", daemon=True
        ).start()
        try:
            super().handle(*args, **options)
        finally:
            stop.set()
