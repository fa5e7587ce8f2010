"""Background workers as deployed: real ``manage.py herald_worker`` processes on a private
database (SQLite file, or PostgreSQL with ``DATABASE_URL``), killed with SIGKILL mid-task, two
at once, retrying with backoff, and ``python -m config.serve --worker`` (``make run``)."""

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.queue import Queue, start_queue, wait_until
from tests.support.rig import (
    PYTHON,
    Server,
    create_users,
    free_port,
    popen,
    stop,
    user_spec,
    wait_ready,
)
from tests.support.tasks import marks

pytestmark = pytest.mark.processes

LEASE = 2  # s: HERALD_TASK_LEASE of these workers, so a lost task is recovered quickly


@pytest.fixture(scope="module")
def queue() -> Iterator[Queue]:
    with contextlib.ExitStack() as stack:
        yield start_queue(stack, HERALD_TASK_LEASE=str(LEASE))


def enqueue(queue: Queue, call: str) -> None:
    """Enqueue ``call`` (e.g. ``"record('/d', 'x')"``) of ``tests.support.tasks`` from a
    separate process, as a daphne process would."""
    queue.shell(f"from config.tasks import enqueue\nimport tests.support.tasks as t\n{call}")


def test_a_task_of_a_killed_worker_runs_on_another(queue: Queue) -> None:
    marks_dir = queue.directory("killed")
    enqueue(queue, f"enqueue(t.blocking, {str(marks_dir)!r}, 'k')")
    first = queue.start_worker()
    wait_until(lambda: marks(marks_dir, "started-k"), what="the task to start", logs=[first])

    first.kill()  # mid-task: the row stays RUNNING, no worker will ever finish it
    [row] = queue.rows("tests.support.tasks.blocking")
    assert row["status"] == "RUNNING"

    (marks_dir / "release").touch()
    second = queue.start_worker()
    wait_until(lambda: marks(marks_dir, "done-k"), timeout=LEASE + 20, logs=[second])
    assert len(marks(marks_dir, "started-k")) == 2  # run again from the start: at least once
    [row] = queue.rows("tests.support.tasks.blocking")
    assert row["status"] == "SUCCESSFUL"
    assert row["return"] == "k"
    assert len(set(row["workers"])) == 2  # claimed by each worker once
    assert "past its lease" in second.output()
    stop(second.process)


def test_two_workers_share_the_queue_and_run_each_task_once(queue: Queue) -> None:
    marks_dir = queue.directory("shared")
    enqueue(queue, f"for i in range(40): enqueue(t.record, {str(marks_dir)!r}, f'task-{{i}}')")
    workers = [queue.start_worker(), queue.start_worker()]
    names = [f"task-{i}" for i in range(40)]
    wait_until(lambda: all(marks(marks_dir, n) for n in names), what="40 tasks", logs=workers)
    time.sleep(0.5)  # a duplicate run would show now
    assert [len(marks(marks_dir, n)) for n in names] == [1] * 40
    rows = queue.rows("tests.support.tasks.record")
    assert {r["status"] for r in rows} == {"SUCCESSFUL"}
    for worker in workers:
        stop(worker.process)


def test_a_failing_task_is_retried_with_backoff(queue: Queue) -> None:
    flaky_dir, doomed_dir, permanent_dir = (
        queue.directory(n) for n in ("flaky", "doomed", "permanent")
    )
    (permanent_dir / "permanent").touch()
    enqueue(
        queue,
        f"enqueue(t.flaky, {str(flaky_dir)!r}, 2)\n"
        f"enqueue(t.doomed, {str(doomed_dir)!r})\n"
        f"enqueue(t.doomed, {str(permanent_dir)!r})",
    )
    worker = queue.start_worker()
    wait_until(lambda: len(marks(flaky_dir, "attempt")) == 3, what="3 attempts", logs=[worker])
    wait_until(lambda: len(marks(doomed_dir, "attempt")) == 3, what="3 attempts", logs=[worker])
    time.sleep(1.5)  # no fourth attempt of either

    first, second, third = marks(flaky_dir, "attempt")
    assert second - first >= 0.5 * 0.9  # backoff 0.5 s, then doubled, ±10 % jitter
    assert third - second >= 1.0 * 0.9
    assert len(marks(doomed_dir, "attempt")) == 3  # max_attempts=3
    assert len(marks(permanent_dir, "attempt")) == 1  # PermanentFailure: no retry

    flaky = queue.rows("tests.support.tasks.flaky")
    assert [(r["status"], r["exception"]) for r in flaky] == [
        ("FAILED", "config.tasks.RetryScheduled"),
        ("FAILED", "config.tasks.RetryScheduled"),
        ("SUCCESSFUL", ""),
    ]
    assert flaky[-1]["return"] == 3
    doomed = [
        r for r in queue.rows("tests.support.tasks.doomed") if r["args"][0] == str(doomed_dir)
    ]
    assert [r["exception"] for r in doomed][-1] == "builtins.ValueError"  # the admin shows why
    assert [r["kwargs"].get("herald_attempt", 1) for r in doomed] == [1, 2, 3]
    permanent = [
        r for r in queue.rows("tests.support.tasks.doomed") if r["args"][0] == str(permanent_dir)
    ]
    assert [r["exception"] for r in permanent] == ["config.tasks.PermanentFailure"]
    stop(worker.process)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    return False


def test_serve_with_worker_runs_tasks_beside_daphne_and_stops_it(queue: Queue) -> None:
    """``make run``: one process tree, daphne writing (logins) while the worker writes (tasks)
    to the same SQLite file; SIGTERM to daphne stops the worker too."""
    marks_dir = queue.directory("serve")
    users = create_users(queue.env, queue.tmp, [user_spec("runner", "run-Pw-4b1c")])
    port = free_port()
    log = queue.tmp / "serve.log"
    argv = [PYTHON, "-m", "config.serve", "--worker", "-b", "127.0.0.1", "-p", str(port)]
    process = popen(argv, env=queue.env, log=log)
    queue.stack.callback(stop, process)
    wait_ready([Server("serve", port, process, log)])
    [worker_pid] = wait_until(lambda: _children(process.pid), what="the worker process")

    enqueue(queue, f"for i in range(20): enqueue(t.record, {str(marks_dir)!r}, f'r{{i}}')")
    logins = [
        httpx.post(
            f"http://127.0.0.1:{port}/api/auth/token/",
            json={"username": "runner", "password": users["runner"].password},
            timeout=30,
        ).status_code
        for _ in range(10)
    ]
    assert logins == [200] * 10  # no "database is locked" beside the worker
    wait_until(lambda: all(marks(marks_dir, f"r{i}") for i in range(20)), what="20 tasks")

    process.send_signal(signal.SIGTERM)
    process.wait(30)
    wait_until(lambda: not _alive(worker_pid), timeout=20, what="the worker to stop")
