"""The decision core: every row of the error policy and the condition transition rules."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from datasync_operator.backoff import Backoff
from datasync_operator.errors import AwsError, ErrorKind
from datasync_operator.execution import Description
from datasync_operator.reconcile import (
    UNCONFIRMED_CANCEL,
    Action,
    CallFailed,
    CancelAccepted,
    CancelRejected,
    Described,
    NoCall,
    Outcome,
    Policy,
    Resource,
    SpecInvalid,
    Wake,
    conclude,
    plan,
)

ARN = "arn:aws:datasync:eu-west-1:111122223333:task/task-0123456789abcdef0/execution/exec-0123456789abcdef1"
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
POLICY = Policy(backoff=Backoff(base=2.0, cap=60.0), stalled_recheck=600.0)


def body(
    desired: str | None = "Cancelled",
    *,
    generation: int = 1,
    status: dict[str, Any] | None = None,
    arn: object = ARN,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"executionArn": arn}
    if desired is not None:
        spec["desiredState"] = desired
    return {
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "spec": spec,
        "status": status or {},
    }


def resource(*args: Any, **kwargs: Any) -> Resource:
    return Resource.from_body(body(*args, **kwargs))


def decide(res: Resource, outcome: Outcome, seed: int = 0, now: datetime = NOW) -> Any:
    return conclude(res, outcome, now=now, policy=POLICY, rng=random.Random(seed))


def conditions(decision: Any) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in decision.status["conditions"]}


def summary(decision: Any) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conditions(decision).items()}


def err(kind: ErrorKind, code: str, status: int | None, message: str = "boom") -> AwsError:
    return AwsError(kind=kind, code=code, message=message, http_status=status, request_id="req-1")


INVALID = err(ErrorKind.INVALID_REQUEST, "InvalidRequestException", 400, "cannot be cancelled")


# --- plan ------------------------------------------------------------------------------------


def test_plan_cancel_when_cancel_wanted() -> None:
    step = plan(resource("Cancelled"))
    assert step.action is Action.CANCEL
    assert step.arn is not None
    assert step.arn.region == "eu-west-1"


def test_plan_running_describes_and_never_cancels() -> None:
    assert plan(resource("Running")).action is Action.DESCRIBE
    assert plan(resource(None)).action is Action.DESCRIBE  # default is Running


def test_plan_running_with_finished_execution_makes_no_call() -> None:
    for finished in ("SUCCESS", "ERROR"):
        assert plan(resource("Running", status={"executionStatus": finished})).action is (
            Action.NOTHING
        )


def test_plan_nothing_once_cancelled_whatever_the_generation() -> None:
    cancelled = decide(resource("Cancelled"), CancelAccepted()).status
    for generation in (1, 2, 7):
        assert plan(resource("Cancelled", generation=generation, status=cancelled)).action is (
            Action.NOTHING
        )


def test_plan_nothing_once_already_finished() -> None:
    finished = decide(
        resource("Cancelled"), CancelRejected(INVALID, Description("SUCCESS"))
    ).status
    assert plan(resource("Cancelled", generation=2, status=finished)).action is Action.NOTHING


@pytest.mark.parametrize(
    ("arn", "desired", "words"),
    [
        ("arn:aws:datasync:us-east-1:1:task/x", "Cancelled", "spec.executionArn"),
        (None, "Cancelled", "spec.executionArn"),
        (42, "Running", "must be a string"),
        (ARN, "Paused", "spec.desiredState must be one of Running, Cancelled"),
    ],
)
def test_plan_invalid_spec_makes_no_call(arn: object, desired: str, words: str) -> None:
    step = plan(resource(desired, arn=arn))
    assert step.action is Action.NOTHING
    assert step.invalid_spec is not None
    assert words in step.invalid_spec


def test_plan_stalled_access_denied_tries_again_when_the_recheck_is_due() -> None:
    denied = decide(resource(), CallFailed(err(ErrorKind.ACCESS_DENIED, "AccessDenied", 403)))
    assert (denied.wake, denied.after) == (Wake.RECHECK, 600.0)
    assert plan(resource(status=denied.status)).action is Action.NOTHING  # an unrelated event
    assert plan(resource(status=denied.status), due=True).action is Action.CANCEL
    assert plan(resource(generation=2, status=denied.status)).action is Action.CANCEL  # spec change


def test_plan_retry_waits_for_its_time_unless_the_spec_changes() -> None:
    failed = decide(resource(), CallFailed(err(ErrorKind.SERVER, "InternalException", 500)))
    assert failed.wake is Wake.RETRY
    assert plan(resource(status=failed.status)).action is Action.NOTHING
    assert plan(resource(status=failed.status), due=True).action is Action.CANCEL
    assert plan(resource(generation=2, status=failed.status)).action is Action.CANCEL


def test_plan_running_describes_first_then_only_when_the_poll_is_due() -> None:
    observed = decide(resource("Running"), Described(Description("TRANSFERRING")))
    assert observed.wake is Wake.POLL
    assert plan(resource("Running", status=observed.status)).action is Action.NOTHING
    assert plan(resource("Running", status=observed.status), due=True).action is Action.DESCRIBE
    assert plan(resource("Cancelled", generation=2, status=observed.status)).action is (
        Action.CANCEL
    )


DENIED = err(ErrorKind.ACCESS_DENIED, "AccessDenied", 403)
THROTTLED = err(ErrorKind.THROTTLED, "ThrottlingException", 400)


@pytest.mark.parametrize(
    ("desired", "arn", "outcome", "wake"),
    [
        ("Running", ARN, Described(Description("TRANSFERRING")), Wake.POLL),
        ("Running", ARN, Described(Description("SUCCESS")), Wake.NEVER),
        ("Cancelled", ARN, CancelAccepted(), Wake.POLL),
        ("Cancelled", ARN, CallFailed(THROTTLED), Wake.RETRY),
        ("Cancelled", ARN, CallFailed(DENIED), Wake.RECHECK),
        ("Cancelled", ARN, CancelRejected(INVALID, Description("SUCCESS")), Wake.NEVER),
        ("Cancelled", "nope", SpecInvalid("bad"), Wake.NEVER),
    ],
)
def test_at_rest_the_wake_follows_from_the_status_alone(
    desired: str, arn: str, outcome: Outcome, wake: Wake
) -> None:
    """After a restart (no timer in memory) the status alone says when to look again."""
    first = decide(resource(desired, arn=arn), outcome)
    assert first.wake is wake
    again = decide(resource(desired, arn=arn, status=first.status), NoCall())
    assert again.wake is wake
    assert again.changes(first.status) == {}


def test_at_rest_a_retry_resumes_at_its_recorded_time() -> None:
    failed = decide(resource(), CallFailed(err(ErrorKind.SERVER, "InternalException", 500)), seed=3)
    later = decide(resource(status=failed.status), NoCall(), now=NOW + timedelta(seconds=1))
    recorded = datetime.strptime(failed.status["retry"]["nextAttemptTime"], "%Y-%m-%dT%H:%M:%SZ")
    expected = (recorded.replace(tzinfo=UTC) - (NOW + timedelta(seconds=1))).total_seconds()
    assert later.wake is Wake.RETRY
    assert later.after == max(0.0, expected)


def test_plan_is_idempotent() -> None:
    res = resource("Cancelled")
    assert plan(res) == plan(res)


# --- the error policy table, row by row -----------------------------------------------------


def test_row_200_cancel_accepted() -> None:
    decision = decide(resource(), CancelAccepted())
    assert summary(decision) == {
        "Ready": ("True", "CancelAccepted"),
        "Cancelled": ("True", "CancelAccepted"),
        "Reconciling": ("False", "Idle"),
        "Stalled": ("False", "Idle"),
    }
    assert decision.status["cancelRequestedAt"] == "2026-11-29T12:00:00Z"
    assert decision.status["retry"] is None
    assert decision.status["observedGeneration"] == 1
    assert decision.retry_after is None
    assert decision.recheck_after is None
    # The happy path is one status write, no Event: the conditions already tell it.
    assert decision.events == ()


def test_a_cancel_accepted_after_retries_closes_their_story_with_an_event() -> None:
    failed = decide(resource(), CallFailed(err(ErrorKind.SERVER, "InternalException", 500)))
    decision = decide(resource(status=failed.status), CancelAccepted())
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "CancelAccepted")]
    assert decision.events[0].message.endswith("on attempt 2")


TRANSIENT = [
    (err(ErrorKind.SERVER, "InternalException", 500), "RetryingServerError"),
    (err(ErrorKind.SERVER, "ServiceUnavailable", 503), "RetryingServerError"),
    (err(ErrorKind.THROTTLED, "ThrottlingException", 400), "Throttled"),
    (err(ErrorKind.NETWORK, "ReadTimeoutError", None), "RetryingNetworkError"),
    (err(ErrorKind.NETWORK, "EndpointConnectionError", None), "RetryingNetworkError"),
    (err(ErrorKind.UNEXPECTED, "KeyError", None), "RetryingUnexpectedError"),
]


@pytest.mark.parametrize(("error", "reason"), TRANSIENT, ids=[r for _, r in TRANSIENT])
def test_row_transient_retries_with_backoff(error: AwsError, reason: str) -> None:
    decision = decide(resource(), CallFailed(error))
    assert summary(decision) == {
        "Ready": ("False", reason),
        "Cancelled": ("False", reason),
        "Reconciling": ("True", reason),
        "Stalled": ("False", "Idle"),
    }
    retry = decision.status["retry"]
    assert retry["attempts"] == 1
    assert retry["lastError"]["code"] == error.code
    assert retry["lastError"]["requestId"] == "req-1"
    if error.http_status is not None:
        assert retry["lastError"]["httpStatus"] == error.http_status
    assert decision.retry_after is not None
    assert 1.0 <= decision.retry_after <= 2.0  # base 2 s with equal jitter
    expected_next = NOW + timedelta(seconds=decision.retry_after)
    assert retry["nextAttemptTime"] == expected_next.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", reason)]
    assert "retry 1" in decision.events[0].message


def test_transient_attempts_accumulate_and_backoff_grows_to_cap() -> None:
    status: dict[str, Any] = {}
    delays = []
    for attempt in range(1, 9):
        decision = decide(
            resource(status=status), CallFailed(err(ErrorKind.SERVER, "InternalException", 500))
        )
        assert decision.status["retry"]["attempts"] == attempt
        nominal = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert nominal / 2 <= decision.retry_after <= nominal
        delays.append(decision.retry_after)
        status = {**status, **decision.status}
    assert max(delays) <= 60.0


def test_success_after_retries_clears_retry_and_keeps_transition_times() -> None:
    failed = decide(resource(), CallFailed(err(ErrorKind.SERVER, "InternalException", 500)))
    later = NOW + timedelta(minutes=1)
    accepted = decide(resource(status=failed.status), CancelAccepted(), now=later)
    assert accepted.status["retry"] is None
    assert conditions(accepted)["Cancelled"]["message"].endswith("on attempt 2")
    assert accepted.changes(failed.status)["retry"] is None  # deleted by the merge patch
    after = conditions(accepted)
    assert after["Ready"]["lastTransitionTime"] == "2026-11-29T12:01:00Z"  # False -> True
    assert after["Stalled"]["lastTransitionTime"] == "2026-11-29T12:00:00Z"  # stayed False


def test_row_invalid_request_already_cancelled() -> None:
    decision = decide(resource(), CancelRejected(INVALID, Description("ERROR")))
    assert summary(decision)["Cancelled"] == ("True", "AlreadyCancelled")
    assert summary(decision)["Ready"] == ("True", "AlreadyCancelled")
    assert summary(decision)["Stalled"] == ("False", "Idle")
    assert decision.status["executionStatus"] == "ERROR"
    assert decision.retry_after is None and decision.recheck_after is None
    assert [e.reason for e in decision.events] == ["AlreadyCancelled"]


@pytest.mark.parametrize(
    "description",
    [
        Description("CANCELLING"),
        Description("ERROR", "OpCancelled", "Task execution cancelled by user"),
        Description("error"),
    ],
)
def test_already_cancelled_forms(description: Description) -> None:
    decision = decide(resource(), CancelRejected(INVALID, description))
    assert summary(decision)["Cancelled"] == ("True", "AlreadyCancelled")


@pytest.mark.parametrize(
    "description",
    [Description("SUCCESS"), Description("ERROR", "SyncTaskErrorLocationNotAdded", "agent offline")],
)
def test_row_invalid_request_already_finished(description: Description) -> None:
    decision = decide(resource(), CancelRejected(INVALID, description))
    assert summary(decision) == {
        "Ready": ("False", "AlreadyFinished"),
        "Cancelled": ("False", "AlreadyFinished"),
        "Reconciling": ("False", "AlreadyFinished"),
        "Stalled": ("True", "AlreadyFinished"),
    }
    assert description.status in conditions(decision)["Stalled"]["message"]
    assert decision.retry_after is None
    assert decision.recheck_after is None  # finished is final: nothing to re-check
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "AlreadyFinished")]


def test_row_invalid_request_otherwise_stalls_with_aws_message() -> None:
    unknown = err(
        ErrorKind.INVALID_REQUEST, "InvalidRequestException", 400, f"Sync task {ARN} is not found."
    )
    not_found = err(ErrorKind.INVALID_REQUEST, "InvalidRequestException", 400, "not found")
    decision = decide(resource(), CancelRejected(unknown, describe_error=not_found))
    assert summary(decision)["Stalled"] == ("True", "InvalidRequest")
    assert summary(decision)["Ready"] == ("False", "InvalidRequest")
    assert "is not found" in conditions(decision)["Stalled"]["message"]
    assert decision.retry_after is None
    assert decision.recheck_after == 600.0


def test_invalid_request_on_an_active_execution_stalls() -> None:
    decision = decide(resource(), CancelRejected(INVALID, Description("TRANSFERRING")))
    assert summary(decision)["Stalled"] == ("True", "InvalidRequest")
    assert "TRANSFERRING" in conditions(decision)["Stalled"]["message"]


def test_invalid_request_then_describe_fails_transiently_retries() -> None:
    flaky = err(ErrorKind.SERVER, "InternalException", 500)
    decision = decide(resource(), CancelRejected(INVALID, describe_error=flaky))
    assert summary(decision)["Reconciling"] == ("True", "RetryingServerError")
    assert decision.retry_after is not None


@pytest.mark.parametrize(
    "error",
    [
        err(ErrorKind.ACCESS_DENIED, "AccessDeniedException", 400),
        err(ErrorKind.ACCESS_DENIED, "UnrecognizedClientException", 400),
        err(ErrorKind.ACCESS_DENIED, "NoCredentialsError", None),
    ],
)
def test_row_access_denied_stalls_and_rechecks_slowly(error: AwsError) -> None:
    decision = decide(resource(), CallFailed(error))
    assert summary(decision) == {
        "Ready": ("False", "AccessDenied"),
        "Cancelled": ("False", "AccessDenied"),
        "Reconciling": ("False", "AccessDenied"),
        "Stalled": ("True", "AccessDenied"),
    }
    assert decision.retry_after is None
    assert decision.recheck_after == 600.0
    assert decision.status["retry"] is None


def test_access_denied_while_describing_after_rejection_stalls() -> None:
    denied = err(ErrorKind.ACCESS_DENIED, "AccessDeniedException", 400)
    decision = decide(resource(), CancelRejected(INVALID, describe_error=denied))
    assert summary(decision)["Stalled"] == ("True", "AccessDenied")


def test_other_client_errors_stall_as_rejected() -> None:
    decision = decide(resource(), CallFailed(err(ErrorKind.REJECTED, "ValidationException", 400)))
    assert summary(decision)["Stalled"] == ("True", "RequestRejected")


def test_stalled_event_only_on_transition_not_on_every_recheck() -> None:
    denied = err(ErrorKind.ACCESS_DENIED, "AccessDeniedException", 400)
    first = decide(resource(), CallFailed(denied))
    again = decide(resource(status=first.status), CallFailed(denied), now=NOW + timedelta(hours=1))
    assert [e.reason for e in first.events] == ["AccessDenied"]
    assert again.events == ()
    assert conditions(again)["Stalled"]["lastTransitionTime"] == "2026-11-29T12:00:00Z"


def test_stalled_access_denied_heals() -> None:
    denied = decide(resource(), CallFailed(err(ErrorKind.ACCESS_DENIED, "AccessDenied", 403)))
    healed = decide(resource(status=denied.status), CancelAccepted(), now=NOW + timedelta(hours=1))
    assert summary(healed)["Stalled"] == ("False", "Idle")
    assert summary(healed)["Cancelled"] == ("True", "CancelAccepted")
    assert conditions(healed)["Stalled"]["lastTransitionTime"] == "2026-11-29T13:00:00Z"


# --- invalid spec ------------------------------------------------------------------------------


def test_invalid_spec_stalls_without_retry() -> None:
    decision = decide(resource(arn="nope"), SpecInvalid("spec.executionArn 'nope' is not an ARN"))
    assert summary(decision)["Stalled"] == ("True", "InvalidSpec")
    assert summary(decision)["Ready"] == ("False", "InvalidSpec")
    assert "spec.executionArn" in conditions(decision)["Ready"]["message"]
    assert decision.retry_after is None
    assert decision.recheck_after is None


# --- desiredState: Running -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ready", "stalled"),
    [
        ("QUEUED", ("True", "ExecutionActive"), ("False", "Idle")),
        ("TRANSFERRING", ("True", "ExecutionActive"), ("False", "Idle")),
        ("INITIALIZING", ("True", "ExecutionActive"), ("False", "Idle")),
        ("SUCCESS", ("True", "ExecutionSucceeded"), ("False", "Idle")),
        ("ERROR", ("False", "ExecutionFailed"), ("True", "ExecutionFailed")),
        ("HIBERNATING", ("Unknown", "UnknownExecutionStatus"), ("False", "Idle")),
    ],
)
def test_running_conditions_tell_the_truth(
    status: str, ready: tuple[str, str], stalled: tuple[str, str]
) -> None:
    decision = decide(resource("Running"), Described(Description(status)))
    assert summary(decision)["Ready"] == ready
    assert summary(decision)["Stalled"] == stalled
    assert summary(decision)["Cancelled"] == ("False", "NotRequested")
    assert summary(decision)["Reconciling"] == ("False", "Idle")
    assert decision.status["executionStatus"] == status


def test_running_describe_failure_retries_without_cancel_wording() -> None:
    decision = decide(resource("Running"), CallFailed(err(ErrorKind.SERVER, "InternalException", 500)))
    assert summary(decision)["Cancelled"] == ("False", "NotRequested")
    assert "DescribeTaskExecution" in decision.events[0].message


def test_running_access_denied_keeps_cancelled_not_requested() -> None:
    decision = decide(
        resource("Running"), CallFailed(err(ErrorKind.ACCESS_DENIED, "AccessDenied", 403))
    )
    assert summary(decision)["Cancelled"] == ("False", "NotRequested")
    assert summary(decision)["Stalled"] == ("True", "AccessDenied")


# --- idempotency and generations ---------------------------------------------------------------


def test_nothing_to_do_changes_nothing_but_observed_generation() -> None:
    cancelled = decide(resource(), CancelAccepted()).status
    same = decide(resource(status=cancelled), NoCall())
    assert same.changes(cancelled) == {}
    assert same.events == ()
    bumped = decide(resource(generation=2, status=cancelled), NoCall())
    changes = bumped.changes(cancelled)
    assert set(changes) == {"observedGeneration", "conditions"}
    assert changes["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in changes["conditions"])
    before = {c["type"]: c["lastTransitionTime"] for c in cancelled["conditions"]}
    assert {c["type"]: c["lastTransitionTime"] for c in changes["conditions"]} == before


def test_first_sight_with_nothing_to_do_sets_conditions() -> None:
    decision = decide(resource("Running", status={"executionStatus": "SUCCESS"}), NoCall())
    assert set(conditions(decision)) == {"Ready", "Cancelled", "Reconciling", "Stalled"}


def test_observed_generation_on_every_condition() -> None:
    decision = decide(resource(generation=5), CancelAccepted())
    assert decision.status["observedGeneration"] == 5
    assert {c["observedGeneration"] for c in decision.status["conditions"]} == {5}


def test_foreign_conditions_are_preserved() -> None:
    foreign = {"type": "example.com/Audited", "status": "True", "reason": "Ok", "message": "",
               "lastTransitionTime": "2026-01-01T00:00:00Z"}
    decision = decide(resource(status={"conditions": [foreign]}), CancelAccepted())
    assert foreign in decision.status["conditions"]


def test_condition_order_is_stable() -> None:
    decision = decide(resource(), CancelAccepted())
    assert [c["type"] for c in decision.status["conditions"]] == [
        "Ready", "Cancelled", "Reconciling", "Stalled"
    ]


def test_a_refused_cancel_whose_describe_fails_is_described_again_not_cancelled_again() -> None:
    """The chaos suite found executions that got 4 cancels: every failed describe after a
    refusal used to retry the whole step, cancel included."""
    network = err(ErrorKind.NETWORK, "ConnectionClosedError", None)
    first = decide(resource(), CancelRejected(INVALID, describe_error=network))
    assert first.wake is Wake.RETRY
    assert first.status["retry"]["lastError"]["operation"].startswith("DescribeTaskExecution")
    waiting = resource(status=first.status)
    assert plan(waiting).action is Action.NOTHING  # not before its time
    assert plan(waiting, due=True).action is Action.DESCRIBE  # then: describe, not cancel
    again = decide(waiting, CallFailed(network, "DescribeTaskExecution"))
    assert plan(resource(status=again.status), due=True).action is Action.DESCRIBE
    assert again.status["retry"]["attempts"] == 2
    done = decide(resource(status=again.status), Described(Description("ERROR")))
    assert summary(done)["Cancelled"] == ("True", "AlreadyCancelled")
    assert done.status["retry"] is None
    assert plan(resource(status={**again.status, **done.status}), due=True).action is (
        Action.NOTHING
    )


def test_a_failed_cancel_records_the_operation_and_retries_the_cancel() -> None:
    failed = decide(resource(), CallFailed(err(ErrorKind.SERVER, "InternalException", 500),
                                           "CancelTaskExecution"))
    assert failed.status["retry"]["lastError"]["operation"] == "CancelTaskExecution"
    assert plan(resource(status=failed.status), due=True).action is Action.CANCEL


@pytest.mark.parametrize(
    "error",
    [err(ErrorKind.SERVER, "InternalException", 500), err(ErrorKind.ACCESS_DENIED, "AccessDenied", 403),
     err(ErrorKind.NETWORK, "ConnectionClosedError", None)],
)
def test_a_failed_refresh_never_takes_back_cancelled(error: AwsError) -> None:
    """The chaos suite saw Cancelled=True flip to False (and a second cancel follow) when the
    poll of a cancelled execution failed."""
    cancelled = decide(resource(), CancelAccepted()).status
    failed = decide(resource(status=cancelled), CallFailed(error, "DescribeTaskExecution"))
    assert failed.changes(cancelled) == {}
    assert failed.wake is Wake.POLL
    assert failed.events == ()
    assert plan(resource(status=cancelled), due=True).action is Action.DESCRIBE


def test_a_cancel_whose_answer_was_lost_is_checked_before_it_is_sent_again() -> None:
    """A timeout or a dropped connection may hide an accepted cancel: the retry describes first
    (the chaos suite saw three cancels reach DataSync for one execution without this)."""
    lost = decide(resource(), CallFailed(err(ErrorKind.NETWORK, "ReadTimeoutError", None),
                                         "CancelTaskExecution"))
    assert lost.status["retry"]["lastError"]["operation"] == "CancelTaskExecution(unconfirmed)"
    assert "CancelTaskExecution failed with ReadTimeoutError" in lost.events[0].message
    waiting = resource(status=lost.status)
    assert plan(waiting).action is Action.NOTHING
    assert plan(waiting, due=True).action is Action.CHECK_THEN_CANCEL
    # the look itself fails: still unconfirmed, still a look next time
    again = decide(waiting, CallFailed(err(ErrorKind.SERVER, "InternalException", 500),
                                       "CancelTaskExecution(unconfirmed)"))
    assert plan(resource(status=again.status), due=True).action is Action.CHECK_THEN_CANCEL
    # the look finds it cancelled: done, without a second cancel
    found = decide(resource(status=again.status),
                   CancelRejected(UNCONFIRMED_CANCEL, Description("ERROR")))
    assert summary(found)["Cancelled"] == ("True", "AlreadyCancelled")
    # a server error on a cancel is not a lost answer: retried as a cancel
    server = decide(resource(), CallFailed(err(ErrorKind.SERVER, "InternalException", 500),
                                           "CancelTaskExecution"))
    assert plan(resource(status=server.status), due=True).action is Action.CANCEL


def test_after_a_crashed_predecessor_a_pending_cancel_is_checked_first() -> None:
    """A leader that inherits the Lease from a crashed one looks before cancelling what it finds
    pending: its predecessor may have cancelled it without recording it."""
    assert plan(resource(), unsure=True).action is Action.CHECK_THEN_CANCEL
    assert plan(resource()).action is Action.CANCEL
    cancelled = decide(resource(), CancelAccepted()).status
    assert plan(resource(status=cancelled), unsure=True).action is Action.NOTHING
    assert plan(resource("Running"), unsure=True).action is Action.DESCRIBE
