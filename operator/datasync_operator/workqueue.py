"""The controller's keyed work queue: one entry per key, priorities, per-key backoff, and at most
one worker per key.

Kopf handlers :meth:`~WorkQueue.add` the key of an object they saw change; the polling schedule
puts keys back with :meth:`~WorkQueue.add_after`. The controller worker loop
(:mod:`datasync_operator.controller`) takes a key with :meth:`~WorkQueue.get`, reconciles it,
and then calls :meth:`~WorkQueue.forget` after a success or :meth:`~WorkQueue.add_rate_limited`
after a failure, and always :meth:`~WorkQueue.done`. A relist calls :meth:`~WorkQueue.remove`
for the keys of objects that are gone.

Modelled on client-go's workqueue (dirty/processing sets, rate-limited and delaying adds) and
controller-runtime's priority queue (higher priority first, FIFO within a priority). Each key
has at most one of: a ready entry, a delayed entry, or a "dirty" mark (added while processing).
The two heaps invalidate lazily: a dict holds each key's current entry, and heap entries that
are not it are skipped when they surface, so every operation is O(log n) amortized.

Everything except :meth:`~WorkQueue.get` and :meth:`~WorkQueue.shutdown` is synchronous and reads
time only through ``clock``, so it is tested with a fake clock. Not thread-safe: use it from the
event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from datasync_operator.backoff import Backoff

K = TypeVar("K", bound=Hashable)
_E = TypeVar("_E", bound=tuple[Any, ...])

_SLACK = 64  # stale heap entries tolerated beyond the live ones before a heap is rebuilt


class Priority(enum.IntEnum):
    LOW = -100  # initial list, polls, resyncs
    NORMAL = 0  # new objects, spec changes, deletions, retries


class QueueShutDown(Exception):  # noqa: N818 (the name of asyncio.QueueShutDown in 3.13)
    """Raised by :meth:`WorkQueue.get` once the queue has been shut down."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int
    delayed: int
    processing: int


def _push(heap: list[_E], live: dict[Any, _E], entry: _E) -> None:
    """Push ``entry`` (already recorded in ``live``); rebuild when stale entries pile up."""
    heapq.heappush(heap, entry)
    if len(heap) > 2 * len(live) + _SLACK:
        heap[:] = live.values()
        heapq.heapify(heap)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._backoff = backoff or Backoff(base=0.005, cap=1000.0)
        self._rng = rng or random.Random()
        self._sequence = itertools.count()  # ties broken by insertion: keys are never compared
        # ready: (-priority, ready since, sequence, key); delayed: (due, sequence, key, priority)
        self._ready: dict[K, tuple[int, float, int, K]] = {}
        self._ready_heap: list[tuple[int, float, int, K]] = []
        self._delayed: dict[K, tuple[float, int, K, Priority]] = {}
        self._delayed_heap: list[tuple[float, int, K, Priority]] = []
        self._dirty: dict[K, Priority] = {}  # added while processing: ready again at done()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shut_down = False

    # --- synchronous core -----------------------------------------------------------------------

    def add(self, key: K, priority: Priority = Priority.NORMAL) -> None:
        """Make ``key`` ready now (a delayed entry is brought forward), at the higher of its
        priorities; if it is being processed, it becomes ready again at :meth:`done`."""
        if self._shut_down or self._raise_pending(key, priority):
            return
        delayed = self._delayed.pop(key, None)
        if delayed is not None:
            priority = max(priority, delayed[3])
        if key in self._processing:
            self._dirty[key] = priority
        else:
            self._push_ready(key, priority, self._clock())
            self._wake_one()

    def add_after(self, key: K, delay: float, priority: Priority = Priority.NORMAL) -> None:
        """Make ``key`` ready in ``delay`` seconds, unless it is ready (or due) sooner already."""
        if delay <= 0:
            self.add(key, priority)
            return
        if self._shut_down or self._raise_pending(key, priority):
            return
        due = self._clock() + delay
        current = self._delayed.get(key)
        if current is not None:
            if current[0] <= due and current[3] >= priority:
                return
            due, priority = min(due, current[0]), max(priority, current[3])
        entry = (due, next(self._sequence), key, priority)
        self._delayed[key] = entry
        _push(self._delayed_heap, self._delayed, entry)
        if self._delayed_heap[0] is entry:  # the earliest now: a waiter must wake sooner
            self._wake_one()

    def add_rate_limited(self, key: K, priority: Priority = Priority.NORMAL) -> float:
        """Count a failure of ``key`` and requeue it after its backoff; return that delay."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = self._backoff.delay(failures, self._rng)
        self.add_after(key, delay, priority)
        return delay

    def forget(self, key: K) -> None:
        """Reset the failure count of ``key`` (after a success)."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def remove(self, key: K) -> None:
        """The object is gone: drop every entry of ``key`` and its failure count. If it is being
        processed, :meth:`done` will not make it ready again (unless it is added anew)."""
        self._ready.pop(key, None)
        self._delayed.pop(key, None)
        self._dirty.pop(key, None)
        self._failures.pop(key, None)

    def pop_ready(self) -> K | None:
        """Take the highest-priority ready key (FIFO within a priority) and mark it processing."""
        self._promote(self._clock())
        heap = self._ready_heap
        while heap:
            entry = heapq.heappop(heap)
            key = entry[3]
            if self._ready.get(key) is entry:
                del self._ready[key]
                self._processing.add(key)
                return key
        return None

    def done(self, key: K) -> None:
        """Processing of ``key`` ended; if it was added meanwhile it becomes ready again."""
        self._processing.discard(key)
        priority = self._dirty.pop(key, None)
        if priority is not None and not self._shut_down:
            self._push_ready(key, priority, self._clock())
            self._wake_one()

    def next_wakeup(self) -> float | None:
        """The clock time at which the earliest delayed entry comes due, if any."""
        heap = self._delayed_heap
        while heap and self._delayed.get(heap[0][2]) is not heap[0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def __contains__(self, key: object) -> bool:
        return (
            key in self._ready
            or key in self._delayed
            or key in self._dirty
            or key in self._processing
        )

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def stats(self) -> QueueStats:
        return QueueStats(len(self._ready), len(self._delayed), len(self._processing))

    def _raise_pending(self, key: K, priority: Priority) -> bool:
        """If ``key`` is ready or dirty, raise its priority to ``priority`` and return True."""
        if key in self._dirty:
            self._dirty[key] = max(self._dirty[key], priority)
            return True
        current = self._ready.get(key)
        if current is None:
            return False
        if priority > -current[0]:  # moves ahead of the lower class, keeps its ready time
            self._push_ready(key, priority, current[1])
        return True

    def _push_ready(self, key: K, priority: Priority, since: float) -> None:
        entry = (-int(priority), since, next(self._sequence), key)
        self._ready[key] = entry
        _push(self._ready_heap, self._ready, entry)

    def _promote(self, now: float) -> None:
        """Move delayed entries due by ``now`` to ready (or dirty, if being processed)."""
        heap = self._delayed_heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            due, _, key, priority = entry
            if self._delayed.get(key) is not entry:
                continue
            del self._delayed[key]
            if key in self._processing:
                self._dirty[key] = priority
            else:
                self._push_ready(key, priority, due)

    # --- asyncio shell --------------------------------------------------------------------------

    async def get(self) -> K:
        """Wait for a ready key and take it; raise :class:`QueueShutDown` after :meth:`shutdown`."""
        held_deadline = False
        while not self._shut_down:
            key = self.pop_ready()
            if key is not None:
                # Pass the baton: more ready work, or the timer this waiter kept for the others.
                if self._ready or (held_deadline and self._delayed):
                    self._wake_one()
                return key
            due = self.next_wakeup()
            held_deadline = due is not None
            await self._wait(due)
        raise QueueShutDown

    def shutdown(self) -> None:
        """Wake every waiting :meth:`get` with :class:`QueueShutDown`; ignore later adds."""
        self._shut_down = True
        while self._waiters:
            _resolve(self._waiters.popleft())

    async def _wait(self, due: float | None) -> None:
        """Sleep until woken by an add, or until ``due`` (clock time) if given."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if due is None else loop.call_later(due - self._clock(), _resolve, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            self._wake_one()  # this waiter may have been woken, or held the timer: hand it on
            raise
        finally:
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
