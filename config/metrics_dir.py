"""Where prometheus-client's multiprocess mode keeps each process's metric files.

Several daphne processes on one machine each hold their own counters; prometheus-client's
multiprocess mode (its docs, "Multiprocess Mode (E.g. Gunicorn)") has each process write its
values to memory-mapped files ``<type>_<pid>.db`` in ``PROMETHEUS_MULTIPROC_DIR``, and any
process's ``/metrics`` sums every file. The variable must be set before prometheus-client is
imported (it picks its value class at import), so the settings call :func:`configure` first.

Without ``PROMETHEUS_MULTIPROC_DIR`` the directory is per machine *and* deployment:
``<tmp>/herald-metrics-<uid>-<hash of the checkout, settings module, DATABASE_URL, REDIS_URL>``,
so every process of one deployment on one machine shares it and two deployments never mix.

Stale files: prometheus-client keeps a dead process's counters (a counter must not go down
while the deployment runs) but its live gauges must go (``mark_process_dead``). So at start,
and at every scrape (:func:`reap`), the ``gauge_live*`` files of dead pids are removed; when no
process of the deployment is alive at all, the directory is emptied (a fresh start; Prometheus
treats the drop as a counter reset).
"""

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_FILE = re.compile(r"^(?P<kind>[a-z_]+)_(?P<pid>\d+)\.db$")


def default_dir(base_dir: Path, environ: dict[str, str] | os._Environ[str]) -> Path:
    """The per-machine, per-deployment directory used when ``PROMETHEUS_MULTIPROC_DIR`` is unset."""
    identity = "\n".join(
        [
            str(base_dir),
            environ.get("DJANGO_SETTINGS_MODULE", ""),
            environ.get("DATABASE_URL", ""),
            environ.get("REDIS_URL", ""),
        ]
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"herald-metrics-{os.getuid()}-{digest}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _files(path: Path) -> list[tuple[Path, str, int]]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path):
            if match := _FILE.match(entry.name):
                found.append((Path(entry.path), match["kind"], int(match["pid"])))
    return found


def reap(path: Path | str) -> None:
    """Remove the live-gauge files of dead processes (prometheus-client's ``mark_process_dead``)."""
    for file, kind, pid in _files(Path(path)):
        if kind.startswith("gauge_live") and pid != os.getpid() and not _alive(pid):
            file.unlink(missing_ok=True)


def _clean(path: Path) -> None:
    me = os.getpid()
    files = _files(path)
    others_alive = any(pid != me and _alive(pid) for _, _, pid in files)
    for file, kind, pid in files:
        if not others_alive:
            file.unlink(missing_ok=True)  # nobody of this deployment runs: start from zero
        elif kind.startswith("gauge_live") and (pid == me or not _alive(pid)):
            # A dead process's live gauges, or those of a dead process whose pid we reuse.
            file.unlink(missing_ok=True)


def configure(base_dir: Path, *, private: bool = False) -> Path:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` (unless set), create it, and remove stale files.

    ``private``: a directory for this process alone, removed when it exits (the test suite's,
    so concurrent test runs never see each other's values).
    """
    if private:
        path = Path(tempfile.mkdtemp(prefix=f"herald-metrics-{os.getuid()}-pid{os.getpid()}-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ[ENV] = str(path)
    elif not os.environ.get(ENV):
        os.environ[ENV] = str(default_dir(base_dir, os.environ))
    path = Path(os.environ[ENV])
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Two processes starting together must not both decide they are alone and empty the
    # directory under the other's feet.
    with open(path / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _clean(path)
    return path
