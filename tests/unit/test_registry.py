"""The handlers the operator registers with kopf, and the finalizer rules they imply."""

from __future__ import annotations

from typing import Any

import kopf
from kopf._core.intents import handlers as kopf_handlers

from datasync_operator.config import OperatorConfig
from datasync_operator.datasync import DataSyncGateway
from datasync_operator.metrics import Metrics
from datasync_operator.runner import build_registry


def registry() -> Any:
    metrics = Metrics()
    gateway = DataSyncGateway(metrics=metrics)
    try:
        return build_registry(OperatorConfig(all_namespaces=True), gateway, metrics)
    finally:
        gateway.close()


def test_timers_never_require_a_finalizer() -> None:
    timers = [
        h for h in registry()._spawning._handlers if isinstance(h, kopf_handlers.TimerHandler)
    ]
    assert {t.id for t in timers} == {"recheck-stalled", "refresh-execution"}
    assert all(t.requires_finalizer is False for t in timers)


def test_only_the_cancel_on_delete_handler_requires_a_finalizer() -> None:
    changing = registry()._changing._handlers
    requiring = [h for h in changing if h.requires_finalizer]
    assert [h.id for h in requiring] == ["cancel-on-delete"]
    assert requiring[0].when is not None
    assert requiring[0].when(spec={"deletionPolicy": "Cancel"}) is True
    assert requiring[0].when(spec={"deletionPolicy": "Orphan"}) is False
    assert requiring[0].when(spec={}) is False


def test_reconcile_is_registered_for_create_update_resume() -> None:
    reconcile = [h for h in registry()._changing._handlers if h.id == "reconcile"]
    assert {h.reason for h in reconcile} == {kopf.Reason.CREATE, kopf.Reason.UPDATE, None}
    assert [h.initial for h in reconcile if h.reason is None] == [True]  # resume
