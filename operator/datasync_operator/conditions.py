"""Status conditions in the shape of ``metav1.Condition``, and the rules for changing them.

Pure functions, no I/O. The four condition types follow the Kubernetes API conventions and
kstatus: ``Ready`` and ``Cancelled`` are normal-true, ``Reconciling`` and ``Stalled`` are
abnormal-true (present and ``True`` only while something is in progress or blocked), so Flux
and Argo CD read them without custom expressions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class ConditionType(enum.StrEnum):
    """The condition types this operator writes, in the order it writes them."""

    READY = "Ready"
    CANCELLED = "Cancelled"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(enum.StrEnum):
    """Every reason the operator writes into a condition (a closed, documented set)."""

    #: DataSync accepted CancelTaskExecution.
    CANCEL_ACCEPTED = "CancelAccepted"
    #: The execution was already cancelled (or is being cancelled) when the operator looked.
    ALREADY_CANCELLED = "AlreadyCancelled"
    #: The execution finished (SUCCESS, or ERROR for another cause) before it could be cancelled.
    ALREADY_FINISHED = "AlreadyFinished"
    #: DataSync answered HTTP 5xx / InternalException; retrying with backoff.
    RETRYING_SERVER_ERROR = "RetryingServerError"
    #: DataSync throttled the request; retrying with backoff.
    THROTTLED = "Throttled"
    #: Timeout or connection failure talking to DataSync; retrying with backoff.
    RETRYING_NETWORK_ERROR = "RetryingNetworkError"
    #: An unexpected failure in the operator itself; retrying with backoff.
    RETRYING_UNEXPECTED_ERROR = "RetryingUnexpectedError"
    #: DataSync rejected the request as invalid (for example an unknown execution).
    INVALID_REQUEST = "InvalidRequest"
    #: DataSync rejected the request for another client-side cause.
    REQUEST_REJECTED = "RequestRejected"
    #: Missing or insufficient AWS credentials or permissions.
    ACCESS_DENIED = "AccessDenied"
    #: The resource's spec is invalid (it slipped past the CRD schema), or can never succeed
    #: (a region its partition does not have, a request botocore refuses to build).
    INVALID_SPEC = "InvalidSpec"
    #: No DataSyncAccessPolicy grants the resource's namespace its account, region or role.
    NOT_PERMITTED = "NotPermitted"
    #: A bug in the operator itself failed this resource's reconcile repeatedly (still retried).
    INTERNAL_ERROR = "InternalError"
    #: ``desiredState`` is Running: no cancel was requested.
    NOT_REQUESTED = "NotRequested"
    #: desiredState Running and the execution is queued or in progress.
    EXECUTION_ACTIVE = "ExecutionActive"
    #: desiredState Running and the execution finished successfully.
    EXECUTION_SUCCEEDED = "ExecutionSucceeded"
    #: desiredState Running and the execution ended in ERROR.
    EXECUTION_FAILED = "ExecutionFailed"
    #: DataSync reported a status this operator does not know; shown as is.
    UNKNOWN_EXECUTION_STATUS = "UnknownExecutionStatus"
    #: No work and no blocker (the reason of a False ``Reconciling`` / ``Stalled``).
    IDLE = "Idle"


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition as the operator wants it; ``lastTransitionTime`` is decided on merge."""

    type: ConditionType
    status: ConditionStatus
    reason: Reason
    message: str

    @classmethod
    def true(cls, type_: ConditionType, reason: Reason, message: str) -> Condition:
        return cls(type_, ConditionStatus.TRUE, reason, message)

    @classmethod
    def false(cls, type_: ConditionType, reason: Reason, message: str) -> Condition:
        return cls(type_, ConditionStatus.FALSE, reason, message)

    @classmethod
    def unknown(cls, type_: ConditionType, reason: Reason, message: str) -> Condition:
        return cls(type_, ConditionStatus.UNKNOWN, reason, message)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes ``metav1.Time``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Mapping[str, Any]], type_: ConditionType) -> Mapping[str, Any] | None:
    """The stored condition of that type, if any."""
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == type_.value:
            return condition
    return None


def is_true(conditions: Iterable[Mapping[str, Any]], type_: ConditionType) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == ConditionStatus.TRUE.value


def merge(
    current: Sequence[Mapping[str, Any]],
    wanted: Iterable[Condition],
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The new conditions list: ``wanted`` applied on top of ``current``.

    ``lastTransitionTime`` is kept when a condition's status does not change and set to ``now``
    when it does (or when the condition is new). Conditions of types this operator does not own
    are kept untouched, after its own, so other controllers' conditions survive.
    """
    merged: list[dict[str, Any]] = []
    wanted_types: set[str] = set()
    for condition in wanted:
        wanted_types.add(condition.type.value)
        previous = find(current, condition.type)
        transition = format_time(now)
        if previous is not None and previous.get("status") == condition.status.value:
            transition = str(previous.get("lastTransitionTime") or transition)
        entry: dict[str, Any] = {
            "type": condition.type.value,
            "status": condition.status.value,
            "reason": condition.reason.value,
            "message": condition.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    merged.extend(
        dict(condition)
        for condition in current
        if isinstance(condition, Mapping) and condition.get("type") not in wanted_types
    )
    return merged


def restamp(
    current: Sequence[Mapping[str, Any]], *, generation: int | None
) -> list[dict[str, Any]]:
    """The same conditions, marked as observed at ``generation`` (nothing else changes)."""
    restamped = []
    for condition in current:
        entry = dict(condition)
        if generation is not None and entry.get("type") in set(ConditionType):
            entry["observedGeneration"] = generation
        restamped.append(entry)
    return restamped
