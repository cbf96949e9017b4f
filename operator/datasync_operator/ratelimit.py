"""A token bucket that spaces out DataSync calls: one bucket per region, shared by all resources.

:class:`TokenBucket` is pure arithmetic over a clock value the caller passes in, so it is unit
tested without time passing. It has two lanes:

- urgent callers (``CancelTaskExecution``) :meth:`~TokenBucket.reserve` a token: they always get
  one, queued behind earlier urgent callers only, and are told how long to wait for it;
- non-urgent callers (``DescribeTaskExecution`` polls) :meth:`~TokenBucket.try_take` a token:
  they get one only if a whole token is free beyond the one kept for urgent callers (when the
  burst is at least 2), otherwise they take nothing and are told when to come back, staggered
  one slot apart. They never take the kept token nor drive the bucket negative, so an urgent
  caller finds a token at once however many of them are waiting, unless another urgent caller
  took it within the last slot (``1/rate``), and then waits at most that slot.

:class:`RegionalRateLimiter` is the small thread-safe shell around one bucket per region. The
controller worker loop (:mod:`datasync_operator.controller`) awaits its ``acquire`` before a
cancel and asks its ``try_take`` before a describe (requeueing the key for later when refused),
so rate-limit waits happen on the event loop and no thread sleeps holding a slot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A token counts as whole when this close to 1: a caller told to come back at t and woken a
# clock tick early (asyncio may fire timers up to its clock resolution early) still gets it.
_WHOLE = 1.0 - 1e-6


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; urgent reservations may queue.

    :meth:`reserve` always takes a token and says how long the caller must wait for it. Tokens
    go negative while callers wait, so concurrent callers are served in order and the long-run
    rate never exceeds ``rate`` however many resources call at once. :meth:`try_take` is the
    non-urgent lane: it takes a token only if one is free now beyond :attr:`kept`.
    """

    rate: float
    burst: float
    #: Tokens the non-urgent lane leaves for the urgent one: 1 when the burst allows (>= 2).
    kept: float = field(init=False)
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)
    lane: float = field(default=float("-inf"), init=False)  # when the last refused caller returns

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")
        self.tokens = self.burst
        self.kept = 1.0 if self.burst >= 2 else 0.0

    def _refill(self, now: float) -> None:
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def reserve(self, now: float) -> float:
        """Take one token at time ``now``; return the seconds to wait before using it."""
        self._refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def try_take(self, now: float) -> float:
        """Take a token if a whole one is free beyond :attr:`kept` (return 0.0); else take
        nothing and return when to try again: when a token will be free, and one slot after the
        previous refused caller, so that many deferred callers come back spread out rather than
        all at once."""
        self._refill(now)
        if self.tokens >= self.kept + _WHOLE:
            self.tokens = max(0.0, self.tokens - 1)
            return 0.0
        free_at = now + (self.kept + 1 - self.tokens) / self.rate
        self.lane = max(free_at, self.lane + 1 / self.rate)
        return self.lane - now


class RegionalRateLimiter:
    """One :class:`TokenBucket` per region, shared by every caller of DataSync in the process.

    :meth:`reserve` and :meth:`try_take` are thread-safe; :meth:`acquire` waits on the event loop.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        TokenBucket(rate, burst)  # validate early, with the same messages
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, region: str) -> TokenBucket:
        bucket = self._buckets.get(region)
        if bucket is None:
            bucket = self._buckets[region] = TokenBucket(self.rate, self.burst)
        return bucket

    def reserve(self, region: str) -> float:
        """Urgent lane: take this region's next slot; return the seconds to wait for it."""
        with self._lock:
            return self._bucket(region).reserve(self._clock())

    def try_take(self, region: str) -> float:
        """Non-urgent lane: 0.0 if a slot was taken now, else the seconds until trying again."""
        with self._lock:
            return self._bucket(region).try_take(self._clock())

    async def acquire(self, region: str) -> float:
        """Reserve this region's next slot (urgent lane) and sleep on the loop until it comes;
        return how long that was. If cancelled while waiting, the slot is not given back."""
        wait = self.reserve(region)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait
