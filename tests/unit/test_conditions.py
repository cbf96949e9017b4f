"""Condition merge rules: lastTransitionTime moves only when status changes."""

from __future__ import annotations

from datetime import UTC, datetime

from datasync_operator.conditions import (
    Condition,
    ConditionType,
    Reason,
    find,
    is_true,
    merge,
    restamp,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def ready(status: str, reason: Reason = Reason.CANCEL_ACCEPTED, message: str = "m") -> Condition:
    factory = {"True": Condition.true, "False": Condition.false, "Unknown": Condition.unknown}
    return factory[status](ConditionType.READY, reason, message)


def test_new_condition_gets_now_and_generation() -> None:
    merged = merge([], [ready("True")], now=T0, generation=3)
    assert merged == [{
        "type": "Ready", "status": "True", "reason": "CancelAccepted", "message": "m",
        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3,
    }]


def test_same_status_keeps_transition_time_even_if_reason_changes() -> None:
    first = merge([], [ready("False", Reason.THROTTLED)], now=T0, generation=1)
    second = merge(first, [ready("False", Reason.RETRYING_SERVER_ERROR, "x")], now=T1, generation=2)
    assert second[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second[0]["reason"] == "RetryingServerError"
    assert second[0]["message"] == "x"
    assert second[0]["observedGeneration"] == 2


def test_status_change_moves_transition_time() -> None:
    first = merge([], [ready("False")], now=T0, generation=1)
    for status in ("True", "Unknown"):
        changed = merge(first, [ready(status)], now=T1, generation=1)
        assert changed[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"


def test_no_generation_means_no_observed_generation() -> None:
    assert "observedGeneration" not in merge([], [ready("True")], now=T0, generation=None)[0]


def test_find_and_is_true_ignore_garbage() -> None:
    conditions = [{"type": "Ready", "status": "True"}, "junk", {"type": "Stalled"}]
    assert find(conditions, ConditionType.READY) == {"type": "Ready", "status": "True"}  # type: ignore[arg-type]
    assert is_true(conditions, ConditionType.READY)  # type: ignore[arg-type]
    assert not is_true(conditions, ConditionType.STALLED)  # type: ignore[arg-type]
    assert find([], ConditionType.CANCELLED) is None


def test_restamp_only_touches_own_conditions() -> None:
    own = {"type": "Ready", "status": "True", "observedGeneration": 1}
    foreign = {"type": "Other", "status": "True", "observedGeneration": 1}
    assert restamp([own, foreign], generation=4) == [
        {**own, "observedGeneration": 4}, foreign
    ]
