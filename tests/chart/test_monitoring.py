"""The chart's PrometheusRule and Grafana dashboard: valid PromQL (Prometheus' own grammar, via
promql-parser) that names only metrics the operator really exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from datasync_operator.metrics import Metrics
from tests.support.helm import CHART_DIR, Helm

ENABLED = ["--set", "metrics.prometheusRule.enabled=true",
           "--set", "metrics.grafanaDashboard.enabled=true"]
#: Exported by the Prometheus client's standard process collector, not by Metrics itself.
PROCESS = {"process_resident_memory_bytes"}


def exported_names() -> set[str]:
    """Every sample name the operator's registry can produce (histograms: _bucket/_sum/_count)."""
    metrics = Metrics(CollectorRegistry())
    metrics.conditions.attach(lambda: iter([("Stalled", "True", 1)]))
    metrics.active.attach(lambda: True)
    names: set[str] = set(PROCESS)
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{s}" for s in ("bucket", "sum", "count"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def selectors(expr: Any) -> Iterator[str]:
    """The metric names an expression selects."""
    if isinstance(expr, promql_parser.VectorSelector):
        if expr.name:
            yield expr.name
        return
    for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(expr, attribute, None)
        if child is not None and type(child).__module__.startswith("promql_parser"):
            yield from selectors(child)
    for child in getattr(expr, "args", None) or ():
        yield from selectors(child)


def rendered(helm: Helm, *args: str) -> list[dict[str, Any]]:
    return helm.template(extra=args)


@pytest.fixture(scope="module")
def manifests(helm: Helm) -> list[dict[str, Any]]:
    return rendered(helm, *ENABLED)


def kind(manifests: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == name]


def test_off_by_default(helm: Helm) -> None:
    kinds = {m["kind"] for m in rendered(helm)}
    assert "PrometheusRule" not in kinds
    assert not any(m["kind"] == "ConfigMap" and m["metadata"]["name"].endswith("-dashboard")
                   for m in rendered(helm))


def test_every_alert_parses_and_names_real_metrics(manifests: list[dict[str, Any]]) -> None:
    (rule,) = kind(manifests, "PrometheusRule")
    rules = rule["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "DataSyncExecutionStalled", "DataSyncOperatorRetrying", "DataSyncCancelLatencyHigh",
        "DataSyncOperatorNotLeading", "DataSyncOperatorInternalErrors",
    }
    exported = exported_names()
    for alert in rules:
        expr = promql_parser.parse(alert["expr"])  # raises on a syntax error
        names = set(selectors(expr))
        assert names, alert["alert"]
        assert names <= exported, f"{alert['alert']} names {names - exported}"
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]


def test_a_wrong_metric_name_would_be_caught() -> None:
    """The check above can fail: a misspelt name is not among the exported ones."""
    expr = promql_parser.parse("sum(datasync_operator_resource{status='True'}) > 0")
    assert set(selectors(expr)) - exported_names() == {"datasync_operator_resource"}
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(datasync_operator_retries_total[5m]) > 1")


def test_thresholds_come_from_values(helm: Helm) -> None:
    (rule,) = kind(rendered(helm, *ENABLED, "--set", "metrics.prometheusRule.stalledFor=42m",
                           "--set", "metrics.prometheusRule.cancelLatencySeconds=77"),
                   "PrometheusRule")
    by_name = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert by_name["DataSyncExecutionStalled"]["for"] == "42m"
    assert by_name["DataSyncCancelLatencyHigh"]["expr"].rstrip().endswith("> 77")


def test_dashboard_queries_parse_and_name_real_metrics(manifests: list[dict[str, Any]]) -> None:
    (config,) = [m for m in kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-dashboard")]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["datasync-operator.json"])
    on_disk = json.loads((CHART_DIR / "files" / "dashboards" / "datasync-operator.json").read_text())
    assert dashboard == on_disk
    exported = exported_names()
    targets = [t for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) >= 10
    for target in targets:
        names = set(selectors(promql_parser.parse(target["expr"])))
        assert names and names <= exported, f"{target['expr']} names {names - exported}"
