"""The pure parts of the polling schedule: when to refresh each unfinished execution.

The controller worker loop (:mod:`datasync_operator.controller`) asks ``first_poll`` when it
learns of an unfinished execution at start-up and ``next_poll`` after each refresh, and puts the
key back on its work queue with that delay at low priority. When the key comes due it asks
``reserve`` for the region's next polling slot and, if told to wait, requeues the key for that
long. The work queue's delayed heap is the timer heap: no
task or timer per object. Time is passed in, so all of this is tested with a fake clock.
"""

from __future__ import annotations

import random

from datasync_operator.ratelimit import TokenBucket


class PollSchedule:
    """When to refresh unfinished executions: a jittered interval, paced per region so that
    polling uses at most ``share`` of the region's DataSync rate limit (the rest is left for
    cancels).

    ``rate`` is the region's rate limit in calls per second (the same for every region).
    """

    def __init__(
        self,
        interval: float,
        rate: float,
        share: float = 0.5,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        if not rate > 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate}")
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.interval = interval
        self.rate = rate
        self.share = share
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def polling_rate(self) -> float:
        """The most polls per second one region gets: ``rate * share``."""
        return self.rate * self.share

    def next_poll(self) -> float:
        """Seconds until the next refresh of one execution: the interval, jittered."""
        return self.interval * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def first_poll(self) -> float:
        """Seconds until the first refresh after the operator (re)starts: anywhere in one
        interval, so that a restart does not poll everything at once."""
        return self._rng.uniform(0, self.interval)

    def reserve(self, region: str, now: float) -> float:
        """Reserve the region's next polling slot at clock time ``now``; return the seconds to
        wait for it (0.0: poll now). Slots of one region are at least ``1/polling_rate`` apart.
        A caller told to wait holds its slot and must not reserve again for that poll."""
        bucket = self._buckets.get(region)
        if bucket is None:
            bucket = self._buckets[region] = TokenBucket(self.polling_rate, burst=1)
        return bucket.reserve(now)

    def effective_interval(self, region: str, pollers: int) -> float:
        """What the interval stretches to with ``pollers`` unfinished executions in ``region``
        (for logs, metrics and the README). Every region has the same rate today."""
        return max(self.interval, pollers / self.polling_rate)
