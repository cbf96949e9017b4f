"""Benchmark of the pure decision core: decisions per second and memory per decision.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_core.py``). Prints figures; it
asserts nothing, it measures.
"""

from __future__ import annotations

import random
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from datasync_operator.errors import AwsError, ErrorKind
from datasync_operator.execution import Description
from datasync_operator.reconcile import (
    CallFailed,
    CancelAccepted,
    CancelRejected,
    Outcome,
    Policy,
    Resource,
    conclude,
    plan,
)

ARN = (
    "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0"
    "/execution/exec-0123456789abcdef1"
)
OUTCOMES: list[Outcome] = [
    CancelAccepted(),
    CallFailed(AwsError(ErrorKind.SERVER, "InternalException", "boom", 500, "r")),
    CancelRejected(
        AwsError(ErrorKind.INVALID_REQUEST, "InvalidRequestException", "x", 400),
        Description("ERROR"),
    ),
]


def body(generation: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "n", "namespace": "ns", "generation": generation},
        "spec": {"executionArn": ARN, "desiredState": "Cancelled"},
        "status": {},
    }


def run(rounds: int) -> float:
    policy, rng, now = Policy(), random.Random(0), datetime.now(UTC)
    started = time.perf_counter()
    for index in range(rounds):
        resource = Resource.from_body(body(index))
        plan(resource)
        conclude(resource, OUTCOMES[index % len(OUTCOMES)], now=now, policy=policy, rng=rng)
    return time.perf_counter() - started


def main() -> None:
    run(1_000)  # warm up
    rounds = 50_000
    elapsed = min(run(rounds) for _ in range(3))
    print(
        f"decision core: {rounds / elapsed:,.0f} plan+conclude per second "
        f"({elapsed / rounds * 1e6:.1f} us each, best of 3)"
    )
    tracemalloc.start()
    kept = []
    policy, rng, now = Policy(), random.Random(0), datetime.now(UTC)
    before = tracemalloc.get_traced_memory()[0]
    for index in range(10_000):
        resource = Resource.from_body(body(index))
        kept.append(conclude(resource, CancelAccepted(), now=now, policy=policy, rng=rng).status)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"decision core: {(after - before) / len(kept):,.0f} bytes per decided status kept")


if __name__ == "__main__":
    main()
