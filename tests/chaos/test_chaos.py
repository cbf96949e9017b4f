"""The short chaos run that CI makes (``make chaos`` is the full one): every invariant holds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos import harness
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


def test_a_run_that_fails_midway_leaves_no_operator_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operators run in sessions of their own; the harness must stop them when it fails."""
    started: list[int] = []

    def fail_after_start(plan: Plan, rng: random.Random, plane: object,
                         replicas: harness.Replicas, *_: object) -> float:
        started.extend(process.pid for process in replicas.running)
        raise RuntimeError("interrupted midway")

    monkeypatch.setattr(harness, "_chaos", fail_after_start)
    with pytest.raises(RuntimeError, match="interrupted midway"):
        run(Plan(resources=2, kills=0, apiserver_restarts=0, fault_rate=0.0, duration=1,
                 seed=1), say=lambda _: None)
    assert started, "the harness started no operator"
    for pid in started:
        assert not _alive(pid), f"operator process {pid} still runs after the failed run"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
