"""The short chaos run that CI makes (``make chaos`` is the full one): every invariant holds."""

from __future__ import annotations

import os
import random

import pytest

from tests.chaos.harness import Plan, run

pytestmark = pytest.mark.chaos


def test_short_chaos_run_keeps_every_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
    plan = Plan(resources=200, kills=3, apiserver_restarts=1, fault_rate=0.2, duration=60,
                seed=seed, quiet_timeout=300)
    lines: list[str] = []
    report = run(plan, say=lines.append)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert report.passed, f"seed {seed}:\n{report.table()}"
