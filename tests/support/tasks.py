"""Background tasks for the worker tests (``tests/ops/test_worker*.py``): module-level, so a
``herald_worker`` process imports them by their dotted path as it would Herald's own.

Each leaves its traces as files in a directory the test gives, so the test sees, from another
process, what ran, when, and how often.
"""

import time
from pathlib import Path

from config.tasks import PermanentFailure, background_task


def _mark(directory: str, name: str) -> None:
    with (Path(directory) / name).open("a") as out:
        out.write(f"{time.time()}\n")


def marks(directory: Path, name: str) -> list[float]:
    """The times ``name`` was marked in ``directory``, in order (none: ``[]``)."""
    path = directory / name
    return [float(line) for line in path.read_text().split()] if path.exists() else []


@background_task(max_attempts=1)
def blocking(directory: str, name: str) -> str:
    """Marks ``started-<name>``, waits for the file ``release`` (polling), marks ``done-<name>``."""
    _mark(directory, f"started-{name}")
    while not (Path(directory) / "release").exists():
        time.sleep(0.05)
    _mark(directory, f"done-{name}")
    return name


@background_task(max_attempts=4, backoff=0.5)
def flaky(directory: str, failures: int) -> int:
    """Marks ``attempt``; fails while it has been attempted ``failures`` times or fewer."""
    _mark(directory, "attempt")
    attempts = len(marks(Path(directory), "attempt"))
    if attempts <= failures:
        raise ConnectionError(f"attempt {attempts} fails")
    return attempts


@background_task(max_attempts=3, backoff=0.5)
def doomed(directory: str) -> None:
    """Always fails (``PermanentFailure`` when the file ``permanent`` exists)."""
    _mark(directory, "attempt")
    if (Path(directory) / "permanent").exists():
        raise PermanentFailure("nothing to do")
    raise ValueError("always fails")


@background_task()
def record(directory: str, name: str) -> None:
    """Marks ``name``."""
    _mark(directory, name)
