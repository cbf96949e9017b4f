"""The metrics registry: standard process/python collectors, build info, the active-replica
gauge (and no resources gauge on a standby), and label values in one style (CamelCase)."""

from __future__ import annotations

import platform

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from datasync_operator import __version__
from datasync_operator.metrics import NO_ERROR, Metrics, camel_case


def samples(metrics: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_standard_process_and_python_collectors() -> None:
    found = samples(Metrics())
    # Memory can be watched against the container limit; CPU, file descriptors, GC too.
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds", "process_start_time_seconds", "python_info",
                 "python_gc_collections_total"):
        assert name in found, sorted(found)


def test_build_info_names_the_versions() -> None:
    [(labels, value)] = samples(Metrics())["datasync_operator_build_info"]
    assert value == 1
    assert labels["version"] == __version__
    assert labels["python_version"] == platform.python_version()
    assert labels["kopf_version"].split(".")[0] == "1"


@pytest.mark.parametrize("active", [True, False])
def test_active_replica_gauge_and_no_resources_on_a_standby(active: bool) -> None:
    metrics = Metrics()
    metrics.active.attach(lambda: active)
    # The controller yields no counts on a standby (tests/unit/test_controller.py); this is
    # what a scrape of each then shows.
    counts = [("Ready", "True", 3)] if active else []
    metrics.conditions.attach(lambda: iter(counts))
    found = samples(metrics)
    assert found["datasync_operator_active_replica"] == [({}, 1.0 if active else 0.0)]
    resources = found.get("datasync_operator_resources", [])
    assert resources == ([({"condition": "Ready", "status": "True"}, 3.0)] if active else [])


def test_active_replica_is_absent_until_attached() -> None:
    assert "datasync_operator_active_replica" not in samples(Metrics())


@pytest.mark.parametrize(("raw", "shown"), [
    ("already-cancelled", "AlreadyCancelled"), ("invalid-spec", "InvalidSpec"),
    ("cancelled", "Cancelled"), ("RetryingServerError", "RetryingServerError"),
    ("CancelTaskExecution", "CancelTaskExecution"), ("none", "None"),
])
def test_camel_case(raw: str, shown: str) -> None:
    assert camel_case(raw) == shown


def test_label_values_are_in_one_style() -> None:
    metrics = Metrics()
    metrics.reconciles.labels("already-cancelled").inc()
    metrics.reconciles.labels(outcome="invalid-spec").inc()
    metrics.aws_calls.labels("CancelTaskExecution", NO_ERROR).inc()
    metrics.aws_calls.labels("CancelTaskExecution", "InternalException").inc()
    metrics.retries.labels("RetryingServerError").inc()
    found = samples(metrics)
    outcomes = {labels["outcome"] for labels, _ in found["datasync_operator_reconciles_total"]}
    assert outcomes == {"AlreadyCancelled", "InvalidSpec"}
    values = [
        value
        for name, entries in found.items() if name.startswith("datasync_operator_")
        for labels, _ in entries
        for key, value in labels.items() if key not in {"region", "version", "python_version",
                                                        "kopf_version", "le"}
    ]
    assert values and all(v[:1].isupper() and "-" not in v and "_" not in v for v in values), values
