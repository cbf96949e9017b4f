"""Execution tracking, deletion policy, healing and metrics with the real operator process."""

from __future__ import annotations

import urllib.request

import pytest

from tests.integration.conftest import OperatorFactory, wait_condition
from tests.integration.test_cancel_scenarios import CANCEL, DESCRIBE, NAME, create, stays
from tests.support.fault_proxy import FaultProxy
from tests.support.kube_emulator import KubeEmulator
from tests.support.moto_server import MotoServer
from tests.support.objects import condition, condition_summary
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FINALIZER = "datasync.operator.io/finalizer"


def test_polling_mirrors_the_execution_and_stops_at_a_terminal_status(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator("--poll-interval", "0.2")
    create(kube, namespace, arn, desired="Running")
    obj = wait_condition(kube, NAME, namespace, "Ready", "True", "ExecutionSucceeded", process=operator)
    # moto advances one step per describe: INITIALIZING, PREPARING, TRANSFERRING, VERIFYING, SUCCESS
    assert proxy.calls(DESCRIBE) == 5
    assert obj["status"]["executionStatus"] == "SUCCESS"
    assert obj["status"]["execution"]["status"] == "SUCCESS"
    stays(lambda: proxy.calls(DESCRIBE) == 5, 1.5)  # never again once finished
    assert proxy.calls(CANCEL) == 0


def test_polling_after_cancel_reaches_the_final_status(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator("--poll-interval", "0.2")
    create(kube, namespace, arn)
    wait_for(
        lambda: kube.get(NAME, namespace=namespace).get("status", {}).get("executionStatus") == "ERROR",
        30, message=lambda: operator.log()[-2000:],
    )
    obj = kube.get(NAME, namespace=namespace)
    assert condition_summary(obj)["Cancelled"] == ("True", "CancelAccepted")
    assert proxy.calls(CANCEL) == 1
    assert proxy.calls(DESCRIBE) == 1
    stays(lambda: proxy.total_calls() == 2, 1.0)


def test_delete_with_cancel_policy_cancels_once_then_releases(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator()
    kube.create(NAME, {"executionArn": arn, "desiredState": "Running", "deletionPolicy": "Cancel"},
                namespace=namespace)
    wait_condition(kube, NAME, namespace, "Ready", "True", process=operator)
    assert FINALIZER in kube.get(NAME, namespace=namespace)["metadata"].get("finalizers", [])
    proxy.fail(CANCEL, times=2, status=500)  # the same retry policy applies on deletion
    kube.delete(NAME, namespace=namespace)
    wait_for(lambda: kube.find(NAME, namespace=namespace) is None, 30,
             message=lambda: operator.log()[-3000:])
    assert proxy.calls(CANCEL) == 3
    assert moto.client().describe_task_execution(TaskExecutionArn=arn)["Status"] == "ERROR"


def test_delete_with_orphan_policy_never_calls_aws(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator()
    create(kube, namespace, arn, desired="Running")
    obj = wait_condition(kube, NAME, namespace, "Ready", "True", process=operator)
    assert FINALIZER not in obj["metadata"].get("finalizers", [])
    kube.delete(NAME, namespace=namespace)
    wait_for(lambda: kube.find(NAME, namespace=namespace) is None, 10)
    assert proxy.calls(CANCEL) == 0


def test_delete_of_a_finished_execution_never_blocks(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    moto.finish_execution(arn)
    operator = start_operator()
    kube.create(NAME, {"executionArn": arn, "desiredState": "Running", "deletionPolicy": "Cancel"},
                namespace=namespace)
    wait_condition(kube, NAME, namespace, "Ready", "True", "ExecutionSucceeded", process=operator)
    kube.delete(NAME, namespace=namespace)
    wait_for(lambda: kube.find(NAME, namespace=namespace) is None, 30,
             message=lambda: operator.log()[-3000:])
    assert proxy.calls(CANCEL) == 0


def test_escape_hatch_releases_a_deletion_stuck_on_access_denied(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator("--stalled-recheck-interval", "0.3")
    kube.create(NAME, {"executionArn": arn, "desiredState": "Running", "deletionPolicy": "Cancel"},
                namespace=namespace)
    wait_condition(kube, NAME, namespace, "Ready", "True", process=operator)
    proxy.fail(CANCEL, times=None, status=400, code="AccessDeniedException", message="denied")
    kube.delete(NAME, namespace=namespace)
    wait_for(lambda: proxy.calls(CANCEL) >= 2, 30, message=lambda: operator.log()[-3000:])
    assert kube.find(NAME, namespace=namespace) is not None  # held by the finalizer
    kube.patch(NAME, {"metadata": {"annotations": {"datasync.operator.io/skip-cancel-on-delete": "true"}}},
               namespace=namespace)
    wait_for(lambda: kube.find(NAME, namespace=namespace) is None, 30,
             message=lambda: operator.log()[-3000:])
    assert kube.events(namespace=namespace, involved_name=NAME, reason="CancelOnDeleteSkipped")


def test_stalled_access_denied_heals_once_fixed(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.fail(CANCEL, times=2, status=400, code="AccessDeniedException", message="not authorized")
    operator = start_operator("--stalled-recheck-interval", "0.3")
    create(kube, namespace, arn)
    wait_condition(kube, NAME, namespace, "Stalled", "True", "AccessDenied", process=operator)
    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert condition_summary(obj)["Stalled"] == ("False", "Idle")
    assert proxy.calls(CANCEL) == 3  # denied, denied on the first re-check, accepted
    assert len(kube.events(namespace=namespace, involved_name=NAME, reason="AccessDenied")) == 1


def test_stalled_resource_is_re_evaluated_when_its_spec_changes(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.fail(DESCRIBE, times=1, status=400, code="AccessDeniedException", message="nope")
    operator = start_operator("--stalled-recheck-interval", "0")  # no timer: only the spec change
    create(kube, namespace, arn, desired="Running")
    wait_condition(kube, NAME, namespace, "Stalled", "True", "AccessDenied", process=operator)
    kube.patch_spec(NAME, {"desiredState": "Cancelled"}, namespace=namespace)
    wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert proxy.calls(CANCEL) == 1


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_follow_a_scripted_run(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.fail(CANCEL, times=3, status=500)
    operator = start_operator()
    assert operator.metrics_url is not None
    url = operator.metrics_url
    before = wait_for(lambda: _try_scrape(url), 20, message="metrics endpoint never answered")
    assert before.get('datasync_operator_reconciles_total{outcome="Cancelled"}', 0) == 0
    create(kube, namespace, arn)
    wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    def cancelled_counted() -> dict[str, float] | None:
        samples = scrape(url)
        cancelled = 'datasync_operator_resources{condition="Cancelled",status="True"}'
        return samples if samples.get(cancelled) == 1 else None

    after = wait_for(cancelled_counted, 10)
    assert after['datasync_operator_reconciles_total{outcome="Retrying"}'] == 3
    assert after['datasync_operator_reconciles_total{outcome="Cancelled"}'] == 1
    calls = 'datasync_operator_aws_calls_total{error_code="%s",operation="CancelTaskExecution"}'
    assert after[calls % "InternalException"] == 3
    assert after[calls % "None"] == 1
    assert after['datasync_operator_retries_total{reason="RetryingServerError"}'] == 3
    assert after["datasync_operator_cancel_latency_seconds_count"] == 1
    assert after["datasync_operator_cancel_latency_seconds_sum"] > 0
    assert after['datasync_operator_aws_call_duration_seconds_count{operation="CancelTaskExecution"}'] == 4
    assert after['datasync_operator_resources{condition="Ready",status="True"}'] == 1


def _try_scrape(url: str) -> dict[str, float] | None:
    try:
        return scrape(url)
    except OSError:
        return None


def test_unknown_status_from_aws_is_shown_not_crashed_on(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.fail(DESCRIBE, times=1, status=200, code="", extra={"Status": "HIBERNATING", "TaskExecutionArn": arn})
    operator = start_operator()
    create(kube, namespace, arn, desired="Running")
    obj = wait_condition(kube, NAME, namespace, "Ready", "Unknown", "UnknownExecutionStatus", process=operator)
    assert obj["status"]["executionStatus"] == "HIBERNATING"
    assert "HIBERNATING" in condition(obj, "Ready")["message"]
    assert operator.running


# spec.roleArn needs an access policy's grant now: tests/integration/test_tenancy.py has the
# assumed-role tests (session tags, ExternalId, AssumeRole refused, refused without a policy).


def test_rate_limit_is_shared_by_all_resources(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    count, rate, burst = 40, 10.0, 3
    arns = [moto.create_execution() for _ in range(count)]
    operator = start_operator("--aws-rate-limit", str(rate), "--aws-rate-burst", str(burst))
    for index, arn in enumerate(arns):
        kube.create(f"transfer-{index}", {"executionArn": arn, "desiredState": "Running"},
                    namespace=namespace)
    wait_for(lambda: proxy.calls(DESCRIBE) >= count, 60, message=lambda: operator.log()[-2000:])
    times = sorted(r.at for r in proxy.requests(DESCRIBE))
    # The limiter grants at most burst + rate * t calls in any t seconds. Arrival times at the
    # proxy carry thread-scheduling jitter on a loaded machine: allow one more second of calls.
    # (Without the limiter all 40 arrive within a fraction of a second.)
    busiest = max(sum(1 for t in times if start <= t < start + 2.0) for start in times)
    assert busiest <= burst + 3 * rate, busiest
    # and the limiter really was the bottleneck: 40 calls at 10/s take about 3.7 s
    assert times[-1] - times[0] >= (count - burst) / rate * 0.9, times[-1] - times[0]


def test_skip_annotation_takes_effect_on_its_own_event(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """A deletion held on AccessDenied (re-checked every 600 s) is let go as soon as the escape
    hatch is annotated, not at the next re-check."""
    arn = moto.create_execution()
    operator = start_operator("--stalled-recheck-interval", "600")
    kube.create(NAME, {"executionArn": arn, "desiredState": "Running", "deletionPolicy": "Cancel"},
                namespace=namespace)
    wait_condition(kube, NAME, namespace, "Ready", "True", process=operator)
    proxy.fail(CANCEL, times=None, status=400, code="AccessDeniedException", message="denied")
    kube.delete(NAME, namespace=namespace)
    wait_condition(kube, NAME, namespace, "Stalled", "True", "AccessDenied", process=operator)
    kube.patch(NAME, {"metadata": {"annotations": {"datasync.operator.io/skip-cancel-on-delete": "true"}}},
               namespace=namespace)
    wait_for(lambda: kube.find(NAME, namespace=namespace) is None, 10,
             message=lambda: operator.log()[-3000:])
    assert proxy.calls(CANCEL) == 1


def test_a_cancel_refused_while_the_execution_starts_keeps_the_deletion_waiting(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """DataSync refuses a cancel while the execution is QUEUED: the finalizer stays (the cancel
    can still succeed) and the deletion completes once a re-check's cancel is accepted."""
    arn = moto.create_execution()
    operator = start_operator("--stalled-recheck-interval", "1")
    kube.create(NAME, {"executionArn": arn, "desiredState": "Running", "deletionPolicy": "Cancel"},
                namespace=namespace)
    wait_condition(kube, NAME, namespace, "Ready", "True", process=operator)
    proxy.fail(CANCEL, times=2, status=400, code="InvalidRequestException",
               message="Sync task cannot be cancelled in its current status: QUEUED")
    proxy.answer(DESCRIBE, {"TaskExecutionArn": arn, "Status": "QUEUED"}, times=2)
    kube.delete(NAME, namespace=namespace)
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "InvalidRequest", process=operator)
    assert "datasync.operator.io/finalizer" in obj["metadata"]["finalizers"]  # held, not let go
    wait_for(lambda: kube.find(NAME, namespace=namespace) is None, 30,
             message=lambda: operator.log()[-3000:])
    assert proxy.calls(CANCEL) == 3  # refused twice while QUEUED, then accepted
    assert moto.describe_status(arn) == "ERROR"
