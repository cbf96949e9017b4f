"""The textbook kopf DataSyncExecution operator, as kopf's documentation teaches it (a peer).

One sync handler for create, update and resume calls boto3 (one client per region, kopf runs
sync handlers in its thread pool) and sets the conditions through ``patch.status``; one
``@kopf.timer`` (every ``BENCH_POLL_INTERVAL`` seconds, default 60) describes ``Running``
executions and patches ``status.executionStatus`` when it changed. Everything else is kopf's
default (its finalizer for the timer, its last-handled-configuration annotation, its retries)::

    kopf run --standalone -n NS benchmarks/peers/textbook_kopf.py
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from typing import Any

import boto3
import kopf

GROUP, VERSION, PLURAL = "datasync.operator.io", "v1alpha1", "datasyncexecutions"
POLL_INTERVAL = float(os.environ.get("BENCH_POLL_INTERVAL", "60"))

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def datasync(arn: str) -> Any:
    """One boto3 client per region (boto3 clients are thread-safe, their creation is not)."""
    region = arn.split(":")[3]
    with _clients_lock:
        if region not in _clients:
            _clients[region] = boto3.client("datasync", region_name=region)
        return _clients[region]


def is_cancelled(status: kopf.Status) -> bool:
    return any(
        c.get("type") == "Cancelled" and c.get("status") == "True"
        for c in status.get("conditions", [])
    )


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def reconcile(
    spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    if spec.get("desiredState") != "Cancelled" or is_cancelled(status):
        return
    arn = spec["executionArn"]
    datasync(arn).cancel_task_execution(TaskExecutionArn=arn)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch.status["conditions"] = [
        {
            "type": kind,
            "status": "True",
            "reason": "CancelAccepted",
            "message": "DataSync accepted CancelTaskExecution",
            "lastTransitionTime": stamp,
            "observedGeneration": meta.get("generation"),
        }
        for kind in ("Ready", "Cancelled")
    ]
    patch.status["observedGeneration"] = meta.get("generation")


def running(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("desiredState", "Running") == "Running")


@kopf.timer(GROUP, VERSION, PLURAL, interval=POLL_INTERVAL, when=running)
def refresh(
    spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    arn = spec["executionArn"]
    described = datasync(arn).describe_task_execution(TaskExecutionArn=arn)
    if described["Status"] != status.get("executionStatus"):
        patch.status["executionStatus"] = described["Status"]
        patch.status["observedGeneration"] = meta.get("generation")
