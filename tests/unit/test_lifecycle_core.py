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
    Policy,
    Resource,
    conclude,
    deletion_retry_delay,
    plan,
    plan_deletion,
    plan_refresh,
)

ARN = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-0123456789abcdef1"
ROLE = "arn:aws:iam::444455556666:role/team/datasync-canceller"
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
POLICY = Policy()


def resource(desired: str = "Running", status: dict[str, Any] | None = None, **spec: Any) -> Resource:
    return Resource.from_body({
        "metadata": {"name": "n", "namespace": "ns", "generation": 1},
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


def test_refresh_plans_until_finished() -> None:
    observed = decide(resource(), Described(Description("TRANSFERRING"))).status
    assert plan_refresh(resource(status=observed)).action is Action.DESCRIBE
    for final in ("SUCCESS", "ERROR"):
        done = decide(resource(), Described(Description(final))).status
        assert plan_refresh(resource(status=done)).action is Action.NOTHING


def test_refresh_leaves_the_first_look_to_the_reconcile_handler() -> None:
    assert plan_refresh(resource()).action is Action.NOTHING
    assert plan_refresh(resource(status={"executionStatus": "TRANSFERRING"})).action is (
        Action.NOTHING
    )


def test_refresh_leaves_retrying_stalled_and_pending_cancels_alone() -> None:
    retrying = decide(resource("Cancelled"), CallFailed(AwsError(ErrorKind.SERVER, "InternalException", "x", 500)))
    assert plan_refresh(resource("Cancelled", retrying.status)).action is Action.NOTHING
    denied = decide(resource(), CallFailed(AwsError(ErrorKind.ACCESS_DENIED, "AccessDenied", "x", 403)))
    assert plan_refresh(resource(status=denied.status)).action is Action.NOTHING
    assert plan_refresh(resource("Cancelled")).action is Action.NOTHING


def test_refresh_of_a_cancelled_execution_keeps_the_verdict() -> None:
    cancelled = decide(resource("Cancelled"), CancelAccepted()).status
    assert plan_refresh(resource("Cancelled", cancelled)).action is Action.DESCRIBE
    refreshed = decide(resource("Cancelled", cancelled), Described(Description("ERROR")))
    assert refreshed.status["executionStatus"] == "ERROR"
    assert refreshed.status["conditions"] == cancelled["conditions"]
    assert refreshed.events == ()
    assert plan_refresh(resource("Cancelled", {**cancelled, **refreshed.status})).action is Action.NOTHING


# --- deletion ----------------------------------------------------------------------------------


def test_deletion_plans() -> None:
    assert plan_deletion(resource(deletionPolicy="Cancel")).action is Action.CANCEL
    assert plan_deletion(resource()).action is Action.NOTHING  # Orphan by default
    assert plan_deletion(resource(deletionPolicy="Orphan")).action is Action.NOTHING
    finished = {"executionStatus": "SUCCESS"}
    assert plan_deletion(resource(status=finished, deletionPolicy="Cancel")).action is Action.NOTHING
    cancelled = decide(resource("Cancelled"), CancelAccepted()).status
    assert plan_deletion(resource("Cancelled", cancelled, deletionPolicy="Cancel")).action is (
        Action.NOTHING
    )


@pytest.mark.parametrize(
    ("outcome", "blocks"),
    [
        (CancelAccepted(), False),
        (CancelRejected(AwsError(ErrorKind.INVALID_REQUEST, "InvalidRequestException", "x", 400),
                        Description("SUCCESS")), False),
        (CancelRejected(AwsError(ErrorKind.INVALID_REQUEST, "InvalidRequestException", "gone", 400),
                        describe_error=AwsError(ErrorKind.INVALID_REQUEST, "InvalidRequestException", "gone", 400)), False),
        (CallFailed(AwsError(ErrorKind.SERVER, "InternalException", "x", 500)), True),
        (CallFailed(AwsError(ErrorKind.NETWORK, "ConnectionClosedError", "x")), True),
        (CallFailed(AwsError(ErrorKind.ACCESS_DENIED, "AccessDenied", "x", 403)), True),
    ],
)
def test_deletion_is_held_only_while_a_cancel_can_still_succeed(outcome: Any, blocks: bool) -> None:
    decision = decide(resource("Running", deletionPolicy="Cancel"), outcome)
    delay = deletion_retry_delay(decision, POLICY)
    assert (delay is not None) is blocks
    if blocks:
        assert delay is not None and delay > 0


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


def test_role_session_name_identifies_the_resource_within_sts_rules() -> None:
    assert role_session_name("data", "nightly") == "dse@data.nightly"
    long = role_session_name("n" * 63, "x" * 253)
    assert len(long) == 64
    assert role_session_name("a", "b:c/d") == "dse@a.b-c-d"


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


def test_condition_gauge_counts_from_the_index() -> None:
    metrics = Metrics()
    metrics.conditions.attach({("Ready", "True"): ["a", "b"], ("Stalled", "True"): ["c"]})
    value = metrics.registry.get_sample_value
    assert value("datasync_operator_resources", {"condition": "Ready", "status": "True"}) == 2
    assert value("datasync_operator_resources", {"condition": "Stalled", "status": "True"}) == 1
    assert value("datasync_operator_resources", {"condition": "Cancelled", "status": "True"}) == 0


def test_arn_directory_stamps_records_of_known_resources_only() -> None:
    directory = ArnDirectory(recent=2)
    directory.attach({"uid-old": [ARN]})
    directory.remember("uid-new", "arn:new")

    def record(uid: str | None) -> logging.LogRecord:
        made = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "m", None, None)
        if uid is not None:
            made.k8s_ref = {"uid": uid}
        directory.filter(made)
        return made

    assert getattr(record("uid-old"), "executionArn", None) == ARN
    assert getattr(record("uid-new"), "executionArn", None) == "arn:new"
    assert not hasattr(record("uid-unknown"), "executionArn")
    assert not hasattr(record(None), "executionArn")
    for uid in ("a", "b", "c"):
        directory.remember(uid, f"arn:{uid}")
    assert getattr(record("uid-new"), "executionArn", None) is None  # evicted, not in the index
