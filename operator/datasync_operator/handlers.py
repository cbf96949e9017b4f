"""The kopf shell: handler registrations that wire Kubernetes events to the decision core.

Each handler reads the object, asks :func:`.reconcile.plan` what to do, makes the AWS call(s)
through :class:`.datasync.DataSyncGateway`, and applies what :func:`.reconcile.conclude`
decided: one merge patch of the status (only the fields that changed), the Events, and a
``kopf.TemporaryError`` carrying the backoff delay when a transient failure is retried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from datasync_operator import GROUP, PLURAL, VERSION
from datasync_operator import conditions as cond
from datasync_operator.conditions import ConditionType, Reason
from datasync_operator.config import OperatorConfig
from datasync_operator.datasync import DataSyncGateway
from datasync_operator.errors import AwsError
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
    plan,
)

#: Prefix of kopf's own annotations (progress, last-handled configuration) and the finalizer.
ANNOTATION_PREFIX = GROUP
#: Reasons of a Stalled condition that a later look at AWS can heal.
_HEALABLE = frozenset({Reason.ACCESS_DENIED.value, Reason.INVALID_REQUEST.value,
                       Reason.REQUEST_REJECTED.value})


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Carries out plans against AWS and applies decisions to the object being handled."""

    def __init__(
        self,
        gateway: DataSyncGateway,
        policy: Policy,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.gateway = gateway
        self.policy = policy
        self.clock = clock
        self.rng = rng or random.Random()

    async def reconcile(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **_: Any,
    ) -> None:
        resource = Resource.from_body(body)
        step = plan(resource)
        arn = str(step.arn) if step.arn else resource.execution_arn
        log = logging.LoggerAdapter(logger, {"executionArn": arn})
        outcome = await self.carry_out(step, log)
        decision = conclude(
            resource, outcome, now=self.clock(), policy=self.policy, rng=self.rng
        )
        self.apply(body, resource, decision, patch, log)

    async def carry_out(
        self, step: Plan, log: logging.LoggerAdapter[Any]
    ) -> Outcome:
        if step.invalid_spec is not None:
            log.warning("invalid spec, no AWS call: %s", step.invalid_spec)
            return SpecInvalid(step.invalid_spec)
        if step.action is Action.NOTHING or step.arn is None:
            return NoCall()
        if step.action is Action.DESCRIBE:
            try:
                return Described(await self.gateway.describe(step.arn))
            except AwsError as error:
                return CallFailed(error)
        try:
            log.info("requesting CancelTaskExecution")
            await self.gateway.cancel(step.arn)
        except AwsError as error:
            if error.code != "InvalidRequestException":
                return CallFailed(error)
            log.info("CancelTaskExecution refused (%s); describing the execution", error.message)
            try:
                return CancelRejected(error, description=await self.gateway.describe(step.arn))
            except AwsError as describe_error:
                return CancelRejected(error, describe_error=describe_error)
        return CancelAccepted()

    def apply(
        self,
        body: kopf.Body,
        resource: Resource,
        decision: Decision,
        patch: kopf.Patch,
        log: logging.LoggerAdapter[Any],
    ) -> None:
        for key, value in decision.changes(resource.status).items():
            patch.status[key] = value
        for event in decision.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            level = logging.INFO if event.type == "Normal" else logging.WARNING
            log.log(level, "%s: %s", event.reason, event.message)
        if decision.retry_after is not None:
            raise kopf.TemporaryError(
                f"transient AWS failure; retrying in {decision.retry_after:.1f}s",
                delay=decision.retry_after,
            )


def _stalled_and_healable(status: Mapping[str, Any], **_: Any) -> bool:
    conditions = status.get("conditions") or []
    stalled = cond.find(conditions, ConditionType.STALLED)
    return bool(stalled and stalled.get("status") == "True" and stalled.get("reason") in _HEALABLE)


def register(
    registry: kopf.OperatorRegistry, config: OperatorConfig, gateway: DataSyncGateway
) -> Reconciler:
    """Register every handler of the operator in ``registry``; returns the reconciler."""
    reconciler = Reconciler(gateway, config.policy)
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
        settings.execution.max_workers = config.aws.max_pool_connections
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

    if config.stalled_recheck_interval > 0:
        kopf.timer(
            *resource,
            registry=registry,
            id="recheck-stalled",
            interval=config.stalled_recheck_interval,
            initial_delay=config.stalled_recheck_interval,
            when=_stalled_and_healable,
        )(reconciler.reconcile)
    return reconciler
