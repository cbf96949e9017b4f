"""The cancel flow end to end: the real operator process, kmock's Kubernetes emulator, moto's
DataSync server behind the fault proxy. Each scenario asserts the exact number of
CancelTaskExecution calls that reached AWS and the final conditions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import OperatorFactory, wait_condition
from tests.support.fault_proxy import FaultProxy
from tests.support.kube_emulator import KubeEmulator
from tests.support.moto_server import MotoServer
from tests.support.objects import condition, condition_summary
from tests.support.operator_process import FAKE_SECRET_ACCESS_KEY
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CANCEL = "CancelTaskExecution"
DESCRIBE = "DescribeTaskExecution"
NAME = "transfer"


def create(kube: KubeEmulator, namespace: str, arn: str, desired: str = "Cancelled") -> None:
    kube.create(NAME, {"executionArn": arn, "desiredState": desired}, namespace=namespace)


def assert_cancelled(obj: dict[str, Any], reason: str) -> None:
    assert condition_summary(obj) == {
        "Ready": ("True", reason),
        "Cancelled": ("True", reason),
        "Reconciling": ("False", "Idle"),
        "Stalled": ("False", "Idle"),
    }
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert "retry" not in obj["status"]


def stays(predicate: Any, seconds: float) -> None:
    """Assert that ``predicate`` holds for a whole observation window (absence of activity)."""
    with pytest.raises(AssertionError):
        wait_for(lambda: not predicate(), seconds, message="")


def event_reasons(kube: KubeEmulator, namespace: str) -> list[str]:
    """The reasons of the object's Events, once there are any (they are posted after status)."""

    def posted() -> list[str] | None:
        events = kube.events(namespace=namespace, involved_name=NAME)
        return sorted(e["reason"] for e in events) or None

    return wait_for(posted, 10, message="no Event was posted")


def test_no_fault_one_call_cancelled(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator()
    create(kube, namespace, arn)
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert_cancelled(obj, "CancelAccepted")
    assert obj["status"]["cancelRequestedAt"]
    assert proxy.calls(CANCEL) == 1
    assert proxy.calls(DESCRIBE) == 0
    assert moto.describe_status(arn) == "ERROR"  # moto's word for a cancelled execution
    assert kube.events(namespace=namespace, involved_name=NAME) == []  # the status says it all
    stays(lambda: proxy.calls(CANCEL) == 1, 1.0)


TRANSIENT_THEN_SUCCESS = {
    # fault injected before the first call -> (calls, reason of each retry, what its Event names)
    "three 500s": (lambda p: p.fail(CANCEL, times=3, status=500, code="InternalException"),
                   4, "RetryingServerError", "InternalException (HTTP 500)"),
    "two throttles": (lambda p: p.throttle(CANCEL, times=2),
                      3, "Throttled", "ThrottlingException (HTTP 400)"),
    "connection reset": (lambda p: p.reset_connection(CANCEL, times=1),
                         2, "RetryingNetworkError", "ConnectionClosedError"),
}


@pytest.mark.parametrize(
    ("inject", "calls", "reason", "named"), TRANSIENT_THEN_SUCCESS.values(),
    ids=TRANSIENT_THEN_SUCCESS.keys(),
)
def test_transient_failures_are_retried_then_cancelled(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
    inject: Callable[[FaultProxy], None], calls: int, reason: str, named: str,
) -> None:
    arn = moto.create_execution()
    inject(proxy)
    operator = start_operator()
    create(kube, namespace, arn)
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert_cancelled(obj, "CancelAccepted")
    assert proxy.calls(CANCEL) == calls
    assert condition(obj, "Cancelled")["message"].endswith(f"on attempt {calls}")
    # Retries of one reason coalesce into one Warning Event whose count says how many there were
    # (client-go's EventCorrelator), carrying the latest retry's message.
    retries = wait_for(
        lambda: kube.events(namespace=namespace, involved_name=NAME, reason=reason) or None, 10
    )
    assert len(retries) == 1
    assert retries[0]["type"] == "Warning"
    assert retries[0]["count"] == calls - 1
    assert named in retries[0]["message"]
    assert f"retry {calls - 1} in" in retries[0]["message"]


def test_retry_is_visible_in_status_while_it_lasts(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.fail(CANCEL, times=None, status=503, code="ServiceUnavailable", message="try later")
    operator = start_operator()
    create(kube, namespace, arn)
    obj = wait_for(
        lambda: (o := kube.get(NAME, namespace=namespace)).get("status", {}).get("retry", {})
        .get("attempts", 0) >= 2 and o,
        30, message=lambda: operator.log()[-2000:],
    )
    retry = obj["status"]["retry"]
    assert retry["lastError"]["code"] == "ServiceUnavailable"
    assert retry["lastError"]["httpStatus"] == 503
    assert retry["lastError"]["message"] == "try later"
    assert retry["lastError"]["requestId"]
    assert retry["nextAttemptTime"].endswith("Z")
    assert condition_summary(obj)["Reconciling"] == ("True", "RetryingServerError")
    assert condition_summary(obj)["Ready"] == ("False", "RetryingServerError")
    proxy.clear_faults(CANCEL)
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert_cancelled(obj, "CancelAccepted")


def test_read_timeout_is_retried(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.delay(CANCEL, seconds=3.0, times=1)  # moto cancels late; the operator times out first
    operator = start_operator("--aws-read-timeout", "0.5")
    create(kube, namespace, arn)
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    # The delayed first call took effect in moto after the operator gave up on it, so the retry
    # finds the execution already cancelled: a truthful Cancelled=True with no second cancel.
    assert condition_summary(obj)["Cancelled"][0] == "True"
    assert proxy.calls(CANCEL) == 2
    assert kube.events(namespace=namespace, involved_name=NAME, reason="RetryingNetworkError")


def test_unknown_execution_one_call_stalled(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    real = moto.create_execution()
    unknown = real[: -len("00000000000000000")] + "0000000000000abcd"
    operator = start_operator()
    create(kube, namespace, unknown)
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "InvalidRequest", process=operator)
    assert condition_summary(obj)["Ready"] == ("False", "InvalidRequest")
    assert condition_summary(obj)["Cancelled"] == ("False", "InvalidRequest")
    assert "is not found" in condition(obj, "Stalled")["message"]
    assert proxy.calls(CANCEL) == 1
    assert proxy.calls(DESCRIBE) == 1
    assert kube.events(namespace=namespace, involved_name=NAME, reason="InvalidRequest")
    stays(lambda: proxy.calls(CANCEL) == 1, 1.0)


def test_already_finished_stalls_already_finished(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    assert moto.finish_execution(arn) == "SUCCESS"
    operator = start_operator()
    create(kube, namespace, arn)
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "AlreadyFinished", process=operator)
    assert condition_summary(obj)["Ready"] == ("False", "AlreadyFinished")
    assert obj["status"]["executionStatus"] == "SUCCESS"
    assert proxy.calls(CANCEL) == 1
    stays(lambda: proxy.calls(CANCEL) == 1, 1.0)


def test_already_cancelled_by_someone_else(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    moto.cancel_execution(arn)
    operator = start_operator()
    create(kube, namespace, arn)
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert_cancelled(obj, "AlreadyCancelled")
    assert proxy.calls(CANCEL) == 1
    assert event_reasons(kube, namespace) == ["AlreadyCancelled"]


def test_restart_after_cancel_accepted_before_status_written(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.forward_then_hang(CANCEL)  # moto cancels; the operator never hears back
    first = start_operator()
    create(kube, namespace, arn)
    wait_for(lambda: proxy.held(CANCEL) == 1, 30, message=lambda: first.log()[-2000:])
    first.kill()  # crash before any status was written
    assert "conditions" not in (kube.get(NAME, namespace=namespace).get("status") or {})
    assert moto.client().describe_task_execution(TaskExecutionArn=arn)["Status"] == "ERROR"

    second = start_operator()
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=second)
    assert_cancelled(obj, "AlreadyCancelled")
    assert proxy.calls(CANCEL) == 2  # the lost one, and one after the restart
    # no hot loop: the operator stays quiet, neither AWS nor the object keeps changing
    version = kube.get(NAME, namespace=namespace)["metadata"]["resourceVersion"]
    total = proxy.total_calls()
    stays(
        lambda: proxy.total_calls() == total
        and kube.get(NAME, namespace=namespace)["metadata"]["resourceVersion"] == version,
        2.0,
    )


def test_running_never_cancels_and_reports_truthfully(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator()
    create(kube, namespace, arn, desired="Running")
    obj = wait_condition(kube, NAME, namespace, "Ready", "True", "ExecutionActive", process=operator)
    assert condition_summary(obj)["Cancelled"] == ("False", "NotRequested")
    assert condition_summary(obj)["Stalled"] == ("False", "Idle")
    assert obj["status"]["executionStatus"] == "INITIALIZING"
    assert proxy.calls(CANCEL) == 0

    kube.patch_spec(NAME, {"desiredState": "Cancelled"}, namespace=namespace)
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert_cancelled(obj, "CancelAccepted")
    assert obj["status"]["observedGeneration"] == 2
    assert proxy.calls(CANCEL) == 1


def test_malformed_arn_that_slipped_past_the_schema(
    kube: KubeEmulator, proxy: FaultProxy, namespace: str, start_operator: OperatorFactory,
) -> None:
    operator = start_operator()
    create(kube, namespace, "arn:aws:datasync:us-east-1:123:task/nope")
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "InvalidSpec", process=operator)
    assert "spec.executionArn" in condition(obj, "Stalled")["message"]
    assert proxy.total_calls() == 0
    assert operator.running


def test_access_denied_stalls(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.fail(CANCEL, times=1, status=400, code="AccessDeniedException",
               message="User is not authorized to perform datasync:CancelTaskExecution")
    operator = start_operator()
    create(kube, namespace, arn)
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "AccessDenied", process=operator)
    assert "not authorized" in condition(obj, "Stalled")["message"]
    assert proxy.calls(CANCEL) == 1
    assert FAKE_SECRET_ACCESS_KEY not in operator.log()


def test_happy_path_costs_one_call_and_one_write_to_the_object(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator()
    create(kube, namespace, arn)
    wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    stays(lambda: proxy.calls(CANCEL) == 1, 1.0)  # and let any trailing write land
    requests = list(kube.handler)
    assert requests, "the emulator recorded no requests"
    writes = [
        (r.method.value.upper(), r.url.path)
        for r in requests
        if r.method.value.upper() in {"POST", "PUT", "PATCH", "DELETE"}
    ]
    on_object = [w for w in writes if f"/datasyncexecutions/{NAME}" in w[1]]
    events = [w for w in writes if w[1].endswith("/events")]
    # One status PATCH (guarded by resourceVersion); kopf writes nothing (no annotations).
    assert on_object == [("PATCH", f"/apis/datasync.operator.io/v1alpha1/namespaces/{namespace}/datasyncexecutions/{NAME}/status")], writes
    assert events == [], writes  # no Event on the happy path: one write in all
    assert proxy.total_calls() == 1
