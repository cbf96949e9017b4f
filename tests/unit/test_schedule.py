"""The polling schedule: jittered intervals, spread restarts, per-region pacing (fake clock)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from datasync_operator.schedule import PollSchedule


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -1}, "interval"),
        ({"rate": 0}, "rate"),
        ({"share": 0}, "share"),
        ({"share": 1.5}, "share"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.0}, "jitter"),
    ],
)
def test_bad_settings_are_refused_by_name(changes: dict[str, Any], name: str) -> None:
    settings: dict[str, Any] = {"interval": 60.0, "rate": 5.0, "share": 0.5, "jitter": 0.1}
    with pytest.raises(ValueError, match=f"^{name} "):
        PollSchedule(**(settings | changes))


def test_share_of_one_and_no_jitter_are_allowed() -> None:
    schedule = PollSchedule(interval=60.0, rate=5.0, share=1.0, jitter=0.0)
    assert schedule.next_poll() == 60.0


def test_next_poll_is_the_interval_within_the_jitter() -> None:
    schedule = PollSchedule(interval=60.0, rate=5.0, jitter=0.1, rng=random.Random(5))
    draws = [schedule.next_poll() for _ in range(10_000)]
    assert 54.0 <= min(draws) < 54.5
    assert 65.5 < max(draws) <= 66.0
    assert sum(draws) / len(draws) == pytest.approx(60.0, abs=0.5)


def test_first_poll_spreads_a_restart_over_one_interval() -> None:
    schedule = PollSchedule(interval=60.0, rate=5.0, rng=random.Random(5))
    draws = [schedule.first_poll() for _ in range(10_000)]
    assert 0.0 <= min(draws) < 1.0
    assert 59.0 < max(draws) <= 60.0
    per_ten_seconds = [sum(1 for d in draws if lo <= d < lo + 10) for lo in range(0, 60, 10)]
    assert all(1500 < n < 1850 for n in per_ten_seconds)  # about 1667 each


def test_polls_reserved_at_once_are_spread_to_the_share_of_the_rate() -> None:
    schedule = PollSchedule(interval=60.0, rate=5.0, share=0.5)
    waits = [schedule.reserve("us-east-1", now=0.0) for _ in range(10_000)]
    assert waits[0] == 0.0
    assert waits == pytest.approx([i * 0.4 for i in range(10_000)])
    # at most 2.5 polls in any second: half the 5 calls/s, the rest is left for cancels
    starts = sorted(waits)
    assert all(starts[i + 25] - starts[i] >= 10.0 - 1e-6 for i in range(len(starts) - 25))


def test_regions_do_not_delay_each_other() -> None:
    schedule = PollSchedule(interval=60.0, rate=5.0)
    for _ in range(1000):
        schedule.reserve("us-east-1", now=0.0)
    assert schedule.reserve("eu-west-1", now=0.0) == 0.0
    assert schedule.reserve("eu-west-1", now=0.0) == pytest.approx(0.4)
    assert schedule.reserve("us-east-1", now=0.0) == pytest.approx(400.0)


def test_an_idle_region_saves_up_no_burst() -> None:
    schedule = PollSchedule(interval=60.0, rate=5.0)
    schedule.reserve("us-east-1", now=0.0)
    assert schedule.reserve("us-east-1", now=100.0) == 0.0
    assert schedule.reserve("us-east-1", now=100.0) == pytest.approx(0.4)


@pytest.mark.parametrize(("pollers", "interval"), [(0, 60.0), (150, 60.0), (1000, 400.0)])
def test_effective_interval_stretches_with_the_pollers(pollers: int, interval: float) -> None:
    schedule = PollSchedule(interval=60.0, rate=5.0, share=0.5)
    assert schedule.effective_interval("us-east-1", pollers) == pytest.approx(interval)
    assert schedule.polling_rate == 2.5
