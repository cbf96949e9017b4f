"""A token bucket that spaces out DataSync calls: one bucket per region, shared by all resources.

:class:`TokenBucket` is pure arithmetic over a clock value the caller passes in, so it is unit
tested without time passing; :class:`RegionalRateLimiter` is the small thread-safe shell around
it that the AWS adapter's worker threads wait on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; reservations may queue.

    :meth:`reserve` always takes a token and says how long the caller must wait for it. Tokens
    go negative while callers wait, so concurrent callers are served in order and the long-run
    rate never exceeds ``rate`` however many resources call at once.
    """

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")
        self.tokens = self.burst

    def reserve(self, now: float) -> float:
        """Take one token at time ``now``; return the seconds to wait before using it."""
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RegionalRateLimiter:
    """One :class:`TokenBucket` per region, shared by every thread that calls DataSync.

    :meth:`wait_turn` runs in the worker thread right before its request goes out, so the
    spacing holds at the wire: a queue of calls waiting for a free worker cannot turn into a
    burst when workers free up. It never runs on the event loop.
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

    def reserve(self, region: str) -> float:
        """Take this region's next slot; return the seconds to wait before using it."""
        with self._lock:
            bucket = self._buckets.get(region)
            if bucket is None:
                bucket = self._buckets[region] = TokenBucket(self.rate, self.burst)
            return bucket.reserve(self._clock())

    def wait_turn(self, region: str) -> float:
        """Block the calling (worker) thread until its slot; return how long it waited."""
        wait = self.reserve(region)
        if wait > 0:
            time.sleep(wait)
        return wait
