"""The controller's work queue: one entry per key, priorities, backoff, one worker per key."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from datasync_operator.backoff import Backoff
from datasync_operator.workqueue import Priority, QueueShutDown, QueueStats, WorkQueue

LOW, NORMAL = Priority.LOW, Priority.NORMAL


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> WorkQueue[str]:
    return WorkQueue(clock=clock, rng=random.Random(1))


def drain(queue: WorkQueue[str]) -> list[str]:
    """Pop every ready key (marking each done) in the order the queue hands them out."""
    keys = []
    while (key := queue.pop_ready()) is not None:
        keys.append(key)
        queue.done(key)
    return keys


# --- one entry per key ---------------------------------------------------------------------------


def test_add_then_pop_marks_processing_until_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert "a" in queue and len(queue) == 1
    assert queue.pop_ready() == "a"
    assert queue.pop_ready() is None
    assert "a" in queue  # processing
    assert queue.stats == QueueStats(ready=0, delayed=0, processing=1)
    queue.done("a")
    assert "a" not in queue
    assert queue.stats == QueueStats(ready=0, delayed=0, processing=0)


def test_a_key_is_at_most_once_in_the_queue_whatever_the_mix(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    rng = random.Random(7)
    keys = [f"k{i}" for i in range(5)]
    for _ in range(2000):
        key, priority = rng.choice(keys), rng.choice([LOW, NORMAL])
        if rng.random() < 0.5:
            queue.add(key, priority)
        else:
            queue.add_after(key, rng.uniform(-1, 10), priority)
        stats = queue.stats
        assert stats.ready + stats.delayed <= len(keys)
    clock.now = 100.0
    popped = []
    while (ready := queue.pop_ready()) is not None:
        popped.append(ready)  # not done(): a second entry for a key would show up here
    assert sorted(popped) == keys
    assert queue.stats == QueueStats(ready=0, delayed=0, processing=5)


def test_a_key_being_processed_is_not_handed_out_again_until_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert queue.pop_ready() == "a"
    queue.add("a")
    queue.add_after("a", 0)
    assert queue.pop_ready() is None  # dirty, not ready: one worker per key
    assert len(queue) == 0 and "a" in queue
    queue.done("a")
    assert queue.pop_ready() == "a"
    queue.done("a")
    assert queue.pop_ready() is None


def test_dirty_key_comes_back_with_the_highest_priority_it_was_added_with(
    queue: WorkQueue[str],
) -> None:
    queue.add("a")
    assert queue.pop_ready() == "a"
    queue.add("a", LOW)
    queue.add("a", NORMAL)
    queue.add("a", LOW)
    queue.add("poll", LOW)
    queue.done("a")
    assert drain(queue) == ["a", "poll"]


def test_a_delayed_entry_due_while_processing_waits_for_done(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    assert queue.pop_ready() == "a"
    queue.add_after("a", 1.0)
    clock.now = 2.0
    assert queue.pop_ready() is None
    assert queue.next_wakeup() is None  # now dirty, no longer delayed
    queue.done("a")
    assert queue.pop_ready() == "a"


# --- priorities and order ------------------------------------------------------------------------


def test_higher_priority_first_then_fifo(queue: WorkQueue[str]) -> None:
    for key in ("l1", "l2"):
        queue.add(key, LOW)
    for key in ("n1", "n2"):
        queue.add(key, NORMAL)
    queue.add("l3", LOW)
    assert drain(queue) == ["n1", "n2", "l1", "l2", "l3"]


def test_fifo_is_by_the_moment_a_key_became_ready(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("due-at-5", 5.0)
    clock.now = 1.0
    queue.add("added-at-1")
    clock.now = 10.0
    queue.add("added-at-10")
    assert drain(queue) == ["added-at-1", "due-at-5", "added-at-10"]


def test_add_of_a_queued_key_keeps_the_higher_priority(queue: WorkQueue[str]) -> None:
    for key in ("a", "b", "c"):
        queue.add(key, LOW)
    queue.add("c", NORMAL)  # raised: moves ahead
    queue.add("x", NORMAL)
    queue.add("x", LOW)  # not lowered
    assert len(queue) == 4
    assert drain(queue) == ["c", "x", "a", "b"]


def test_a_cancel_overtakes_1000_polls(queue: WorkQueue[str], clock: FakeClock) -> None:
    for i in range(1000):
        queue.add(f"listed-{i}", LOW)
        queue.add_after(f"poll-{i}", 1.0 + i / 1000, LOW)
    clock.now = 5.0  # every poll has come due
    queue.add("cancel", NORMAL)
    assert queue.pop_ready() == "cancel"
    rest = drain(queue)
    assert len(rest) == 2000 and rest[0] == "listed-0" and rest[-1] == "poll-999"


# --- delays --------------------------------------------------------------------------------------


def test_add_of_a_delayed_key_makes_it_ready_now(queue: WorkQueue[str]) -> None:
    queue.add_after("a", 10.0, NORMAL)
    queue.add("poll", LOW)
    queue.add("a", LOW)
    assert queue.stats == QueueStats(ready=2, delayed=0, processing=0)
    assert queue.next_wakeup() is None
    assert drain(queue) == ["a", "poll"]  # kept the delayed entry's higher priority


def test_add_after_of_a_ready_key_only_raises_its_priority(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add("a", LOW)
    queue.add("b", LOW)
    queue.add_after("a", 5.0, LOW)
    queue.add_after("b", 5.0, NORMAL)
    assert queue.stats == QueueStats(ready=2, delayed=0, processing=0)
    assert drain(queue) == ["b", "a"]  # both now, b raised
    assert clock.now == 0.0


def test_add_after_of_a_delayed_key_keeps_the_earlier_time(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10.0)
    queue.add_after("a", 5.0)
    assert queue.next_wakeup() == 5.0
    queue.add_after("a", 20.0)
    assert queue.next_wakeup() == 5.0
    assert queue.stats.delayed == 1
    clock.now = 4.9
    assert queue.pop_ready() is None
    clock.now = 5.0
    assert queue.pop_ready() == "a"


def test_add_after_of_a_delayed_key_keeps_the_higher_priority(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 5.0, NORMAL)
    queue.add_after("a", 8.0, LOW)
    queue.add_after("b", 5.0, LOW)
    queue.add_after("b", 8.0, NORMAL)
    queue.add("poll", LOW)
    clock.now = 5.0
    assert drain(queue) == ["a", "b", "poll"]  # b: due at 5, raised to NORMAL


@pytest.mark.parametrize("delay", [0.0, -1.0])
def test_add_after_without_a_delay_is_add(queue: WorkQueue[str], delay: float) -> None:
    queue.add_after("later", 1.0)
    queue.add_after("later", delay)
    queue.add_after("now", delay)
    assert queue.stats == QueueStats(ready=2, delayed=0, processing=0)


def test_next_wakeup_is_the_earliest_live_delayed_entry(queue: WorkQueue[str]) -> None:
    assert queue.next_wakeup() is None
    queue.add_after("a", 3.0)
    queue.add_after("b", 7.0)
    assert queue.next_wakeup() == 3.0
    queue.remove("a")
    assert queue.next_wakeup() == 7.0
    queue.add("b")
    assert queue.next_wakeup() is None


# --- backoff -------------------------------------------------------------------------------------


def test_add_rate_limited_backs_off_per_key_until_forget(clock: FakeClock) -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    queue: WorkQueue[str] = WorkQueue(clock=clock, backoff=backoff, rng=random.Random(3))
    twin = random.Random(3)
    for failures in range(1, 7):
        delay = queue.add_rate_limited("a")
        assert delay == backoff.delay(failures, twin)
        assert queue.failures("a") == failures and queue.failures("b") == 0
        assert queue.next_wakeup() == clock.now + delay
        clock.now += delay
        assert queue.pop_ready() == "a"
        queue.done("a")
    assert 4.0 <= delay <= 8.0  # capped
    queue.forget("a")
    assert queue.failures("a") == 0
    assert 0.5 <= queue.add_rate_limited("a") <= 1.0


def test_default_backoff_starts_small() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    assert queue.add_rate_limited("a") <= 0.005


# --- removal -------------------------------------------------------------------------------------


def test_remove_drops_ready_and_delayed_entries(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add("ready")
    queue.add_after("delayed", 5.0)
    queue.add_rate_limited("delayed")
    queue.remove("ready")
    queue.remove("delayed")
    clock.now = 100.0
    assert queue.pop_ready() is None
    assert "ready" not in queue and "delayed" not in queue
    assert queue.failures("delayed") == 0
    assert queue.stats == QueueStats(ready=0, delayed=0, processing=0)


def test_remove_while_processing_is_not_readded_by_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert queue.pop_ready() == "a"
    queue.add("a")
    queue.remove("a")
    queue.done("a")
    assert queue.pop_ready() is None and "a" not in queue
    queue.add("a")  # a new object with the same key
    assert queue.pop_ready() == "a"


def test_stale_heap_entries_do_not_pile_up(queue: WorkQueue[str]) -> None:
    for i in range(10_000):
        queue.add_after("a", 1000.0 - i / 100)  # each earlier: a new entry every time
        queue.add("b", LOW)
        queue.add("b", NORMAL)
        queue.remove("b")
    assert len(queue._delayed_heap) < 100 and len(queue._ready_heap) < 100


def test_100000_keys(queue: WorkQueue[str], clock: FakeClock) -> None:
    started = time.perf_counter()
    for i in range(100_000):
        queue.add(f"low-{i}", LOW)
        queue.add_after(f"poll-{i}", 1.0 + (i * 7919 % 100_000) / 100_000, LOW)
    queue.add("cancel")
    assert queue.pop_ready() == "cancel"
    clock.now = 10.0
    order = drain(queue)
    assert len(order) == 200_000
    assert order[:2] == ["low-0", "low-1"]
    polls = [int(key.split("-")[1]) * 7919 % 100_000 for key in order[100_000:]]
    assert polls == sorted(polls)  # in the order they came due
    assert time.perf_counter() - started < 20  # O(log n) each; a quadratic queue takes hours


# --- asyncio shell -------------------------------------------------------------------------------


async def test_get_waits_for_an_add() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.add("a")
    assert await getter == "a"


async def test_shutdown_wakes_every_getter_and_ignores_later_adds() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.shutdown()
    for getter in getters:
        with pytest.raises(QueueShutDown):
            await getter
    queue.add("a")
    queue.add_after("b", 1.0)
    assert "a" not in queue and "b" not in queue
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_a_cancelled_getter_hands_its_wakeup_on() -> None:
    queue: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await second == "a"
    assert first.cancelled()


async def test_get_wakes_for_delayed_keys_with_real_time() -> None:
    """The one test with real delays: waiters wake for delayed keys, and the waiter that kept the
    timer hands it on when it takes a key (else the second getter would sleep forever)."""
    queue: WorkQueue[str] = WorkQueue()
    started = time.monotonic()
    getters = [asyncio.create_task(queue.get()) for _ in range(2)]
    await asyncio.sleep(0)  # both wait with no deadline
    queue.add_after("a", 0.05)  # the earliest: wakes one getter, which then waits until 0.05
    queue.add_after("b", 0.1)  # not the earliest: wakes nobody
    assert await asyncio.wait_for(getters[0], 1.0) == "a"
    assert 0.04 <= time.monotonic() - started < 0.2
    assert await asyncio.wait_for(getters[1], 1.0) == "b"
    assert 0.09 <= time.monotonic() - started < 0.3


async def test_one_worker_per_key_under_concurrent_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    rng = random.Random(11)
    keys = [f"k{i}" for i in range(4)]
    active: set[str] = set()
    overlaps: list[str] = []
    reconciles = 0

    async def worker() -> None:
        nonlocal reconciles
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            active.discard(key)
            reconciles += 1
            queue.done(key)

    async def adder() -> None:
        for _ in range(5000):
            queue.add(rng.choice(keys), rng.choice([LOW, NORMAL]))
            if rng.random() < 0.5:
                await asyncio.sleep(0)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await adder()
    while len(queue) or queue.stats.processing:
        await asyncio.sleep(0)
    queue.shutdown()
    await asyncio.gather(*workers)
    assert overlaps == []
    assert reconciles > 100
    assert all(key not in queue for key in keys)  # nothing left behind
