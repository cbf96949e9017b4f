"""The decision core: spec + status + what AWS answered -> new status, events, next step.

Pure and synchronous, no I/O: the kopf shell (:mod:`.handlers`) asks :func:`plan` which AWS
call to make, makes it, describes what happened as an :data:`Outcome`, and hands it to
:func:`conclude`, which returns the complete new status, the Events to post and when to look
again. Every path through :func:`conclude` produces a status: it is never left stale.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from datasync_operator import conditions as cond
from datasync_operator.arn import (
    ExecutionArn,
    ExecutionArnError,
    RoleArnError,
    parse_execution_arn,
    parse_role_arn,
)
from datasync_operator.backoff import Backoff
from datasync_operator.conditions import Condition, ConditionType, Reason
from datasync_operator.errors import AwsError, ErrorKind
from datasync_operator.execution import Description, Phase, phase_of

RUNNING = "Running"
CANCELLED = "Cancelled"
DESIRED_STATES = (RUNNING, CANCELLED)
ORPHAN = "Orphan"
CANCEL = "Cancel"
DELETION_POLICIES = (ORPHAN, CANCEL)


class Action(enum.Enum):
    """The one AWS call a reconcile starts with (an InvalidRequest answer adds a describe)."""

    NOTHING = "nothing"
    CANCEL = "cancel"
    DESCRIBE = "describe"


@dataclass(frozen=True, slots=True)
class Resource:
    """What the decisions read from a DataSyncExecution object."""

    execution_arn: object
    desired_state: object
    generation: int | None
    status: Mapping[str, Any]
    deletion_policy: object = ORPHAN
    role_arn: object = None
    namespace: str | None = None
    name: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Resource:
        spec = body.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        return cls(
            execution_arn=spec.get("executionArn"),
            desired_state=spec.get("desiredState", RUNNING),
            deletion_policy=spec.get("deletionPolicy", ORPHAN),
            role_arn=spec.get("roleArn"),
            namespace=meta.get("namespace"),
            name=meta.get("name"),
            generation=generation if isinstance(generation, int) else None,
            status=body.get("status") or {},
        )

    @property
    def conditions(self) -> Sequence[Mapping[str, Any]]:
        found = self.status.get("conditions")
        return found if isinstance(found, list) else []

    @property
    def cancelled(self) -> bool:
        return cond.is_true(self.conditions, ConditionType.CANCELLED)

    @property
    def execution_finished(self) -> bool:
        return phase_of(_str(self.status.get("executionStatus"))).finished


@dataclass(frozen=True, slots=True)
class Plan:
    action: Action
    arn: ExecutionArn | None = None
    invalid_spec: str | None = None
    #: The IAM role to assume for the call (``spec.roleArn``), if any.
    role_arn: str | None = None


# --- Outcomes: what happened when the shell carried out the plan ---------------------------


@dataclass(frozen=True, slots=True)
class NoCall:
    """Nothing was asked of AWS (the plan was NOTHING)."""


@dataclass(frozen=True, slots=True)
class SpecInvalid:
    message: str


@dataclass(frozen=True, slots=True)
class CancelAccepted:
    """CancelTaskExecution answered 200."""


@dataclass(frozen=True, slots=True)
class CancelRejected:
    """CancelTaskExecution answered InvalidRequestException; the shell then described."""

    error: AwsError
    description: Description | None = None
    describe_error: AwsError | None = None


@dataclass(frozen=True, slots=True)
class Described:
    description: Description


@dataclass(frozen=True, slots=True)
class CallFailed:
    """The AWS call failed with anything but an InvalidRequest answer to a cancel."""

    error: AwsError


Outcome = NoCall | SpecInvalid | CancelAccepted | CancelRejected | Described | CallFailed


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to post about the resource."""

    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Policy:
    """Tunable parts of the decisions (from the operator's configuration)."""

    backoff: Backoff = field(default_factory=Backoff)
    #: How often a Stalled resource that might heal (AccessDenied, InvalidRequest) is re-checked.
    stalled_recheck: float | None = 600.0


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything the shell does after a reconcile."""

    #: The operator-owned status fields; a ``None`` value deletes the field (merge patch).
    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    #: Retry a transient failure after this many seconds.
    retry_after: float | None = None
    #: Re-check a Stalled resource after this many seconds.
    recheck_after: float | None = None
    #: What happened, in one word (the ``outcome`` label of the reconcile metric).
    outcome: str = "unchanged"
    #: Seconds from the first cancel attempt to DataSync accepting it (when it just did).
    cancel_latency: float | None = None

    def changes(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """The subset of :attr:`status` that differs from ``current`` (a minimal merge patch)."""
        return {
            key: value
            for key, value in self.status.items()
            if current.get(key) != value and not (value is None and key not in current)
        }


# --- plan ------------------------------------------------------------------------------------


def validate(resource: Resource) -> Plan:
    """A NOTHING plan naming the first invalid field, or a plan that knows the ARN and role."""
    try:
        arn = parse_execution_arn(resource.execution_arn)
    except ExecutionArnError as exc:
        return Plan(Action.NOTHING, invalid_spec=str(exc))
    if resource.desired_state not in DESIRED_STATES:
        return Plan(
            Action.NOTHING,
            invalid_spec=_enum_message("spec.desiredState", DESIRED_STATES, resource.desired_state),
        )
    if resource.deletion_policy not in DELETION_POLICIES:
        return Plan(
            Action.NOTHING,
            invalid_spec=_enum_message(
                "spec.deletionPolicy", DELETION_POLICIES, resource.deletion_policy
            ),
        )
    role_arn = resource.role_arn
    if role_arn is not None:
        try:
            role_arn = parse_role_arn(role_arn)
        except RoleArnError as exc:
            return Plan(Action.NOTHING, invalid_spec=str(exc))
    return Plan(Action.NOTHING, arn, role_arn=role_arn)


def plan(resource: Resource) -> Plan:
    """Which AWS call (if any) moves the execution toward the spec. Idempotent."""
    valid = validate(resource)
    if valid.invalid_spec is not None:
        return valid
    if resource.cancelled:
        return valid  # cancelled is final: no AWS call ever again
    if _stalled_reason(resource) == Reason.ALREADY_FINISHED.value:
        return valid  # finished is final too
    if resource.desired_state == CANCELLED:
        return replace(valid, action=Action.CANCEL)
    if resource.execution_finished:
        return valid  # a finished execution never changes again
    return replace(valid, action=Action.DESCRIBE)


def plan_refresh(resource: Resource) -> Plan:
    """The periodic refresh of ``status.execution``: describe until the execution finishes.

    Only for resources at rest (not retrying, not stalled): ``Running`` ones, and cancelled ones
    whose execution has not reached its final status yet.
    """
    valid = validate(resource)
    if valid.invalid_spec is not None or resource.execution_finished:
        return valid
    if not resource.conditions:
        return valid  # the first look is the reconcile handler's, never a race with it
    if cond.is_true(resource.conditions, ConditionType.RECONCILING) or _stalled_reason(resource):
        return valid
    if resource.desired_state == CANCELLED and not resource.cancelled:
        return valid  # the cancel itself is the reconcile handler's job
    return replace(valid, action=Action.DESCRIBE)


def plan_deletion(resource: Resource) -> Plan:
    """On deletion with ``deletionPolicy: Cancel``: cancel an execution that may still run."""
    valid = validate(resource)
    if valid.invalid_spec is not None or resource.deletion_policy != CANCEL:
        return replace(valid, action=Action.NOTHING)
    if resource.cancelled or resource.execution_finished:
        return valid
    if _stalled_reason(resource) == Reason.ALREADY_FINISHED.value:
        return valid
    return replace(valid, action=Action.CANCEL)


# --- conclude --------------------------------------------------------------------------------


def conclude(
    resource: Resource,
    outcome: Outcome,
    *,
    now: datetime,
    policy: Policy,
    rng: random.Random | None = None,
) -> Decision:
    """The new status, events and next step after ``outcome``."""
    status = resource.status
    previous_conditions = resource.conditions
    new: dict[str, Any] = (
        {} if resource.generation is None else {"observedGeneration": resource.generation}
    )

    if isinstance(outcome, NoCall):
        new["conditions"] = cond.restamp(previous_conditions, generation=resource.generation)
        if not previous_conditions:  # first sight of a resource with nothing to do
            new["conditions"] = _merge(resource, _idle_running(status), now)
        return Decision(new)

    if isinstance(outcome, SpecInvalid):
        wanted = _stalled(Reason.INVALID_SPEC, outcome.message, cancelled=None)
        new["retry"] = None
        new["conditions"] = _merge(resource, wanted, now)
        return Decision(
            new,
            _stalled_events(resource, Reason.INVALID_SPEC, outcome.message),
            outcome="invalid-spec",
        )

    if isinstance(outcome, CancelAccepted):
        failed_before = _attempts(status)
        message = "DataSync accepted CancelTaskExecution" + (
            f" on attempt {failed_before + 1}" if failed_before else ""
        )
        new["cancelRequestedAt"] = cond.format_time(now)
        new["retry"] = None
        new["conditions"] = _merge(resource, _cancelled(Reason.CANCEL_ACCEPTED, message), now)
        first = _first_attempt(status)
        return Decision(
            new,
            (Event("Normal", Reason.CANCEL_ACCEPTED.value, message),),
            outcome="cancelled",
            cancel_latency=max(0.0, (now - first).total_seconds()) if first else 0.0,
        )

    if isinstance(outcome, Described):
        description = outcome.description
        new["executionStatus"] = description.status
        new["execution"] = description.as_status()
        if resource.desired_state == CANCELLED:
            # A refresh of a cancelled execution: the facts change, the verdict does not.
            new["conditions"] = cond.restamp(previous_conditions, generation=resource.generation)
            return Decision(new, outcome="refreshed")
        new["retry"] = None
        new["conditions"] = _merge(resource, _observed(description), now)
        return Decision(new, _stalled_events_for(resource, new["conditions"]), outcome="observed")

    if isinstance(outcome, CancelRejected):
        return _conclude_rejected(resource, outcome, new, now=now, policy=policy, rng=rng)

    return _conclude_failure(resource, outcome.error, new, now=now, policy=policy, rng=rng)


def _conclude_rejected(
    resource: Resource,
    outcome: CancelRejected,
    new: dict[str, Any],
    *,
    now: datetime,
    policy: Policy,
    rng: random.Random | None,
) -> Decision:
    description = outcome.description
    if description is None:
        describe_error = outcome.describe_error
        if describe_error is not None and describe_error.kind.transient:
            # Cannot tell why the cancel was refused yet: retry the whole step.
            return _conclude_failure(resource, describe_error, new, now=now, policy=policy, rng=rng)
        if describe_error is not None and describe_error.kind is ErrorKind.ACCESS_DENIED:
            return _conclude_failure(resource, describe_error, new, now=now, policy=policy, rng=rng)
        message = f"DataSync refused CancelTaskExecution: {outcome.error.message}"
        return _stall(resource, new, Reason.INVALID_REQUEST, message, now, policy)

    new["executionStatus"] = description.status
    new["execution"] = description.as_status()
    new["retry"] = None
    phase = description.phase
    if phase is Phase.CANCELLING or description.ended_by_cancel:
        message = f"the execution was already cancelled (DataSync status {description.summary()})"
        new["conditions"] = _merge(resource, _cancelled(Reason.ALREADY_CANCELLED, message), now)
        return Decision(
            new,
            (Event("Normal", Reason.ALREADY_CANCELLED.value, message),),
            outcome="already-cancelled",
        )
    if phase.finished:
        message = (
            f"the execution already finished with DataSync status {description.summary()}; "
            "there is nothing left to cancel"
        )
        decision = _stall(resource, new, Reason.ALREADY_FINISHED, message, now, policy)
        return replace(decision, recheck_after=None)  # final: no re-check
    message = (
        f"DataSync refused CancelTaskExecution while the execution is {description.status}: "
        f"{outcome.error.message}"
    )
    return _stall(resource, new, Reason.INVALID_REQUEST, message, now, policy)


def _conclude_failure(
    resource: Resource,
    error: AwsError,
    new: dict[str, Any],
    *,
    now: datetime,
    policy: Policy,
    rng: random.Random | None,
) -> Decision:
    if error.kind.transient:
        attempts = _attempts(resource.status) + 1
        delay = policy.backoff.delay(attempts, rng)
        next_time = cond.format_time(now + timedelta(seconds=delay))
        reason = _RETRY_REASONS[error.kind]
        message = f"{_operation(resource)} failed with {error}; retry {attempts} in {delay:.1f}s"
        first = _first_attempt(resource.status) if attempts > 1 else None
        new["retry"] = {
            "attempts": attempts,
            "firstAttemptTime": cond.format_time(first or now),
            "nextAttemptTime": next_time,
            "lastError": error.as_status(),
        }
        new["conditions"] = _merge(resource, _retrying(resource, reason, message), now)
        return Decision(
            new,
            (Event("Warning", reason.value, message),),
            retry_after=delay,
            outcome="retrying",
        )
    if error.kind is ErrorKind.ACCESS_DENIED:
        message = f"AWS refused the operator's credentials or permissions: {error}"
        return _stall(resource, new, Reason.ACCESS_DENIED, message, now, policy)
    if error.kind is ErrorKind.INVALID_REQUEST:
        message = f"DataSync rejected {_operation(resource)}: {error.message}"
        return _stall(resource, new, Reason.INVALID_REQUEST, message, now, policy)
    message = f"DataSync rejected {_operation(resource)}: {error}"
    return _stall(resource, new, Reason.REQUEST_REJECTED, message, now, policy)


def _stall(
    resource: Resource,
    new: dict[str, Any],
    reason: Reason,
    message: str,
    now: datetime,
    policy: Policy,
) -> Decision:
    new["retry"] = None
    cancelled: bool | None = None if resource.desired_state == CANCELLED else False
    new["conditions"] = _merge(resource, _stalled(reason, message, cancelled=cancelled), now)
    return Decision(
        new,
        _stalled_events(resource, reason, message),
        recheck_after=policy.stalled_recheck,
        outcome="stalled",
    )


def deletion_retry_delay(decision: Decision, policy: Policy) -> float | None:
    """Seconds until a blocked deletion tries its cancel again; None lets the deletion go on.

    Transient failures retry with the usual backoff; AccessDenied and other rejected requests
    hold the finalizer and re-check slowly (the documented escape hatch releases it); every
    other answer (accepted, already cancelled or finished, unknown execution) lets go.
    """
    if decision.retry_after is not None:
        return decision.retry_after
    stalled = cond.find(decision.status.get("conditions") or [], ConditionType.STALLED)
    if (
        stalled is not None
        and stalled.get("status") == "True"
        and stalled.get("reason")
        in (
            Reason.ACCESS_DENIED.value,
            Reason.REQUEST_REJECTED.value,
        )
    ):
        return policy.stalled_recheck or 60.0
    return None


# --- condition sets --------------------------------------------------------------------------

_RETRY_REASONS = {
    ErrorKind.SERVER: Reason.RETRYING_SERVER_ERROR,
    ErrorKind.THROTTLED: Reason.THROTTLED,
    ErrorKind.NETWORK: Reason.RETRYING_NETWORK_ERROR,
    ErrorKind.UNEXPECTED: Reason.RETRYING_UNEXPECTED_ERROR,
}


def _cancelled(reason: Reason, message: str) -> list[Condition]:
    return [
        Condition.true(ConditionType.READY, reason, message),
        Condition.true(ConditionType.CANCELLED, reason, message),
        Condition.false(ConditionType.RECONCILING, Reason.IDLE, "nothing left to do"),
        Condition.false(ConditionType.STALLED, Reason.IDLE, "not stalled"),
    ]


def _retrying(resource: Resource, reason: Reason, message: str) -> list[Condition]:
    cancel_wanted = resource.desired_state == CANCELLED
    return [
        Condition.false(ConditionType.READY, reason, message),
        (
            Condition.false(ConditionType.CANCELLED, reason, message)
            if cancel_wanted
            else Condition.false(ConditionType.CANCELLED, Reason.NOT_REQUESTED, _NOT_REQUESTED)
        ),
        Condition.true(ConditionType.RECONCILING, reason, message),
        Condition.false(ConditionType.STALLED, Reason.IDLE, "not stalled"),
    ]


def _stalled(reason: Reason, message: str, *, cancelled: bool | None) -> list[Condition]:
    """Stalled=True; ``cancelled`` None means Cancelled=False with the stall's reason."""
    cancelled_condition = (
        Condition.false(ConditionType.CANCELLED, reason, message)
        if cancelled is None
        else Condition.false(ConditionType.CANCELLED, Reason.NOT_REQUESTED, _NOT_REQUESTED)
    )
    return [
        Condition.false(ConditionType.READY, reason, message),
        cancelled_condition,
        Condition.false(ConditionType.RECONCILING, reason, "blocked until something changes"),
        Condition.true(ConditionType.STALLED, reason, message),
    ]


_NOT_REQUESTED = "desiredState is Running: no cancel requested"


def _observed(description: Description) -> list[Condition]:
    """Conditions for ``desiredState: Running`` from what DataSync reports."""
    phase = description.phase
    shown = description.summary()
    if phase is Phase.SUCCEEDED:
        ready = Condition.true(
            ConditionType.READY, Reason.EXECUTION_SUCCEEDED, f"the execution finished: {shown}"
        )
    elif phase is Phase.FAILED:
        ready = Condition.false(
            ConditionType.READY, Reason.EXECUTION_FAILED, f"the execution ended in {shown}"
        )
    elif phase is Phase.UNKNOWN:
        ready = Condition.unknown(
            ConditionType.READY,
            Reason.UNKNOWN_EXECUTION_STATUS,
            f"DataSync reports a status this operator does not know: {shown}",
        )
    else:
        ready = Condition.true(
            ConditionType.READY, Reason.EXECUTION_ACTIVE, f"the execution is {shown}"
        )
    stalled = (
        Condition.true(ConditionType.STALLED, Reason.EXECUTION_FAILED, ready.message)
        if phase is Phase.FAILED
        else Condition.false(ConditionType.STALLED, Reason.IDLE, "not stalled")
    )
    return [
        ready,
        Condition.false(ConditionType.CANCELLED, Reason.NOT_REQUESTED, _NOT_REQUESTED),
        Condition.false(ConditionType.RECONCILING, Reason.IDLE, "nothing left to do"),
        stalled,
    ]


def _idle_running(status: Mapping[str, Any]) -> list[Condition]:
    shown = _str(status.get("executionStatus")) or "not yet observed"
    return [
        Condition.unknown(ConditionType.READY, Reason.EXECUTION_ACTIVE, f"execution {shown}"),
        Condition.false(ConditionType.CANCELLED, Reason.NOT_REQUESTED, _NOT_REQUESTED),
        Condition.false(ConditionType.RECONCILING, Reason.IDLE, "nothing left to do"),
        Condition.false(ConditionType.STALLED, Reason.IDLE, "not stalled"),
    ]


# --- helpers ---------------------------------------------------------------------------------


def _merge(resource: Resource, wanted: list[Condition], now: datetime) -> list[dict[str, Any]]:
    return cond.merge(resource.conditions, wanted, now=now, generation=resource.generation)


def _stalled_events(resource: Resource, reason: Reason, message: str) -> tuple[Event, ...]:
    """A Warning only when the resource becomes Stalled or its reason changes (not per re-check)."""
    previous = cond.find(resource.conditions, ConditionType.STALLED)
    if (
        previous is not None
        and previous.get("status") == "True"
        and previous.get("reason") == reason.value
    ):
        return ()
    return (Event("Warning", reason.value, message),)


def _stalled_events_for(
    resource: Resource, conditions: Sequence[Mapping[str, Any]]
) -> tuple[Event, ...]:
    stalled = cond.find(conditions, ConditionType.STALLED)
    if stalled is None or stalled.get("status") != "True":
        return ()
    return _stalled_events(resource, Reason(stalled["reason"]), str(stalled["message"]))


def _attempts(status: Mapping[str, Any]) -> int:
    retry = status.get("retry")
    attempts = retry.get("attempts") if isinstance(retry, Mapping) else None
    return attempts if isinstance(attempts, int) and attempts > 0 else 0


def _first_attempt(status: Mapping[str, Any]) -> datetime | None:
    retry = status.get("retry")
    stamp = retry.get("firstAttemptTime") if isinstance(retry, Mapping) else None
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _operation(resource: Resource) -> str:
    return "CancelTaskExecution" if resource.desired_state == CANCELLED else "DescribeTaskExecution"


def _stalled_reason(resource: Resource) -> str | None:
    stalled = cond.find(resource.conditions, ConditionType.STALLED)
    if stalled is None or stalled.get("status") != "True":
        return None
    return str(stalled.get("reason"))


def _enum_message(field_path: str, allowed: Sequence[str], got: object) -> str:
    return f"{field_path} must be one of {', '.join(allowed)}, got {got!r}"


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
