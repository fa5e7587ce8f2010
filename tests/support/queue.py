"""A database queue and real ``herald_worker`` processes on it, for the worker and webhook tests.

:func:`start_queue` migrates a private database (``tests.support.rig.create_database``: an
SQLite file, or a fresh PostgreSQL database when ``DATABASE_URL`` names one) and returns a
:class:`Queue`: start and kill workers, run code in a ``manage.py shell`` process beside them,
read the task rows.
"""

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.rig import (
    PYTHON,
    create_database,
    manage,
    popen,
    server_env,
    stop,
    tail,
    temp_dir,
)

_ROWS = """
import json
from django_tasks_db.models import DBTaskResult
rows = DBTaskResult.objects.order_by("enqueued_at")
print("ROWS=" + json.dumps([
    {"path": r.task_path, "status": r.status, "exception": r.exception_class_path,
     "kwargs": r.args_kwargs["kwargs"], "args": r.args_kwargs["args"],
     "workers": r.worker_ids, "return": r.return_value}
    for r in rows
]))
"""


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-task, as in an OOM kill or a lost machine."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Queue:
    tmp: Path
    env: dict[str, str]
    stack: contextlib.ExitStack
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, *args: str, **env: str) -> Worker:
        """A ``manage.py herald_worker`` polling every 0.1 s; stopped when the stack closes."""
        log = self.tmp / f"worker-{len(self.workers)}.log"
        argv = [PYTHON, "manage.py", "herald_worker", "--interval", "0.1", "--no-startup-delay"]
        process = popen([*argv, *args], env={**self.env, **env}, log=log)
        self.stack.callback(stop, process)
        worker = Worker(process, log)
        self.workers.append(worker)
        return worker

    def shell(self, code: str) -> str:
        """Run ``code`` in a ``manage.py shell`` process on the queue's database; its stdout."""
        return manage(["shell", "-v", "0", "-c", code], self.env, self.tmp)

    def rows(self, path_prefix: str = "") -> list[dict[str, Any]]:
        """Every task row (oldest first) whose task path starts with ``path_prefix``."""
        out = self.shell(_ROWS)
        line = next(li for li in out.splitlines() if li.startswith("ROWS="))
        return [r for r in json.loads(line[5:]) if r["path"].startswith(path_prefix)]

    def directory(self, name: str) -> Path:
        """A fresh directory for a test's task marks."""
        path = self.tmp / name
        path.mkdir()
        return path


def start_queue(stack: contextlib.ExitStack, **env: str) -> Queue:
    """A migrated private database and the environment of its workers (``env`` added)."""
    tmp = temp_dir(stack, "herald-queue-")
    database_url = create_database(tmp, stack)
    queue = Queue(tmp, server_env(DATABASE_URL=database_url, **env), stack)
    manage(["migrate", "--noinput", "-v", "0"], queue.env, tmp)
    return queue


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20, what: str = "", logs: list[Worker] = ()
) -> Any:
    """Poll ``predicate`` every 0.05 s until it is truthy (its value) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            detail = "\n".join(tail(w.log) for w in logs)
            pytest.fail(f"timed out waiting for {what or predicate}\n{detail}")
        time.sleep(0.05)
    return value
