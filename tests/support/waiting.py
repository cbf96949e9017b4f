"""Polling with a deadline, so tests wait for a condition instead of sleeping and hoping.

Used by every helper in ``tests/support`` that waits for a server, and by the integration
tests that wait for an operator to react::

    wait_for(lambda: proxy.calls("CancelTaskExecution") == 1, timeout=5,
             message="the operator never cancelled")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "the condition did not become true in time",
) -> T:
    """Call ``predicate`` until it returns a truthy value; return that value.

    The predicate is called at least once, even with ``timeout=0``. Exceptions from the
    predicate propagate at once (a predicate that may fail transiently must catch its own
    errors). On timeout an ``AssertionError`` is raised with ``message`` (or the result of
    calling it, so a message can describe the state at the time of failure) and the last
    value the predicate returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g}s; last value: {value!r})")
        time.sleep(min(interval, remaining))
