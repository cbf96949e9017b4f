"""The rate limiter's non-urgent lane (try_take) and its asyncio shell (acquire).

The urgent lane (reserve) and the regional shell are covered in test_lifecycle_core.py.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import threading
import time

import pytest

from datasync_operator.ratelimit import RegionalRateLimiter, TokenBucket


def test_try_take_takes_a_free_token_and_otherwise_nothing() -> None:
    bucket = TokenBucket(rate=5.0, burst=3)
    assert [bucket.try_take(0.0), bucket.try_take(0.0)] == [0.0, 0.0]
    assert bucket.try_take(0.0) == pytest.approx(0.2)
    assert bucket.tokens == 1.0  # the refusal took nothing (and the kept token is still there)
    assert bucket.try_take(0.2) == 0.0  # so the refused caller gets its token when it comes back


def test_non_urgent_callers_leave_one_token_for_an_urgent_caller() -> None:
    bucket = TokenBucket(rate=5.0, burst=10)
    taken = 0
    while bucket.try_take(0.0) == 0.0:
        taken += 1
    assert taken == 9  # the tenth token is kept
    assert bucket.reserve(0.0) == 0.0  # so a cancel coming now goes at once
    assert bucket.reserve(0.0) == pytest.approx(0.2)  # the next one within that slot waits it


def test_a_burst_of_one_keeps_nothing_back() -> None:
    bucket = TokenBucket(rate=5.0, burst=1)
    assert bucket.kept == 0.0
    assert bucket.try_take(0.0) == 0.0  # else non-urgent callers would never get a token


def test_an_urgent_caller_never_waits_behind_non_urgent_ones() -> None:
    """Cancels one slot or more apart find a token at once while 1,000 polls drain the bucket
    (the defaults: 5 calls per second, bursts of 10); the polls still get the whole rate."""
    rate = 5.0
    bucket = TokenBucket(rate=rate, burst=10)
    events = [(0.0, "poll", i) for i in range(1000)]
    events += [(0.1 + 0.7 * n, "cancel", n) for n in range(200)]  # 0.7 s apart, off the slots
    heapq.heapify(events)
    polled: list[float] = []
    cancel_waits: list[float] = []
    while events:
        now, kind, caller = heapq.heappop(events)
        if kind == "cancel":
            cancel_waits.append(bucket.reserve(now))
            continue
        wait = bucket.try_take(now)
        if wait == 0.0:
            polled.append(now)
        else:
            heapq.heappush(events, (now + wait, kind, caller))
    assert len(cancel_waits) == 200
    assert max(cancel_waits) == pytest.approx(0.0, abs=1e-9)  # (float rounding of the refill)
    assert len(polled) == 1000
    # 9 at once, then the rate less the cancels' share while they last
    assert polled[-1] == pytest.approx((1000 - 9 + 200) / rate, abs=1 / rate)


def test_refused_callers_are_told_to_come_back_one_slot_apart() -> None:
    bucket = TokenBucket(rate=5.0, burst=1)
    assert bucket.try_take(0.0) == 0.0
    waits = [bucket.try_take(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert bucket.try_take(0.1) == pytest.approx(1.1)  # joins the end of the lane
    assert bucket.try_take(100.0) == 0.0  # a lane in the past does not hold anyone back
    assert bucket.try_take(100.0) == pytest.approx(0.2)


def test_deferred_callers_each_get_a_token_when_they_come_back() -> None:
    bucket = TokenBucket(rate=5.0, burst=1)
    returns = [(0.0, i) for i in range(100)]  # (when, caller): 100 polls at once
    taken: list[float] = []
    while returns:
        now, caller = heapq.heappop(returns)
        wait = bucket.try_take(now)
        if wait == 0.0:
            taken.append(now)
        else:
            heapq.heappush(returns, (now + wait, caller))
    assert len(taken) == 100
    assert taken[-1] == pytest.approx(99 * 0.2)  # each came back once, to its own slot
    gaps = [b - a for a, b in itertools.pairwise(taken)]
    assert min(gaps) == pytest.approx(0.2)  # never faster than the rate


def test_an_urgent_caller_waits_at_most_one_slot_behind_any_number_of_non_urgent() -> None:
    rate = 5.0
    bucket = TokenBucket(rate=rate, burst=1)
    returns = [(0.0, i) for i in range(1000)]
    worst = 0.0
    while returns:
        now, caller = heapq.heappop(returns)
        # what a cancel arriving right now would wait, whatever the polls have done so far
        worst = max(worst, copy.copy(bucket).reserve(now))
        wait = bucket.try_take(now)
        assert bucket.tokens >= 0  # the non-urgent lane never drives the bucket negative
        if wait > 0:
            heapq.heappush(returns, (now + wait, caller))
    assert worst == pytest.approx(1 / rate)


def test_non_urgent_callers_do_not_get_ahead_of_queued_urgent_ones() -> None:
    bucket = TokenBucket(rate=5.0, burst=1)
    assert bucket.try_take(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(0.2)  # urgent: the next slot
    assert bucket.reserve(0.0) == pytest.approx(0.4)  # urgent: the one after
    assert bucket.try_take(0.0) == pytest.approx(0.6)  # poll: after both cancels
    assert bucket.try_take(0.4) == pytest.approx(0.4)  # poll: after the poll refused at 0.0
    assert bucket.try_take(0.6) == 0.0  # the first poll, back at its time, gets its token


def test_regional_try_take_keeps_regions_apart() -> None:
    now = [0.0]
    limiter = RegionalRateLimiter(rate=10.0, burst=1, clock=lambda: now[0])
    assert limiter.try_take("us-east-1") == 0.0
    assert limiter.try_take("eu-west-1") == 0.0
    assert limiter.try_take("us-east-1") == pytest.approx(0.1)
    assert limiter.reserve("us-east-1") == pytest.approx(0.1)  # the refusal took no slot
    now[0] = 10.0
    assert limiter.try_take("us-east-1") == 0.0


def test_regional_try_take_is_safe_across_threads() -> None:
    limiter = RegionalRateLimiter(rate=100.0, burst=1, clock=lambda: 0.0)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            wait = limiter.try_take("us-east-1")
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 200 callers at one instant: one token taken, every refusal told a slot of its own
    assert sorted(round(w, 6) for w in waits) == [round(i / 100, 6) for i in range(200)]


async def test_acquire_waits_on_the_loop_not_in_a_thread() -> None:
    """The one test with real delays."""
    limiter = RegionalRateLimiter(rate=20.0, burst=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    assert await limiter.acquire("us-east-1") == 0.0
    other_region = await limiter.acquire("eu-west-1")
    waited = await limiter.acquire("us-east-1")
    elapsed = time.monotonic() - started
    ticking.cancel()
    assert other_region == 0.0
    assert waited == pytest.approx(0.05, abs=0.01)
    assert 0.04 <= elapsed < 0.2
    assert ticks >= 3  # the loop kept running while acquire waited
