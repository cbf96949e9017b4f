"""Capped exponential backoff with jitter, for the operator's own retries of transient failures.

Pure: the random source is passed in so tests can pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """``base * 2**(attempt-1)`` capped at ``cap``, with "equal jitter".

    Half of the exponential delay is kept and the other half is random, so that many resources
    failing together spread out, yet no retry comes sooner than half the nominal delay.
    """

    base: float = 2.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if self.base <= 0:
            raise ValueError(f"retry base delay must be > 0, got {self.base}")
        if self.cap < self.base:
            raise ValueError(f"retry max delay ({self.cap}) must be >= base delay ({self.base})")

    def nominal(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (1-based), before jitter."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        exponent = min(attempt - 1, 62)  # 2**62 * base is far above any cap: no overflow
        return float(min(self.cap, self.base * (2**exponent)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        nominal = self.nominal(attempt)
        draw = (rng or random).random()
        return nominal / 2 + draw * nominal / 2
