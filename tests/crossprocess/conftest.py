"""Fixtures of the cross-process tests: the session's ``cluster`` (``tests.support.cluster``),
``short_pair``, and ``metrics``, numbers printed in the terminal summary.

The tests that check the cluster's background probes run last, so that the other tests use the
time the probes must run for.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import (
    SHORT_ACCESS_LIFETIME,
    SHORT_TICKET_LIFETIME,
    Cluster,
    start_cluster,
)
from tests.support.rig import Server


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Redis, a migrated private database, daphne ``p1``/``p2``/``quiet``, users and probes."""
    with contextlib.ExitStack() as stack:
        yield start_cluster(stack)


@pytest.fixture(scope="module")
def short_pair(cluster: Cluster) -> Iterator[tuple[Server, Server]]:
    """Two more daphne processes, ``short1`` and ``short2``, on the cluster's Redis and database,
    with access tokens living ``SHORT_ACCESS_LIFETIME`` s and tickets ``SHORT_TICKET_LIFETIME`` s.
    """
    with contextlib.ExitStack() as stack:
        short1, short2 = cluster.start_servers(
            ["short1", "short2"],
            stack,
            HERALD_ACCESS_TOKEN_LIFETIME=str(SHORT_ACCESS_LIFETIME),
            HERALD_WS_TICKET_LIFETIME=str(SHORT_TICKET_LIFETIME),
        )
        yield short1, short2


# Tests that check the background probes wait until the probes have run long enough; run them
# last so that the other tests use that time.
_LAST_MODULES = ("test_heartbeat.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.path)).parents]
    ours = [items[i] for i in slots]
    ours.sort(key=lambda item: Path(str(item.path)).name in _LAST_MODULES)
    for slot, item in zip(slots, ours, strict=True):
        items[slot] = item


_METRICS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def metrics() -> dict[str, Any]:
    """Numbers worth reading (handshakes/s, latencies), printed in the terminal summary."""
    return _METRICS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _METRICS:
        terminalreporter.section("cross-process measurements")
        for key, value in _METRICS.items():
            terminalreporter.write_line(f"{key}: {value}")
