"""Prometheus metrics of the operator, served by ``prometheus_client`` on their own port.

All metrics live in one :class:`Metrics` object with its own registry (so tests can create
fresh ones); the kopf shell and the AWS adapter record into it. Names are documented in the
README ("Metrics").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "datasync_operator"
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CANCEL_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_CONDITION_TYPES = ("Ready", "Cancelled", "Reconciling", "Stalled")


class ConditionTracker(Collector):
    """Counts resources by condition at scrape time, from kopf's ``condition_index``.

    The index maps ``(type, status)`` to the store of resources having that condition; it is
    written by kopf's event loop while scrapes come from the metrics thread, so a scrape that
    races a change simply reads again.
    """

    def __init__(self) -> None:
        self._index: Mapping[tuple[str, str], Any] | None = None

    def attach(self, index: Mapping[tuple[str, str], Any]) -> None:
        self._index = index

    def counts(self) -> dict[tuple[str, str], int]:
        counts = {(t, s): 0 for t in _CONDITION_TYPES for s in ("True", "False", "Unknown")}
        index = self._index
        if index is None:
            return counts
        for _ in range(5):
            try:
                for key in list(index.keys()):
                    counts[key] = len(index.get(key) or ())
                break
            except RuntimeError:  # changed during iteration: read again
                continue
        return counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{PREFIX}_resources",
            "DataSyncExecution resources by condition type and status.",
            labels=["condition", "status"],
        )
        for (type_, status), count in sorted(self.counts().items()):
            family.add_metric([type_, status], count)
        yield family


class Metrics:
    """Every metric of the operator."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            f"{PREFIX}_reconciles_total",
            "Reconciles by outcome (cancelled, already-cancelled, retrying, stalled, observed, "
            "refreshed, unchanged, invalid-spec, deleted).",
            ["outcome"],
            registry=self.registry,
        )
        self.aws_calls = Counter(
            f"{PREFIX}_aws_calls_total",
            'DataSync/STS calls by operation and error code ("none" when it succeeded).',
            ["operation", "error_code"],
            registry=self.registry,
        )
        self.aws_latency = Histogram(
            f"{PREFIX}_aws_call_duration_seconds",
            "Duration of DataSync/STS calls (successful or not), by operation.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Histogram(
            f"{PREFIX}_aws_rate_limit_wait_seconds",
            "Time a DataSync call waited for the per-region rate limiter.",
            ["region"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cancel_latency = Histogram(
            f"{PREFIX}_cancel_latency_seconds",
            "Time from the first CancelTaskExecution attempt to DataSync accepting it.",
            buckets=_CANCEL_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            f"{PREFIX}_retries_total",
            "Retries scheduled after transient failures, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.conditions = ConditionTracker()
        self.registry.register(self.conditions)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``address:port`` from a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)
