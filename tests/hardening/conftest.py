"""Fixtures of the hardening tests: the session's ``rig`` (``tests.support.hardening``), its
own redis-servers, database and daphne processes, which these tests stop, flush and kill."""

import contextlib
from collections.abc import Iterator

import pytest

from tests.support.hardening import Rig, start_rig


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        yield start_rig(stack)
