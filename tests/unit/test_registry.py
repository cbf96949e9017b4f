"""What the operator registers with kopf: event handlers and activities, nothing that writes.

kopf writes to objects (progress and last-handled annotations, its finalizer) only for
change-detecting handlers (create/update/resume/delete), timers and daemons. The operator has
none: the controller is the objects' only writer.
"""

from __future__ import annotations

from typing import Any

import kopf

from datasync_operator.config import OperatorConfig
from datasync_operator.handlers import register
from datasync_operator.kube import KubeClient
from datasync_operator.metrics import Metrics
from datasync_operator.runner import build_controller


def registry() -> Any:
    metrics = Metrics()
    controller = build_controller(OperatorConfig(all_namespaces=True), KubeClient(lambda: None), metrics)
    made = kopf.OperatorRegistry()
    register(made, controller)
    controller.gateway.close()
    return made


def test_event_handlers_only_and_no_handler_that_makes_kopf_write() -> None:
    made = registry()
    watching = made._watching.get_all_handlers()
    # the executions; the access policies and namespace labels of the access decision
    assert [h.id for h in watching] == ["observe", "access-policy", "namespace-labels"]
    assert made._changing.get_all_handlers() == []
    assert made._spawning.get_all_handlers() == []
    assert made._indexing.get_all_handlers() == []


def test_activities_configure_log_in_and_clean_up() -> None:
    activities = {h.activity.value for h in registry()._activities.get_all_handlers()}
    assert {"startup", "authentication", "cleanup"} <= activities
