"""The real operator process against the real kube-apiserver and moto's DataSync server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.fault_proxy import FaultProxy
from tests.support.moto_server import MotoServer, free_port
from tests.support.objects import condition_summary
from tests.support.operator_process import FAST_RETRIES, OperatorProcess, aws_env
from tests.support.waiting import wait_for

CANCEL = "CancelTaskExecution"
NAME = "transfer"


@pytest.fixture
def ns(control_plane: ControlPlane) -> Iterator[str]:
    name = f"flow-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    # no namespace controller runs here: delete what the test created, not the namespace
    control_plane.kubectl("delete", "dse", "--all", "-n", name, "--wait=false", check=False)


@pytest.fixture
def operator(
    control_plane: ControlPlane, proxy: FaultProxy, ns: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(*extra: str, kubeconfig: Path | None = None) -> OperatorProcess:
        process = OperatorProcess(
            ["--namespace", ns, "--metrics-port", str(free_port()), *FAST_RETRIES, *extra],
            env={"KUBECONFIG": str(kubeconfig or control_plane.kubeconfig), **aws_env(proxy.url)},
            log_path=tmp_path / f"operator-{len(started)}.log",
        )
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


def apply(plane: ControlPlane, ns: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "datasync.operator.io/v1alpha1", "kind": "DataSyncExecution",
            "metadata": {"name": NAME}, "spec": spec}
    plane.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))


def get(plane: ControlPlane, ns: str, name: str = NAME) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        plane.kubectl("get", "dse", name, "-n", ns, "-o", "json").stdout
    )
    return found


def wait_reason(plane: ControlPlane, ns: str, type_: str, status: str, reason: str,
                process: OperatorProcess, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        assert process.running, process.log()
        obj = get(plane, ns)
        return obj if condition_summary(obj).get(type_) == (status, reason) else None

    return wait_for(check, timeout, message=lambda: f"{get(plane, ns).get('status')}\n{process.log()[-3000:]}")


def events(plane: ControlPlane, ns: str) -> list[dict[str, Any]]:
    listed = json.loads(plane.kubectl("get", "events", "-n", ns, "-o", "json").stdout)
    return [e for e in listed["items"] if e["involvedObject"].get("name") == NAME]


def test_running_then_cancelled(
    control_plane: ControlPlane, moto: MotoServer, proxy: FaultProxy, ns: str,
    operator: Callable[..., OperatorProcess],
) -> None:
    arn = moto.create_execution()
    process = operator()
    apply(control_plane, ns, {"executionArn": arn, "desiredState": "Running"})
    obj = wait_reason(control_plane, ns, "Ready", "True", "ExecutionActive", process)
    assert condition_summary(obj)["Cancelled"] == ("False", "NotRequested")
    assert obj["status"]["observedGeneration"] == 1
    assert proxy.calls(CANCEL) == 0

    apply(control_plane, ns, {"executionArn": arn, "desiredState": "Cancelled"})
    obj = wait_reason(control_plane, ns, "Cancelled", "True", "CancelAccepted", process)
    assert condition_summary(obj) == {
        "Ready": ("True", "CancelAccepted"), "Cancelled": ("True", "CancelAccepted"),
        "Reconciling": ("False", "Idle"), "Stalled": ("False", "Idle"),
    }
    assert obj["metadata"]["generation"] == 2
    assert obj["status"]["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in obj["status"]["conditions"])
    assert proxy.calls(CANCEL) == 1
    assert events(control_plane, ns) == []  # the happy path writes the status, nothing else
    # nothing of kopf's bookkeeping leaks into status (the schema would prune it anyway)
    assert set(obj["status"]) <= {
        "observedGeneration", "executionStatus", "execution", "cancelRequestedAt", "conditions"
    }
    row = control_plane.kubectl("get", "dse", NAME, "-n", ns, "--no-headers").stdout.split()
    assert row[1:2] + row[3:5] == ["Cancelled", "True", "CancelAccepted"]


def test_server_errors_are_retried_visibly_then_succeed(
    control_plane: ControlPlane, moto: MotoServer, proxy: FaultProxy, ns: str,
    operator: Callable[..., OperatorProcess],
) -> None:
    arn = moto.create_execution()
    proxy.fail(CANCEL, times=None, status=500, code="InternalException", message="boom")
    process = operator()
    apply(control_plane, ns, {"executionArn": arn, "desiredState": "Cancelled"})
    obj = wait_for(
        lambda: (o := get(control_plane, ns)).get("status", {}).get("retry", {}).get("attempts", 0) >= 2 and o,
        60, message=lambda: process.log()[-3000:],
    )
    assert obj["status"]["retry"]["lastError"] == {
        "code": "InternalException", "httpStatus": 500, "message": "boom",
        "requestId": obj["status"]["retry"]["lastError"]["requestId"],
        "operation": "CancelTaskExecution",
    }
    assert condition_summary(obj)["Reconciling"] == ("True", "RetryingServerError")
    proxy.clear_faults(CANCEL)
    obj = wait_reason(control_plane, ns, "Cancelled", "True", "CancelAccepted", process)
    assert "retry" not in obj["status"]
    warnings = [e for e in events(control_plane, ns) if e["reason"] == "RetryingServerError"]
    assert warnings and all(e["type"] == "Warning" for e in warnings)


def test_invalid_request_stalls(
    control_plane: ControlPlane, moto: MotoServer, proxy: FaultProxy, ns: str,
    operator: Callable[..., OperatorProcess],
) -> None:
    unknown = moto.create_execution()[:-4] + "dead"
    process = operator()
    apply(control_plane, ns, {"executionArn": unknown, "desiredState": "Cancelled"})
    obj = wait_reason(control_plane, ns, "Stalled", "True", "InvalidRequest", process)
    assert condition_summary(obj)["Ready"] == ("False", "InvalidRequest")
    assert proxy.calls(CANCEL) == 1
    assert "InvalidRequest" in [e["reason"] for e in events(control_plane, ns)]


def test_delete_with_cancel_policy_uses_a_finalizer(
    control_plane: ControlPlane, moto: MotoServer, proxy: FaultProxy, ns: str,
    operator: Callable[..., OperatorProcess],
) -> None:
    arn = moto.create_execution()
    process = operator()
    apply(control_plane, ns, {"executionArn": arn, "deletionPolicy": "Cancel"})
    wait_reason(control_plane, ns, "Ready", "True", "ExecutionActive", process)
    obj = wait_for(lambda: (o := get(control_plane, ns))["metadata"].get("finalizers") and o, 30)
    assert obj["metadata"]["finalizers"] == ["datasync.operator.io/finalizer"]
    control_plane.kubectl("delete", "dse", NAME, "-n", ns, "--wait=true", "--timeout=60s")
    assert proxy.calls(CANCEL) == 1
    assert moto.client().describe_task_execution(TaskExecutionArn=arn)["Status"] == "ERROR"


def test_orphan_resources_carry_no_finalizer_and_delete_without_the_operator(
    control_plane: ControlPlane, moto: MotoServer, proxy: FaultProxy, ns: str,
    operator: Callable[..., OperatorProcess],
) -> None:
    arn = moto.create_execution()
    process = operator()
    apply(control_plane, ns, {"executionArn": arn})
    obj = wait_reason(control_plane, ns, "Ready", "True", "ExecutionActive", process)
    assert not obj["metadata"].get("finalizers")
    process.stop()
    control_plane.kubectl("delete", "dse", NAME, "-n", ns, "--wait=true", "--timeout=20s")
    assert proxy.calls(CANCEL) == 0
