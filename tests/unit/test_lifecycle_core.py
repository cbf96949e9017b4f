"""Pure parts of execution tracking, deletion, roles, rate limiting, metrics and log enrichment."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from datasync_operator.arn import RoleArnError, parse_role_arn
from datasync_operator.datasync import describe_answer, role_session_name
from datasync_operator.errors import AwsError, ErrorKind
from datasync_operator.execution import Description
from datasync_operator.logs import ArnDirectory
from datasync_operator.metrics import Metrics
from datasync_operator.ratelimit import RegionalRateLimiter, TokenBucket
from datasync_operator.reconcile import (
    Action,
    CallFailed,
    CancelAccepted,
    CancelRejected,
    Described,
    NoCall,
    Policy,
    Resource,
    Wake,
    conclude,
    plan,
)

ARN = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-0123456789abcdef1"
ROLE = "arn:aws:iam::444455556666:role/team/datasync-canceller"
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
POLICY = Policy()


def resource(
    desired: str = "Running",
    status: dict[str, Any] | None = None,
    *,
    deleting: bool = False,
    finalized: bool = False,
    skip: bool = False,
    **spec: Any,
) -> Resource:
    metadata: dict[str, Any] = {"name": "n", "namespace": "ns", "generation": 1}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-29T12:00:00Z"
    if finalized:
        metadata["finalizers"] = ["example.com/other", "datasync.operator.io/finalizer"]
    if skip:
        metadata["annotations"] = {"datasync.operator.io/skip-cancel-on-delete": "true"}
    return Resource.from_body({
        "metadata": metadata,
        "spec": {"executionArn": ARN, "desiredState": desired, **spec},
        "status": status or {},
    })


def decide(res: Resource, outcome: Any) -> Any:
    return conclude(res, outcome, now=NOW, policy=POLICY, rng=random.Random(1))


# --- execution tracking --------------------------------------------------------------------


def test_describe_answer_mirrors_what_aws_reports() -> None:
    description = describe_answer({
        "Status": "TRANSFERRING",
        "StartTime": datetime(2026, 11, 29, 11, 0, 5, tzinfo=UTC),
        "EstimatedFilesToTransfer": 10, "FilesTransferred": 4, "BytesTransferred": 4096,
        "BytesWritten": 4000, "EstimatedBytesToTransfer": 10240,
        "Result": {"PrepareStatus": "SUCCESS", "TransferStatus": "PENDING"},
    })
    assert description.as_status() == {
        "status": "TRANSFERRING", "startTime": "2026-11-29T11:00:05Z",
        "estimatedFilesToTransfer": 10, "estimatedBytesToTransfer": 10240,
        "filesTransferred": 4, "bytesTransferred": 4096, "bytesWritten": 4000,
        "result": {"prepareStatus": "SUCCESS", "transferStatus": "PENDING"},
    }


def test_describe_answer_tolerates_missing_and_odd_fields() -> None:
    description = describe_answer({"FilesTransferred": True, "Result": None})
    assert description.status == "UNKNOWN"
    assert description.as_status() == {"status": "UNKNOWN"}


def test_polls_until_finished() -> None:
    observed = decide(resource(), Described(Description("TRANSFERRING"))).status
    assert plan(resource(status=observed), due=True).action is Action.DESCRIBE
    for final in ("SUCCESS", "ERROR"):
        done = decide(resource(), Described(Description(final)))
        assert done.wake is Wake.NEVER
        assert plan(resource(status=done.status), due=True).action is Action.NOTHING


def test_a_poll_never_runs_ahead_of_a_pending_retry_or_stall() -> None:
    retrying = decide(resource("Cancelled"), CallFailed(AwsError(ErrorKind.SERVER, "InternalException", "x", 500)))
    assert plan(resource("Cancelled", retrying.status)).action is Action.NOTHING
    denied = decide(resource(), CallFailed(AwsError(ErrorKind.ACCESS_DENIED, "AccessDenied", "x", 403)))
    assert plan(resource(status=denied.status)).action is Action.NOTHING


def test_refresh_of_a_cancelled_execution_keeps_the_verdict() -> None:
    cancelled = decide(resource("Cancelled"), CancelAccepted()).status
    assert plan(resource("Cancelled", cancelled)).action is Action.NOTHING
    assert plan(resource("Cancelled", cancelled), due=True).action is Action.DESCRIBE
    refreshed = decide(resource("Cancelled", cancelled), Described(Description("ERROR")))
    assert refreshed.status["executionStatus"] == "ERROR"
    assert refreshed.status["conditions"] == cancelled["conditions"]
    assert refreshed.events == ()
    assert refreshed.wake is Wake.NEVER
    settled = resource("Cancelled", {**cancelled, **refreshed.status})
    assert plan(settled, due=True).action is Action.NOTHING


# --- deletion ----------------------------------------------------------------------------------


def test_the_finalizer_is_wanted_for_deletion_policy_cancel_only() -> None:
    observed = Described(Description("TRANSFERRING"))
    assert decide(resource(deletionPolicy="Cancel"), observed).finalizer is True
    assert decide(resource(), observed).finalizer is False
    assert decide(resource(deletionPolicy="Orphan", finalized=True), observed).finalizer is False


def test_deletion_plans() -> None:
    def deleting(*args: Any, **kwargs: Any) -> Action:
        return plan(resource(*args, deleting=True, **kwargs)).action

    assert deleting(deletionPolicy="Cancel", finalized=True) is Action.CANCEL
    assert deleting(deletionPolicy="Cancel") is Action.NOTHING  # not ours to hold
    assert deleting(finalized=True) is Action.NOTHING  # Orphan by default
    assert deleting(deletionPolicy="Cancel", finalized=True, skip=True) is Action.NOTHING
    finished = {"executionStatus": "SUCCESS"}
    assert deleting(status=finished, deletionPolicy="Cancel", finalized=True) is Action.NOTHING
    cancelled = decide(resource("Cancelled"), CancelAccepted()).status
    assert deleting("Cancelled", cancelled, deletionPolicy="Cancel", finalized=True) is (
        Action.NOTHING
    )


INVALID = AwsError(ErrorKind.INVALID_REQUEST, "InvalidRequestException", "x", 400)


@pytest.mark.parametrize(
    ("outcome", "holds"),
    [
        (CancelAccepted(), False),
        (CancelRejected(INVALID, Description("SUCCESS")), False),
        (CancelRejected(INVALID, Description("ERROR")), False),
        (CancelRejected(INVALID, Description("CANCELLING")), False),
        (CancelRejected(INVALID, describe_error=AwsError(
            ErrorKind.INVALID_REQUEST, "InvalidRequestException", "Sync task arn:x is not found.", 400)), False),
        # refused while the execution can still run: the cancel may still succeed, hold on
        (CancelRejected(INVALID, Description("QUEUED")), True),
        (CancelRejected(INVALID, Description("LAUNCHING")), True),
        (CancelRejected(INVALID, describe_error=AwsError(
            ErrorKind.INVALID_REQUEST, "InvalidRequestException", "some other refusal", 400)), True),
        (CancelRejected(INVALID, describe_error=AwsError(ErrorKind.REJECTED, "ValidationException", "x", 400)), True),
        (CallFailed(AwsError(ErrorKind.SERVER, "InternalException", "x", 500)), True),
        (CallFailed(AwsError(ErrorKind.NETWORK, "ConnectionClosedError", "x")), True),
        (CallFailed(AwsError(ErrorKind.ACCESS_DENIED, "AccessDenied", "x", 403)), True),
    ],
)
def test_deletion_is_held_only_while_a_cancel_can_still_succeed(outcome: Any, holds: bool) -> None:
    decision = decide(resource("Running", deletionPolicy="Cancel", deleting=True, finalized=True), outcome)
    assert decision.finalizer is holds
    assert decision.write_status is holds  # a held deletion says why in status
    if holds:
        assert decision.wake in (Wake.RETRY, Wake.RECHECK)
        assert decision.after is not None and decision.after > 0
    else:
        assert decision.wake is Wake.NEVER


def test_skip_annotation_releases_at_once_with_a_warning() -> None:
    decision = decide(
        resource(deletionPolicy="Cancel", deleting=True, finalized=True, skip=True), NoCall()
    )
    assert decision.finalizer is False
    assert [e.reason for e in decision.events] == ["CancelOnDeleteSkipped"]


def test_a_waiting_deletion_keeps_its_finalizer_until_the_retry_is_due() -> None:
    failed = decide(resource(deletionPolicy="Cancel", deleting=True, finalized=True),
                    CallFailed(AwsError(ErrorKind.SERVER, "InternalException", "x", 500)))
    waiting = resource(status=failed.status, deletionPolicy="Cancel", deleting=True, finalized=True)
    assert plan(waiting).action is Action.NOTHING
    assert plan(waiting, due=True).action is Action.CANCEL
    decision = decide(waiting, NoCall())
    assert (decision.finalizer, decision.wake) == (True, Wake.RETRY)


def test_invalid_deletion_policy_is_an_invalid_spec() -> None:
    step = plan(resource(deletionPolicy="Destroy"))
    assert step.invalid_spec == "spec.deletionPolicy must be one of Orphan, Cancel, got 'Destroy'"


# --- roles ---------------------------------------------------------------------------------------


def test_role_arn_is_parsed_and_planned() -> None:
    assert parse_role_arn(ROLE) == ROLE
    assert plan(resource("Cancelled", roleArn=ROLE)).role_arn == ROLE
    assert plan(resource("Cancelled")).role_arn is None


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:iam::12345:role/x",
        "arn:aws:iam::444455556666:user/x",
        "arn:aws:sts::444455556666:assumed-role/x/y",
        "arn:aws-mars:iam::444455556666:role/x",
        "arn:aws:iam::444455556666:role/",
        42,
    ],
)
def test_bad_role_arns_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(RoleArnError, match=r"spec\.roleArn"):
        parse_role_arn(value)
    step = plan(resource("Cancelled", roleArn=value))
    assert step.action is Action.NOTHING
    assert step.invalid_spec is not None and "spec.roleArn" in step.invalid_spec


def test_role_session_name_identifies_the_namespace_within_sts_rules() -> None:
    # Credentials are shared per (role, namespace): the session names the namespace (the
    # session tag carries it too, for trust policies), not one resource of it.
    assert role_session_name("data") == "dse@data"
    assert len(role_session_name("n" * 63)) == 64  # STS allows 64; the tag has it whole
    assert role_session_name("a:b/c") == "dse@a-b-c"


# --- rate limiting ------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=5.0, burst=2)
    assert [bucket.reserve(0.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(0.2)
    assert bucket.reserve(0.0) == pytest.approx(0.4)  # queued behind the previous caller


def test_token_bucket_long_run_rate_never_exceeds_the_limit() -> None:
    bucket = TokenBucket(rate=10.0, burst=5)
    times = [bucket.reserve(0.0) for _ in range(1005)]
    assert max(times) == pytest.approx(100.0)  # 1000 calls beyond the burst at 10/s


def test_token_bucket_refills_but_not_beyond_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=3)
    for _ in range(3):
        bucket.reserve(0.0)
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) > 0


@pytest.mark.parametrize(("rate", "burst", "words"), [(0, 1, "rate"), (1, 0.5, "burst")])
def test_rate_limiter_rejects_bad_settings(rate: float, burst: float, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RegionalRateLimiter(rate, burst)


def test_regional_limiter_keeps_regions_apart() -> None:
    now = [0.0]
    limiter = RegionalRateLimiter(rate=10.0, burst=1, clock=lambda: now[0])
    assert limiter.reserve("us-east-1") == 0.0
    assert limiter.reserve("eu-west-1") == 0.0
    assert limiter.reserve("us-east-1") == pytest.approx(0.1)
    now[0] = 10.0
    assert limiter.reserve("us-east-1") == 0.0


def test_regional_limiter_is_safe_across_threads() -> None:
    import threading

    limiter = RegionalRateLimiter(rate=100.0, burst=1, clock=lambda: 0.0)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            wait = limiter.reserve("us-east-1")
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 200 reservations at one instant: each slot handed out exactly once, 10 ms apart
    assert sorted(round(w, 6) for w in waits) == [round(i / 100, 6) for i in range(200)]


# --- metrics and log enrichment -----------------------------------------------------------------


def test_condition_gauge_counts_what_the_controller_reports() -> None:
    metrics = Metrics()
    metrics.conditions.attach(lambda: iter([("Ready", "True", 2), ("Stalled", "True", 1)]))
    value = metrics.registry.get_sample_value
    assert value("datasync_operator_resources", {"condition": "Ready", "status": "True"}) == 2
    assert value("datasync_operator_resources", {"condition": "Stalled", "status": "True"}) == 1


def test_arn_directory_stamps_records_of_known_resources_only() -> None:
    directory = ArnDirectory()
    directory.attach(lambda namespace, name: ARN if (namespace, name) == ("ns", "known") else None)

    def record(ref: dict[str, str] | None) -> logging.LogRecord:
        made = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "m", None, None)
        if ref is not None:
            made.k8s_ref = ref
        directory.filter(made)
        return made

    assert getattr(record({"namespace": "ns", "name": "known"}), "executionArn", None) == ARN
    assert not hasattr(record({"namespace": "ns", "name": "other"}), "executionArn")
    assert not hasattr(record(None), "executionArn")
