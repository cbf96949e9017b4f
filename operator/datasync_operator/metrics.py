"""Prometheus metrics of the operator, served by ``prometheus_client`` on their own port.

All metrics live in one :class:`Metrics` object with its own registry (so tests can create
fresh ones); the kopf shell and the AWS adapter record into it. Names are documented in the
README ("Metrics"). Besides the operator's own metrics, the registry carries the standard
``process_*`` (memory, CPU, file descriptors) and ``python_*`` (interpreter, garbage collector)
collectors, ``datasync_operator_build_info`` and ``datasync_operator_active_replica``.

Label values are in one style, CamelCase, like the Kubernetes reasons and AWS error codes and
operation names that most of them are: the decision core's one-word outcomes
(``already-cancelled``) are turned into ``AlreadyCancelled`` here, and a call that succeeded
has ``error_code="None"``. The only exception is ``region``, whose values are AWS's own names
(``us-east-1``).
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from datasync_operator import __version__

PREFIX = "datasync_operator"
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CANCEL_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


Counts = Callable[[], Iterable[tuple[str, str, int]]]

#: The ``error_code`` label of an AWS call that succeeded.
NO_ERROR = "None"


def camel_case(value: str) -> str:
    """``already-cancelled`` -> ``AlreadyCancelled``; CamelCase values are left as they are."""
    if not re.search(r"[-_ ]", value) and value[:1].isupper():
        return value
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_ ]+", value) if part)


class CamelCaseCounter(Counter):
    """A counter whose label values are put in CamelCase, whatever its callers pass."""

    def labels(self, *values: Any, **named: Any) -> Any:
        return super().labels(
            *(camel_case(str(v)) for v in values),
            **{k: camel_case(str(v)) for k, v in named.items()},
        )


class ActiveReplica(Collector):
    """``datasync_operator_active_replica``: 1 on the replica that acts, 0 on a standby."""

    def __init__(self) -> None:
        self._active: Callable[[], bool] | None = None

    def attach(self, active: Callable[[], bool]) -> None:
        self._active = active

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{PREFIX}_active_replica",
            "1 when this replica is the one that acts (the Lease holder, or standalone), 0 when "
            "it stands by. Only the active replica publishes datasync_operator_resources.",
        )
        if self._active is not None:
            family.add_metric([], 1.0 if self._active() else 0.0)
        yield family


def build_labels() -> dict[str, str]:
    """The labels of ``datasync_operator_build_info``."""
    try:
        kopf_version = metadata.version("kopf")
    except metadata.PackageNotFoundError:  # pragma: no cover - kopf is a dependency
        kopf_version = "unknown"
    return {
        "version": __version__,
        "python_version": platform.python_version(),
        "kopf_version": kopf_version,
    }


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
        self.reconciles = CamelCaseCounter(
            f"{PREFIX}_reconciles_total",
            "Reconciles by outcome (Cancelled, AlreadyCancelled, Retrying, Stalled, Observed, "
            "Refreshed, Unchanged, InvalidSpec, Deleted).",
            ["outcome"],
            registry=self.registry,
        )
        self.aws_calls = Counter(
            f"{PREFIX}_aws_calls_total",
            'DataSync/STS calls by operation and error code ("None" when it succeeded).',
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
        self.active = ActiveReplica()
        self.registry.register(self.active)
        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the labels say which operator, Python and kopf versions run.",
            list(build_labels()),
            registry=self.registry,
        )
        self.build_info.labels(**build_labels()).set(1)
        # The standard process_* and python_* metrics (prometheus_client's default collectors,
        # registered here because the operator serves its own registry).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``address:port`` from a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)
