"""Prometheus metrics of the operator, served by ``prometheus_client`` on their own port.

All metrics live in one :class:`Metrics` object with its own registry (so tests can create
fresh ones); the kopf shell and the AWS adapter record into it. Names are documented in the
README ("Metrics").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "datasync_operator"
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CANCEL_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


Counts = Callable[[], Iterable[tuple[str, str, int]]]


class ConditionTracker(Collector):
    """Counts resources by condition at scrape time, from the controller's store.

    The controller yields ``(type, status, count)`` for every pair (nothing on a standby
    replica, which publishes no resource gauge). Scrapes come from the metrics thread while the
    event loop changes the store, so a scrape that races a change simply reads again.
    """

    def __init__(self) -> None:
        self._counts: Counts | None = None

    def attach(self, counts: Counts) -> None:
        self._counts = counts

    def counts(self) -> dict[tuple[str, str], int]:
        source = self._counts
        if source is None:
            return {}
        for _ in range(5):
            try:
                return {(type_, status): count for type_, status, count in source()}
            except RuntimeError:  # the store changed during iteration: read again
                continue
        return {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{PREFIX}_resources",
            "DataSyncExecution resources by condition type and status (the active replica only).",
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
        self.internal_errors = Counter(
            f"{PREFIX}_internal_errors_total",
            "Unexpected exceptions in the operator's own code during a reconcile, by type.",
            ["type"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_workqueue_depth",
            "Keys ready in the work queue, waiting for a worker.",
            registry=self.registry,
        )
        self.conditions = ConditionTracker()
        self.registry.register(self.conditions)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``address:port`` from a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)
