"""The work-queue core on the real kube-apiserver: a cancel never waits behind polling, and an
API server that goes away in the middle of a retry sequence loses nothing."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from benchmarks.datasync_standin import StandIn
from tests.support.controlplane import ControlPlane, find_binaries
from tests.support.fault_proxy import FaultProxy
from tests.support.moto_server import MotoServer, free_port
from tests.support.objects import condition_summary
from tests.support.operator_process import OperatorProcess, aws_env
from tests.support.waiting import wait_for

CANCEL = "CancelTaskExecution"
DESCRIBE = "DescribeTaskExecution"
CRD = Path(__file__).resolve().parents[2] / "crds" / "datasyncexecution.yaml"
EXEC = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-{:017x}"


def body(name: str, arn: str, desired: str) -> dict[str, Any]:
    return {
        "apiVersion": "datasync.operator.io/v1alpha1",
        "kind": "DataSyncExecution",
        "metadata": {"name": name},
        "spec": {"executionArn": arn, "desiredState": desired},
    }


def apply(plane: ControlPlane, ns: str, *items: dict[str, Any]) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": list(items)}
    plane.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(listed))


def get(plane: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(plane.kubectl("get", "dse", name, "-n", ns, "-o", "json").stdout)
    return found


def cancelled(plane: ControlPlane, ns: str, name: str) -> bool:
    return condition_summary(get(plane, ns, name)).get("Cancelled", ("", ""))[0] == "True"


@pytest.fixture
def ns(control_plane: ControlPlane) -> Iterator[str]:
    name = f"wq-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "dse", "--all", "-n", name, "--wait=false", check=False)


def settle(plane: ControlPlane, ns: str, names: list[str]) -> None:
    """Write each object's status as the operator would after observing it TRANSFERRING."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def conditions(**reasons: tuple[str, str]) -> list[dict[str, Any]]:
        return [{"type": t, "status": s, "reason": r, "message": "-", "lastTransitionTime": now,
                 "observedGeneration": 1} for t, (s, r) in reasons.items()]

    status = {"status": {
        "observedGeneration": 1,
        "executionStatus": "TRANSFERRING",
        "conditions": conditions(Ready=("True", "ExecutionActive"),
                                 Cancelled=("False", "NotRequested"),
                                 Reconciling=("False", "Idle"), Stalled=("False", "Idle")),
    }}
    path = f"/apis/datasync.operator.io/v1alpha1/namespaces/{ns}/datasyncexecutions/{{}}/status"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: plane.api_request("PATCH", path.format(name), status), names))


def test_a_cancel_overtakes_a_thousand_queued_polls(
    control_plane: ControlPlane, ns: str, tmp_path: Path
) -> None:
    """1,000 Running executions are due for a poll every 2 s at the default 5 calls/s (polling
    gets half: a standing queue of about 1,000 polls); new Cancelled objects are still cancelled
    about as fast as on an idle operator (the old core made them wait ~55 s behind 300)."""
    running = 1000
    names = [f"r{n}" for n in range(running)]
    for chunk in range(0, running, 250):
        apply(control_plane, ns, *(body(name, EXEC.format(n), "Running")
                                   for n, name in enumerate(names[chunk:chunk + 250], chunk)))
    settle(control_plane, ns, names)  # observed already: the operator starts by polling them
    with StandIn(free_port(), rtt=0.02) as standin:
        operator = OperatorProcess(
            ["--namespace", ns, "--metrics-port", str(free_port()), "--poll-interval", "2",
             "--log-level", "WARNING"],
            env={"KUBECONFIG": str(control_plane.kubeconfig), **aws_env(standin.url)},
            log_path=tmp_path / "operator.log",
        ).start()
        try:
            def latency(name: str, n: int) -> float:
                started = time.monotonic()
                apply(control_plane, ns, body(name, EXEC.format(n), "Cancelled"))
                wait_for(lambda: cancelled(control_plane, ns, name), 60, interval=0.02,
                         message=lambda: operator.log()[-2000:])
                return time.monotonic() - started

            # the polls have started and are paced: a standing queue, not a burst
            wait_for(lambda: standin.calls(DESCRIBE) >= 20, 60, interval=0.2,
                     message=lambda: f"{standin.counts()}\n{operator.log()[-2000:]}")
            busy = statistics.median(latency(f"busy-{n}", 200_000 + n) for n in range(5))
            polled = standin.calls(DESCRIBE)
            idle_ns = f"{ns}-idle"
            control_plane.kubectl("create", "namespace", idle_ns)
        finally:
            operator.stop()
        idle_operator = OperatorProcess(
            ["--namespace", idle_ns, "--metrics-port", str(free_port()), "--log-level", "WARNING"],
            env={"KUBECONFIG": str(control_plane.kubeconfig), **aws_env(standin.url)},
            log_path=tmp_path / "idle-operator.log",
        ).start()
        try:
            def idle_latency(name: str, n: int) -> float:
                started = time.monotonic()
                apply(control_plane, idle_ns, body(name, EXEC.format(n), "Cancelled"))
                wait_for(lambda: cancelled(control_plane, idle_ns, name), 60, interval=0.02,
                         message=lambda: idle_operator.log()[-2000:])
                return time.monotonic() - started

            idle = statistics.median(idle_latency(f"idle-{n}", 100_000 + n) for n in range(5))
        finally:
            idle_operator.stop()
        assert standin.counts()["calls"].get(CANCEL) == 10
    assert polled < running  # the polls were still queued when the cancels overtook them
    slot = 1 / 5.0  # one slot of the default rate limit
    print(f"cancel latency p50: idle {idle * 1000:.0f} ms, behind 1,000 polls {busy * 1000:.0f} ms")
    # The target, 2x idle + one slot, is measured by `make bench` on a quiet machine; here, on
    # a shared CI machine where kubectl's start-up (~100 ms a call) is in both figures, a second
    # of margin still fails the old core (55 s behind 300 polls) by far.
    assert busy <= 2 * idle + slot + 1.0, (idle, busy)


def test_api_server_away_for_a_minute_in_a_retry_sequence(
    moto: MotoServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """kube-apiserver stops while a cancel is being retried and stays away 60 s; DataSync
    accepts the cancel meanwhile. When the API server is back the status is written, and the
    accepted cancel is never repeated."""
    plane = ControlPlane(bin_dir=find_binaries())
    plane.start()
    try:
        plane.apply_crd(CRD)
        plane.kubectl("create", "namespace", "outage")
        arn = moto.create_execution()
        proxy.fail(CANCEL, times=2, status=500, code="InternalException")
        operator = OperatorProcess(
            ["--namespace", "outage", "--metrics-port", str(free_port()),
             "--retry-base-delay", "4", "--retry-max-delay", "8"],
            env={"KUBECONFIG": str(plane.kubeconfig), **aws_env(proxy.url)},
            log_path=tmp_path / "operator.log",
        ).start()
        try:
            apply(plane, "outage", body("transfer", arn, "Cancelled"))

            def retrying() -> bool:
                return condition_summary(get(plane, "outage", "transfer")).get("Reconciling") == (
                    "True", "RetryingServerError")

            wait_for(retrying, 60, message=lambda: operator.log()[-2000:])
            plane.stop_apiserver()
            # the retries go on without the API server: the third call is accepted
            wait_for(lambda: proxy.calls(CANCEL) == 3, 60, message=lambda: operator.log()[-3000:])
            away_until = time.monotonic() + 60
            while time.monotonic() < away_until:  # the outage itself is the scenario
                assert operator.running, operator.log()[-3000:]
                time.sleep(1)
            plane.start_apiserver()
            wait_for(lambda: cancelled(plane, "outage", "transfer"), 90, interval=0.5,
                     message=lambda: operator.log()[-3000:])
            obj = get(plane, "outage", "transfer")
            assert condition_summary(obj)["Cancelled"] == ("True", "CancelAccepted")
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
            assert "retry" not in obj["status"]
            time.sleep(1)
            assert proxy.calls(CANCEL) == 3  # two refused, one accepted: never repeated
            assert moto.describe_status(arn) == "ERROR"
        finally:
            operator.stop()
        assert "Traceback" not in operator.log()
    finally:
        plane.stop()
