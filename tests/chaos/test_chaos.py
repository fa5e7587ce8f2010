"""The combined-fault checker's short profile, in CI (``make chaos`` runs the long one).

Two seeds of ``bench/chaos.py`` (docs/reliability.md, "The combined-fault checker"), a few
seconds of faults each: three daphne processes, a private redis-server behind the checker's
proxy, and a copy of a private database (PostgreSQL on the PostgreSQL pass, where
``DATABASE_URL`` is one). The checker runs as its own process, as ``make chaos`` runs it; its
report is printed, and a failure names the seed, the violated property and the command that
reproduces it.
"""

import os
import subprocess
import sys

import pytest

from tests.support.rig import ROOT

pytestmark = pytest.mark.processes

SEEDS = os.environ.get("CHAOS_CI_SEEDS", "1,2")  # the CI profile: fixed seeds, short runs
SECONDS = os.environ.get("CHAOS_CI_SECONDS", "10")


def test_the_short_chaos_profile_holds_every_property():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    seeds = [int(s) for s in SEEDS.split(",")]
    for seed in seeds:
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "bench.chaos", "--seed", str(seed), "--seconds", SECONDS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(result.stdout[-6000:], result.stderr[-3000:])
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
        assert "every property held" in result.stdout
