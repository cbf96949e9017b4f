"""The decision core: spec + status + what AWS answered -> new status, events, what next.

Pure and synchronous, no I/O. The controller (:mod:`.controller`) asks :func:`plan` which AWS
call (if any) moves an object toward its spec, makes it, describes what happened as an
:data:`Outcome`, and hands it to :func:`conclude`. The :class:`Decision` it gets back is all
the controller acts on: the complete new status, the Events to post, when to look again and
why (:class:`Wake`), and whether the operator's finalizer belongs on the object. Every path
through :func:`conclude` produces a status: it is never left stale.

Reconciles are level-based: :func:`plan` reads only the object (``status.observedGeneration``
is the record of what was handled) and whether a wake-up the core asked for has come (``due``).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, assert_never

from datasync_operator import FINALIZER, SKIP_CANCEL_ANNOTATION
from datasync_operator import conditions as cond
from datasync_operator.arn import ExecutionArn
from datasync_operator.backoff import Backoff
from datasync_operator.conditions import Condition, ConditionType, Reason
from datasync_operator.errors import AwsError, ErrorKind
from datasync_operator.execution import Description, Phase, phase_of
from datasync_operator.spec import DeletionPolicy, DesiredState, InvalidSpec, Spec, parse_spec


class Action(enum.Enum):
    """The one AWS call a reconcile starts with (an InvalidRequest answer adds a describe)."""

    NOTHING = "nothing"
    CANCEL = "cancel"
    DESCRIBE = "describe"
    #: The last cancel's answer was lost (it may have taken effect): describe, and cancel only
    #: if the execution still runs.
    CHECK_THEN_CANCEL = "check-then-cancel"


class Wake(enum.Enum):
    """Why (and whether) the controller must look at the object again without a change."""

    NEVER = "never"  # final, or blocked until the spec changes
    POLL = "poll"  # the execution is unfinished: refresh it on the polling schedule
    RETRY = "retry"  # a transient failure: try again after the backoff delay
    RECHECK = "recheck"  # stalled on something a human may fix in AWS: look again slowly


#: ``status.retry.lastError.operation`` of a describe that followed a refused cancel and failed:
#: the retry describes again instead of sending the cancel a second time.
DESCRIBE_AFTER_REFUSAL = "DescribeTaskExecution(after a refused cancel)"
#: ``status.retry.lastError.operation`` of a cancel whose answer was lost (a timeout or a dropped
#: connection: DataSync may have acted on it): the retry looks before it cancels again.
CANCEL_UNCONFIRMED = "CancelTaskExecution(unconfirmed)"
#: What is known when the look after a lost answer finds the execution no longer running.
UNCONFIRMED_CANCEL = AwsError(
    ErrorKind.INVALID_REQUEST,
    "InvalidRequestException",
    "the answer to an earlier CancelTaskExecution was lost",
)
#: What is known of a refusal whose describe failed, when a later describe answers.
_EARLIER_REFUSAL = AwsError(
    ErrorKind.INVALID_REQUEST,
    "InvalidRequestException",
    "DataSync refused CancelTaskExecution earlier",
)

#: Stalled reasons that a later look at AWS can heal (re-checked slowly).
HEALABLE = frozenset({Reason.ACCESS_DENIED, Reason.INVALID_REQUEST, Reason.REQUEST_REJECTED})

#: Stalled reasons that are the operator's own verdict, not AWS's: decided again whenever the
#: object is reconciled (an access policy or namespace changed, the operator restarted with
#: another configuration), which costs no AWS call while the verdict stands.
REDECIDED = frozenset({Reason.NOT_PERMITTED, Reason.INVALID_SPEC, Reason.INTERNAL_ERROR})


@dataclass(frozen=True, slots=True)
class Resource:
    """What the decisions read from a DataSyncExecution object."""

    spec: Spec | InvalidSpec
    generation: int | None
    status: Mapping[str, Any]
    namespace: str | None = None
    name: str | None = None
    #: ``metadata.deletionTimestamp`` is set.
    deleting: bool = False
    #: The operator's finalizer is on the object.
    finalized: bool = False
    #: The escape-hatch annotation asks to delete without cancelling.
    skip_cancel: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Resource:
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        annotations = meta.get("annotations") or {}
        status = body.get("status")
        return cls(
            spec=parse_spec(body.get("spec")),
            generation=generation if isinstance(generation, int) else None,
            status=status if isinstance(status, Mapping) else {},
            namespace=meta.get("namespace"),
            name=meta.get("name"),
            deleting=bool(meta.get("deletionTimestamp")),
            finalized=FINALIZER in (meta.get("finalizers") or ()),
            skip_cancel=str(annotations.get(SKIP_CANCEL_ANNOTATION, "")).lower() == "true",
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

    @property
    def settled(self) -> bool:
        """The status was written for the current generation (nothing new to act on)."""
        return bool(self.conditions) and self.status.get("observedGeneration") == self.generation

    @property
    def stalled_reason(self) -> Reason | None:
        stalled = cond.find(self.conditions, ConditionType.STALLED)
        if stalled is None or stalled.get("status") != "True":
            return None
        try:
            return Reason(str(stalled.get("reason")))
        except ValueError:
            return None

    @property
    def retrying(self) -> bool:
        return isinstance(self.status.get("retry"), Mapping)

    @property
    def waiting(self) -> bool:
        """Waiting for a wake-up the core asked for (a retry or a re-check)."""
        return self.retrying or self.stalled_reason in HEALABLE


@dataclass(frozen=True, slots=True)
class Plan:
    action: Action
    spec: Spec | None = None
    invalid: InvalidSpec | None = None

    @property
    def arn(self) -> ExecutionArn | None:
        return None if self.spec is None else self.spec.arn

    @property
    def role_arn(self) -> str | None:
        return None if self.spec is None else self.spec.role_arn

    @property
    def invalid_spec(self) -> str | None:
        return None if self.invalid is None else self.invalid.message


# --- Outcomes: what happened when the controller carried out the plan -------------------------


@dataclass(frozen=True, slots=True)
class NoCall:
    """Nothing was asked of AWS (the plan was NOTHING)."""


@dataclass(frozen=True, slots=True)
class SpecInvalid:
    """No call can succeed for this spec (it slipped past the schema, or its region is unknown)."""

    message: str


@dataclass(frozen=True, slots=True)
class NotPermitted:
    """The access policies refuse the call (:mod:`.access`): none was made."""

    message: str


@dataclass(frozen=True, slots=True)
class CancelAccepted:
    """CancelTaskExecution answered 200 (``at``: when, if not now: a result not yet written)."""

    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CancelRejected:
    """CancelTaskExecution answered InvalidRequestException; the controller then described."""

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
    #: The operation that failed ("" when it is the one the resource's state implies).
    operation: str = ""


@dataclass(frozen=True, slots=True)
class OperatorFailed:
    """The operator's own code failed this reconcile ``attempts`` times in a row (a bug)."""

    error_type: str
    attempts: int


Outcome = (
    NoCall
    | SpecInvalid
    | NotPermitted
    | CancelAccepted
    | CancelRejected
    | Described
    | CallFailed
    | OperatorFailed
)


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
    """Everything the controller does after a reconcile."""

    #: The operator-owned status fields; a ``None`` value deletes the field (merge patch).
    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    #: When to look again without a change, and why.
    wake: Wake = Wake.NEVER
    #: Seconds until the wake-up, for RETRY and RECHECK (POLL follows the polling schedule).
    after: float | None = None
    #: Whether the operator's finalizer belongs on the object after this step.
    finalizer: bool = False
    #: Whether to write :attr:`status` (not for an object whose deletion is let go).
    write_status: bool = True
    #: What happened, in one word (the ``outcome`` label of the reconcile metric).
    outcome: str = "unchanged"
    #: The reason a retry was scheduled for (the ``reason`` label of the retry metric).
    retry_reason: Reason | None = None
    #: Seconds from the first cancel attempt to DataSync accepting it (when it just did).
    cancel_latency: float | None = None

    @property
    def retry_after(self) -> float | None:
        return self.after if self.wake is Wake.RETRY else None

    @property
    def recheck_after(self) -> float | None:
        return self.after if self.wake is Wake.RECHECK else None

    def changes(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """The subset of :attr:`status` that differs from ``current`` (a minimal merge patch)."""
        if not self.write_status:
            return {}
        return {
            key: value
            for key, value in self.status.items()
            if current.get(key) != value and not (value is None and key not in current)
        }


# --- plan ------------------------------------------------------------------------------------


def plan(resource: Resource, *, due: bool = False, unsure: bool = False) -> Plan:
    """Which AWS call (if any) moves the object toward its spec now. Idempotent.

    ``due`` says that a wake-up this core asked for (poll, retry, re-check) has come; without
    it, only what the status does not yet reflect (a new object, a spec change, a deletion, a
    cancel not yet done) is acted on. ``unsure`` says that an earlier operator may have acted on
    the object without recording it (it crashed holding the Lease): a cancel is then preceded by
    a look at the execution, so that a cancel it already made is never repeated.
    """
    step = _plan(resource, due=due)
    if unsure and step.action is Action.CANCEL:
        return replace(step, action=Action.CHECK_THEN_CANCEL)
    return step


def _plan(resource: Resource, *, due: bool) -> Plan:
    spec = resource.spec
    if isinstance(spec, InvalidSpec):
        return Plan(Action.NOTHING, invalid=spec)
    idle = Plan(Action.NOTHING, spec)
    if resource.deleting:
        return _plan_deletion(resource, spec, due=due)
    if resource.cancelled:  # final: only its execution's facts are refreshed
        return replace(idle, action=Action.DESCRIBE) if due and _pollable(resource) else idle
    if resource.stalled_reason is Reason.ALREADY_FINISHED:
        return idle  # finished is final too
    # Not yet handled at this generation, or stalled on the operator's own verdict: act again.
    fresh = not resource.settled or resource.stalled_reason in REDECIDED
    if spec.desired is DesiredState.CANCELLED and _refused_then_failed(resource):
        # DataSync refused the cancel and the describe that would say why failed: find out
        # why first; sending the cancel again would only be refused again.
        return replace(idle, action=Action.DESCRIBE) if fresh or due else idle
    if spec.desired is DesiredState.CANCELLED and _unconfirmed(resource):
        return replace(idle, action=Action.CHECK_THEN_CANCEL) if fresh or due else idle
    if spec.desired is DesiredState.CANCELLED:
        acts = fresh or due or not resource.waiting
        return replace(idle, action=Action.CANCEL) if acts else idle
    if resource.execution_finished:
        return idle  # a finished execution never changes again
    return replace(idle, action=Action.DESCRIBE) if fresh or due else idle


def _plan_deletion(resource: Resource, spec: Spec, *, due: bool) -> Plan:
    idle = Plan(Action.NOTHING, spec)
    if not resource.finalized or resource.skip_cancel:
        return idle
    if spec.deletion_policy is not DeletionPolicy.CANCEL or _nothing_to_cancel(resource):
        return idle
    if resource.waiting and not due:
        return idle
    if _refused_then_failed(resource):
        return replace(idle, action=Action.DESCRIBE)
    if _unconfirmed(resource):
        return replace(idle, action=Action.CHECK_THEN_CANCEL)
    return replace(idle, action=Action.CANCEL)


def _refused_then_failed(resource: Resource) -> bool:
    """A cancel was refused and the describe that followed failed transiently."""
    return _last_failed(resource) == DESCRIBE_AFTER_REFUSAL


def _unconfirmed(resource: Resource) -> bool:
    """The last cancel's answer was lost: it may have taken effect."""
    return _last_failed(resource) == CANCEL_UNCONFIRMED


def _last_failed(resource: Resource) -> object:
    retry = resource.status.get("retry")
    last = retry.get("lastError") if isinstance(retry, Mapping) else None
    return last.get("operation") if isinstance(last, Mapping) else None


def _nothing_to_cancel(resource: Resource) -> bool:
    return (
        resource.cancelled
        or resource.execution_finished
        or resource.stalled_reason is Reason.ALREADY_FINISHED
    )


def _pollable(resource: Resource) -> bool:
    """Whether the execution may still change (its facts are worth refreshing)."""
    return not resource.execution_finished


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
    decision = _conclude(resource, outcome, now=now, policy=policy, rng=rng)
    if not resource.deleting:
        return replace(decision, finalizer=_finalizer_wanted(resource))
    released = _release(resource, outcome)
    if released is None:
        return replace(decision, finalizer=True)
    return replace(
        decision,
        events=decision.events + released,
        finalizer=False,
        write_status=False,
        wake=Wake.NEVER,
        after=None,
        outcome="deleted",
    )


def _conclude(
    resource: Resource,
    outcome: Outcome,
    *,
    now: datetime,
    policy: Policy,
    rng: random.Random | None,
) -> Decision:
    status = resource.status
    new: dict[str, Any] = (
        {} if resource.generation is None else {"observedGeneration": resource.generation}
    )
    match outcome:
        case NoCall():
            new["conditions"] = cond.restamp(resource.conditions, generation=resource.generation)
            if not resource.conditions:  # first sight of a resource with nothing to do
                new["conditions"] = _merge(resource, _idle_running(status), now)
            wake, after = _at_rest(resource, now=now, policy=policy)
            return Decision(new, wake=wake, after=after)

        case SpecInvalid(message=message):
            wanted = _stalled(Reason.INVALID_SPEC, message, cancelled=None)
            new["retry"] = None
            new["conditions"] = _merge(resource, wanted, now)
            return Decision(
                new,
                _stalled_events(resource, Reason.INVALID_SPEC, message),
                outcome="invalid-spec",
            )

        case NotPermitted(message=message):
            if resource.cancelled:
                # A cancel already accepted stays accepted; only its refreshes stop.
                new["conditions"] = cond.restamp(
                    resource.conditions, generation=resource.generation
                )
                event = Event("Warning", Reason.NOT_PERMITTED.value, message)
                return Decision(new, (event,), outcome="not-permitted")
            decision = _stall(resource, new, Reason.NOT_PERMITTED, message, now, policy)
            return replace(decision, outcome="not-permitted")

        case CancelAccepted(at=at):
            failed_before = _attempts(status)
            message = "DataSync accepted CancelTaskExecution" + (
                f" on attempt {failed_before + 1}" if failed_before else ""
            )
            accepted = at or now
            new["cancelRequestedAt"] = cond.format_time(accepted)
            new["retry"] = None
            new["conditions"] = _merge(resource, _cancelled(Reason.CANCEL_ACCEPTED, message), now)
            first = _first_attempt(status)
            # An Event only closes a story of retries (whose Warnings told it): the happy path
            # costs one write, the status, which already says it all.
            events = (
                (Event("Normal", Reason.CANCEL_ACCEPTED.value, message),) if failed_before else ()
            )
            return Decision(
                new,
                events,
                wake=Wake.POLL,
                outcome="cancelled",
                cancel_latency=max(0.0, (accepted - first).total_seconds()) if first else 0.0,
            )

        case Described(description=description) if _wants_cancel(resource) and not (
            resource.cancelled
        ):
            # The describe that finds out why an earlier cancel was refused.
            rejected = CancelRejected(_EARLIER_REFUSAL, description=description)
            return _conclude_rejected(resource, rejected, new, now=now, policy=policy, rng=rng)

        case Described(description=description):
            new["executionStatus"] = description.status
            new["execution"] = description.as_status()
            wake = Wake.NEVER if description.phase.finished else Wake.POLL
            if resource.cancelled:
                # A refresh of a cancelled execution: the facts change, the verdict does not.
                new["conditions"] = cond.restamp(
                    resource.conditions, generation=resource.generation
                )
                return Decision(new, wake=wake, outcome="refreshed")
            new["retry"] = None
            new["conditions"] = _merge(resource, _observed(description), now)
            return Decision(
                new,
                _stalled_events_for(resource, new["conditions"]),
                wake=wake,
                outcome="observed",
            )

        case CancelRejected():
            return _conclude_rejected(resource, outcome, new, now=now, policy=policy, rng=rng)

        case CallFailed() if resource.cancelled:
            # A refresh of a cancelled execution failed: the verdict stands (it must never
            # flap back to Cancelled=False); the facts are looked at again at the next poll.
            new["conditions"] = cond.restamp(resource.conditions, generation=resource.generation)
            return Decision(new, wake=Wake.POLL, outcome="refresh-failed")

        case CallFailed(error=error, operation=operation):
            if operation == "DescribeTaskExecution" and _refused_then_failed(resource):
                operation = DESCRIBE_AFTER_REFUSAL  # still finding out why it was refused
            if operation == "CancelTaskExecution" and error.kind is ErrorKind.NETWORK:
                operation = CANCEL_UNCONFIRMED  # it may have reached DataSync: look next time
            return _conclude_failure(
                resource, error, new, now=now, policy=policy, rng=rng, operation=operation
            )

        case OperatorFailed(error_type=error_type, attempts=attempts):
            message = (
                f"the operator failed {attempts} times in a row with {error_type} (a bug: please "
                "report it with the operator's log); still retrying with backoff"
            )
            decision = _stall(resource, new, Reason.INTERNAL_ERROR, message, now, policy)
            return replace(decision, wake=Wake.NEVER, after=None, outcome="internal-error")

        case _:
            assert_never(outcome)


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
        if describe_error is not None and (
            describe_error.kind.transient or describe_error.kind is ErrorKind.ACCESS_DENIED
        ):
            # Cannot tell why the cancel was refused yet: describe again (or stall).
            return _conclude_failure(
                resource, describe_error, new, now=now, policy=policy, rng=rng,
                operation=DESCRIBE_AFTER_REFUSAL,
            )
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
            wake=Wake.NEVER if phase.finished else Wake.POLL,
            outcome="already-cancelled",
        )
    if phase.finished:
        message = (
            f"the execution already finished with DataSync status {description.summary()}; "
            "there is nothing left to cancel"
        )
        decision = _stall(resource, new, Reason.ALREADY_FINISHED, message, now, policy)
        return replace(decision, wake=Wake.NEVER, after=None)  # final: no re-check
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
    operation: str = "",
) -> Decision:
    operation = operation or _operation(resource)
    if error.kind.transient:
        attempts = _attempts(resource.status) + 1
        delay = policy.backoff.delay(attempts, rng)
        next_time = cond.format_time(now + timedelta(seconds=delay))
        reason = _RETRY_REASONS[error.kind]
        shown = _SHOWN.get(operation, operation)
        message = f"{shown} failed with {error}; retry {attempts} in {delay:.1f}s"
        first = _first_attempt(resource.status) if attempts > 1 else None
        new["retry"] = {
            "attempts": attempts,
            "firstAttemptTime": cond.format_time(first or now),
            "nextAttemptTime": next_time,
            "lastError": {**error.as_status(), "operation": operation},
        }
        new["conditions"] = _merge(resource, _retrying(resource, reason, message), now)
        return Decision(
            new,
            (Event("Warning", reason.value, message),),
            wake=Wake.RETRY,
            after=delay,
            outcome="retrying",
            retry_reason=reason,
        )
    if error.kind is ErrorKind.ACCESS_DENIED:
        message = f"AWS refused the operator's credentials or permissions: {error}"
        return _stall(resource, new, Reason.ACCESS_DENIED, message, now, policy)
    if error.kind is ErrorKind.INVALID_INPUT:
        message = f"{_operation(resource)} can never succeed for this spec: {error}"
        decision = _stall(resource, new, Reason.INVALID_SPEC, message, now, policy)
        return replace(decision, outcome="invalid-spec")
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
    cancelled: bool | None = None if _wants_cancel(resource) else False
    new["conditions"] = _merge(resource, _stalled(reason, message, cancelled=cancelled), now)
    recheck = policy.stalled_recheck if reason in HEALABLE else None
    return Decision(
        new,
        _stalled_events(resource, reason, message),
        wake=Wake.RECHECK if recheck else Wake.NEVER,
        after=recheck or None,
        outcome="stalled",
    )


def _at_rest(resource: Resource, *, now: datetime, policy: Policy) -> tuple[Wake, float | None]:
    """When to look again at an object whose status stays as it is."""
    if isinstance(resource.spec, InvalidSpec):
        return Wake.NEVER, None
    retry = resource.status.get("retry")
    if isinstance(retry, Mapping):
        at = _parse_time(retry.get("nextAttemptTime"))
        return Wake.RETRY, max(0.0, (at - now).total_seconds()) if at else 0.0
    stalled = resource.stalled_reason
    if stalled in HEALABLE and policy.stalled_recheck:
        return Wake.RECHECK, policy.stalled_recheck
    if stalled is not None or not _pollable(resource):
        return Wake.NEVER, None
    if resource.cancelled or resource.spec.desired is DesiredState.RUNNING:
        return Wake.POLL, None
    return Wake.NEVER, None


# --- the finalizer of deletionPolicy: Cancel -------------------------------------------------


def _finalizer_wanted(resource: Resource) -> bool:
    """Outside deletion: held for ``deletionPolicy: Cancel`` (kept as is for an invalid spec)."""
    spec = resource.spec
    if isinstance(spec, InvalidSpec):
        return resource.finalized
    return spec.deletion_policy is DeletionPolicy.CANCEL


def _release(resource: Resource, outcome: Outcome) -> tuple[Event, ...] | None:
    """During deletion: the Events of letting the object go, or None to hold the finalizer.

    The finalizer is released only when the cancel was accepted, the execution is cancelled
    or finished, it does not exist, the policy is ``Orphan``, the spec cannot be acted on, or
    the escape-hatch annotation says so.
    """
    spec = resource.spec
    if not resource.finalized or isinstance(outcome, SpecInvalid) or isinstance(spec, InvalidSpec):
        return ()
    if spec.deletion_policy is not DeletionPolicy.CANCEL:
        return ()
    match outcome:
        case NoCall():
            if resource.skip_cancel and not _nothing_to_cancel(resource):
                message = f"deleted without cancelling the execution ({SKIP_CANCEL_ANNOTATION})"
                return (Event("Warning", "CancelOnDeleteSkipped", message),)
            return () if _nothing_to_cancel(resource) or resource.skip_cancel else None
        case CancelAccepted():
            return ()
        case CancelRejected(description=description, describe_error=describe_error):
            if description is not None:
                phase = description.phase
                ended = phase is Phase.CANCELLING or description.ended_by_cancel or phase.finished
                return () if ended else None
            if describe_error is not None and _not_found(describe_error):
                return ()
            return None
        case Described(description=description):
            return () if description.phase.finished else None
        case CallFailed() | OperatorFailed() | NotPermitted():
            return None
        case _:
            assert_never(outcome)


def _not_found(error: AwsError) -> bool:
    return error.kind is ErrorKind.INVALID_REQUEST and "not found" in error.message.lower()


# --- condition sets --------------------------------------------------------------------------

_SHOWN = {
    DESCRIBE_AFTER_REFUSAL: "DescribeTaskExecution",
    CANCEL_UNCONFIRMED: "CancelTaskExecution",
}

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
    return [
        Condition.false(ConditionType.READY, reason, message),
        (
            Condition.false(ConditionType.CANCELLED, reason, message)
            if _wants_cancel(resource)
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


def _wants_cancel(resource: Resource) -> bool:
    spec = resource.spec
    if isinstance(spec, InvalidSpec):
        return True
    return spec.desired is DesiredState.CANCELLED or resource.deleting


def _merge(resource: Resource, wanted: list[Condition], now: datetime) -> list[dict[str, Any]]:
    return cond.merge(resource.conditions, wanted, now=now, generation=resource.generation)


def _stalled_events(resource: Resource, reason: Reason, message: str) -> tuple[Event, ...]:
    """A Warning only when the resource becomes Stalled or its reason changes (not per re-check)."""
    if resource.stalled_reason is reason:
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
    return _parse_time(retry.get("firstAttemptTime")) if isinstance(retry, Mapping) else None


def _parse_time(stamp: object) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _operation(resource: Resource) -> str:
    return "CancelTaskExecution" if _wants_cancel(resource) else "DescribeTaskExecution"


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
