"""The kopf shell: handler registrations that wire Kubernetes events to the decision core.

Each handler reads the object, asks the core (:mod:`.reconcile`) which AWS call to make, makes
it through :class:`.datasync.DataSyncGateway`, and applies what the core decided: one merge patch
of the status (only the fields that changed), the Events, metrics, and a
``kopf.TemporaryError`` carrying the backoff delay when a transient failure is retried.

Handlers:

* ``reconcile`` (create, update, resume; and the ``recheck-stalled`` timer): cancel or observe;
* ``refresh-execution`` (timer): mirror DescribeTaskExecution until the execution finishes;
* ``cancel-on-delete`` (delete, only with ``deletionPolicy: Cancel``): cancel before deletion;
* ``condition_index`` and ``arn_index`` (kopf indices): the resources gauge, log enrichment.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kopf._core.intents import handlers as kopf_handlers

from datasync_operator import GROUP, PLURAL, VERSION
from datasync_operator import conditions as cond
from datasync_operator.conditions import ConditionType, Reason
from datasync_operator.config import OperatorConfig
from datasync_operator.datasync import DataSyncGateway, Target, role_session_name
from datasync_operator.errors import INVALID_REQUEST_CODE, AwsError
from datasync_operator.logs import ArnDirectory
from datasync_operator.metrics import Metrics
from datasync_operator.reconcile import (
    Action,
    CallFailed,
    CancelAccepted,
    CancelRejected,
    Decision,
    Described,
    NoCall,
    Outcome,
    Plan,
    Policy,
    Resource,
    SpecInvalid,
    conclude,
    deletion_retry_delay,
    plan,
    plan_deletion,
    plan_refresh,
)

#: Prefix of kopf's own annotations (progress, last-handled configuration) and the finalizer.
ANNOTATION_PREFIX = GROUP
#: Set to "true" on a resource to delete it without the cancel of ``deletionPolicy: Cancel``
#: (the escape hatch for a finalizer stuck on an unreachable or forbidding AWS).
SKIP_CANCEL_ANNOTATION = f"{GROUP}/skip-cancel-on-delete"
#: Reasons of a Stalled condition that a later look at AWS can heal.
_HEALABLE = frozenset(
    {Reason.ACCESS_DENIED.value, Reason.INVALID_REQUEST.value, Reason.REQUEST_REJECTED.value}
)

_CONDITION_TYPES = frozenset(t.value for t in ConditionType)

Planner = Callable[[Resource], Plan]
AnyLogger = logging.Logger | logging.LoggerAdapter[Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Carries out plans against AWS and applies decisions to the object being handled."""

    def __init__(
        self,
        gateway: DataSyncGateway,
        policy: Policy,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.gateway = gateway
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()

    async def reconcile(
        self, body: kopf.Body, patch: kopf.Patch, logger: AnyLogger, **_: Any
    ) -> None:
        """Move the execution toward the spec (create, update, resume, stalled re-check)."""
        await self._handle(body, patch, logger, plan)

    async def refresh(
        self, body: kopf.Body, patch: kopf.Patch, logger: AnyLogger, **_: Any
    ) -> None:
        """Mirror DescribeTaskExecution into status (the polling timer)."""
        await self._handle(body, patch, logger, plan_refresh)

    async def cancel_on_delete(
        self, body: kopf.Body, patch: kopf.Patch, logger: AnyLogger, **_: Any
    ) -> None:
        """With ``deletionPolicy: Cancel``: cancel a running execution before it is let go."""
        if str(body.metadata.annotations.get(SKIP_CANCEL_ANNOTATION, "")).lower() == "true":
            message = f"deleted without cancelling the execution ({SKIP_CANCEL_ANNOTATION})"
            kopf.event(body, type="Warning", reason="CancelOnDeleteSkipped", message=message)
            logger.warning(message)
            return
        resource = Resource.from_body(body)
        step = plan_deletion(resource)
        outcome = await self.carry_out(resource, step, _with_arn(logger, resource))
        decision = conclude(resource, outcome, now=self.clock(), policy=self.policy, rng=self.rng)
        delay = deletion_retry_delay(decision, self.policy)
        if delay is None:
            self.metrics.reconciles.labels("deleted").inc()
            for event in decision.events:
                kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            return
        self.apply(body, resource, decision, patch, _with_arn(logger, resource))
        raise kopf.TemporaryError(
            f"deletion waits for the cancel of the execution; next try in {delay:.1f}s",
            delay=delay,
        )

    async def _handle(
        self, body: kopf.Body, patch: kopf.Patch, logger: AnyLogger, planner: Planner
    ) -> None:
        resource = Resource.from_body(body)
        log = _with_arn(logger, resource)
        step = planner(resource)
        outcome = await self.carry_out(resource, step, log)
        decision = conclude(resource, outcome, now=self.clock(), policy=self.policy, rng=self.rng)
        self.apply(body, resource, decision, patch, log)
        if decision.retry_after is not None:
            raise kopf.TemporaryError(
                f"transient AWS failure; retrying in {decision.retry_after:.1f}s",
                delay=decision.retry_after,
            )

    async def carry_out(self, resource: Resource, step: Plan, log: AnyLogger) -> Outcome:
        if step.invalid_spec is not None:
            log.warning("invalid spec, no AWS call: %s", step.invalid_spec)
            return SpecInvalid(step.invalid_spec)
        if step.action is Action.NOTHING or step.arn is None:
            return NoCall()
        target = Target(step.arn, step.role_arn, _session_name(resource, step))
        if step.action is Action.DESCRIBE:
            try:
                return Described(await self.gateway.describe(target))
            except AwsError as error:
                return CallFailed(error)
        try:
            log.info("requesting CancelTaskExecution")
            await self.gateway.cancel(target)
        except AwsError as error:
            if error.code != INVALID_REQUEST_CODE:
                return CallFailed(error)
            log.info("CancelTaskExecution refused (%s); describing the execution", error.message)
            try:
                return CancelRejected(error, description=await self.gateway.describe(target))
            except AwsError as describe_error:
                return CancelRejected(error, describe_error=describe_error)
        return CancelAccepted()

    def apply(
        self,
        body: kopf.Body,
        resource: Resource,
        decision: Decision,
        patch: kopf.Patch,
        log: AnyLogger,
    ) -> None:
        for key, value in decision.changes(resource.status).items():
            patch.status[key] = value
        for event in decision.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            level = logging.INFO if event.type == "Normal" else logging.WARNING
            log.log(level, "%s: %s", event.reason, event.message)
        self.metrics.reconciles.labels(decision.outcome).inc()
        if decision.retry_after is not None:
            ready = cond.find(decision.status.get("conditions") or [], ConditionType.READY)
            self.metrics.retries.labels(str(ready.get("reason")) if ready else "unknown").inc()
        if decision.cancel_latency is not None:
            self.metrics.cancel_latency.observe(decision.cancel_latency)


def _session_name(resource: Resource, step: Plan) -> str | None:
    if step.role_arn is None:
        return None
    return role_session_name(resource.namespace or "", resource.name or "")


def _with_arn(logger: AnyLogger, resource: Resource) -> logging.LoggerAdapter[Any]:
    return logging.LoggerAdapter(logger, {"executionArn": str(resource.execution_arn)})


def _stalled_and_healable(status: Mapping[str, Any], **_: Any) -> bool:
    conditions = status.get("conditions") or []
    stalled = cond.find(conditions, ConditionType.STALLED)
    return bool(stalled and stalled.get("status") == "True" and stalled.get("reason") in _HEALABLE)


def _needs_refresh(body: kopf.Body, **_: Any) -> bool:
    return plan_refresh(Resource.from_body(body)).action is Action.DESCRIBE


def _cancels_on_delete(spec: Mapping[str, Any], **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Cancel"


def _timers_without_finalizer(registry: kopf.OperatorRegistry) -> None:
    """Let our timers run without a finalizer on the resources they watch.

    kopf gives every timer a finalizer so that it is stopped before its resource is gone. Ours
    only read AWS and patch status, and kopf stops them on the deletion event anyway; a finalizer
    would make an ``Orphan`` resource undeletable while the operator is down and cost an extra
    write per resource. The only finalizer left is the one of ``deletionPolicy: Cancel``.
    kopf has no public switch for this, so the registered handlers are adjusted; a unit test
    (tests/unit/test_registry.py) catches a kopf release that changes these internals.
    """
    spawning = registry._spawning
    spawning._handlers[:] = [
        dataclasses.replace(handler, requires_finalizer=False)
        if isinstance(handler, kopf_handlers.TimerHandler)
        else handler
        for handler in spawning._handlers
    ]


def register(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    gateway: DataSyncGateway,
    metrics: Metrics,
    arns: ArnDirectory | None = None,
) -> Reconciler:
    """Register every handler of the operator in ``registry``; returns the reconciler."""
    reconciler = Reconciler(gateway, config.policy, metrics)
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.INFO
        settings.posting.loggers = False  # only the operator's explicit Events are posted
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330

    # kopf's usual logins (in-cluster service account or kubeconfig), first that works wins.
    for login in (kopf.login_via_pykube, kopf.login_via_client):
        kopf.on.login(registry=registry, id=login.__name__, errors=kopf.ErrorsMode.IGNORED)(login)

    @kopf.on.cleanup(registry=registry)
    def close(**_: Any) -> None:
        gateway.close()

    for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorator(*resource, registry=registry, id="reconcile")(reconciler.reconcile)

    kopf.on.delete(*resource, registry=registry, id="cancel-on-delete", when=_cancels_on_delete)(
        reconciler.cancel_on_delete
    )

    if config.stalled_recheck_interval > 0:
        kopf.timer(
            *resource,
            registry=registry,
            id="recheck-stalled",
            interval=config.stalled_recheck_interval,
            initial_delay=config.stalled_recheck_interval,
            when=_stalled_and_healable,
        )(reconciler.reconcile)

    if config.poll_interval > 0:
        kopf.timer(
            *resource,
            registry=registry,
            id="refresh-execution",
            interval=config.poll_interval,
            initial_delay=config.poll_interval,
            when=_needs_refresh,
        )(reconciler.refresh)

    _timers_without_finalizer(registry)

    # In-memory indices (kopf keeps them current and drops deleted objects; they log nothing):
    # uid -> ARN for log lines (first, so that even the indexers' own lines carry the ARN),
    # conditions for the resources gauge.
    @kopf.index(*resource, registry=registry, id="arn_index")
    def arn_index(body: kopf.Body, **_: Any) -> dict[str, object]:
        uid, arn = str(body.metadata.uid), (body.get("spec") or {}).get("executionArn")
        if arns is not None:
            arns.remember(uid, arn)
        return {uid: arn}

    @kopf.index(*resource, registry=registry, id="condition_index")
    def condition_index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], None]:
        conditions = (body.get("status") or {}).get("conditions") or []
        return {
            (str(c.get("type")), str(c.get("status"))): None
            for c in conditions
            if isinstance(c, Mapping) and c.get("type") in _CONDITION_TYPES
        }

    @kopf.on.startup(registry=registry, id="attach-indices")
    def attach_indices(**kwargs: Any) -> None:
        metrics.conditions.attach(kwargs["condition_index"])
        if arns is not None:
            arns.attach(kwargs["arn_index"])

    return reconciler
