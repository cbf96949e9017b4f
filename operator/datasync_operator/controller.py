"""The controller: a compact store of the latest objects, one keyed work queue, N workers.

kopf watches; its event handler (:mod:`.handlers`) only calls :meth:`Controller.observe`, which
records a compact copy of the object and enqueues its key. Workers take keys from the
:class:`.workqueue.WorkQueue` (one entry per key, priorities, per-key backoff, at most one worker
per key, so every object has exactly one writer), ask the decision core (:mod:`.reconcile`) what
to do, make at most the AWS call it asked for (after a rate-limit wait on the event loop, never in
a thread), write status once, guarded by the resourceVersion they read, and schedule the next
wake-up the decision asked for (polls, retries, re-checks all live in the queue's one timer heap).
Any failure, Kubernetes' or AWS's, requeues the key.

Before any AWS call (and before the rate limiter sees a region), the region is checked against
the partition's (:mod:`.regions`) and the namespace's grant against the access policies
(:mod:`.access`): a region that cannot exist ends ``Stalled InvalidSpec``, a refusal ends
``Stalled NotPermitted``, with no call. kopf's two more event handlers feed the policies and the
namespace labels in (:meth:`Controller.observe_policy`, :meth:`Controller.observe_namespace`);
a change re-enqueues the keys it concerns at once, so a grant heals them and a revocation stops
their calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from datasync_operator import FINALIZER, GROUP, KIND, PLURAL, SKIP_CANCEL_ANNOTATION, VERSION
from datasync_operator.access import POLICY_PLURAL, AccessDirectory, Affected, Granted, Refused
from datasync_operator.backoff import Backoff
from datasync_operator.conditions import ConditionStatus, ConditionType
from datasync_operator.datasync import DataSyncGateway, Target
from datasync_operator.errors import INVALID_REQUEST_CODE, AwsError
from datasync_operator.events import EventRecorder, Involved
from datasync_operator.execution import Phase
from datasync_operator.kube import Conflict, KubeApiError, KubeClient, NotFound, ResourceRef
from datasync_operator.metrics import Metrics
from datasync_operator.ratelimit import RegionalRateLimiter
from datasync_operator.reconcile import (
    CANCEL_UNCONFIRMED,
    UNCONFIRMED_CANCEL,
    Action,
    CallFailed,
    CancelAccepted,
    CancelRejected,
    Decision,
    Described,
    NoCall,
    NotPermitted,
    OperatorFailed,
    Outcome,
    Plan,
    Policy,
    Resource,
    SpecInvalid,
    Wake,
    conclude,
    plan,
)
from datasync_operator.regions import KnownRegions
from datasync_operator.schedule import PollSchedule
from datasync_operator.spec import InvalidSpec, Spec, parse_spec
from datasync_operator.workqueue import Priority, QueueShutDown, WorkQueue

logger = logging.getLogger("datasync_operator.controller")

#: The DataSyncExecution resource, for the operator's own requests.
RESOURCE = ResourceRef(GROUP, VERSION, PLURAL)
#: The cluster-scoped DataSyncAccessPolicy resource (listed once at start, then watched by kopf).
POLICIES = ResourceRef(GROUP, VERSION, POLICY_PLURAL)
Key = tuple[str, str]  # (namespace, name)

_CONDITION_TYPES = tuple(ConditionType)
_CONDITION_STATUSES = tuple(ConditionStatus)
_EMPTY: tuple[str, ...] = ()


@dataclass(slots=True)
class Record:
    """The compact copy of an object the controller keeps (never the whole body)."""

    uid: str
    resource_version: str
    generation: int | None
    spec: Spec | InvalidSpec
    #: The status, as compact JSON: parsed only when the object is reconciled.
    status_json: str
    deleting: bool
    finalizers: tuple[str, ...]
    skip_cancel: bool
    #: (condition type, status) pairs packed in 2 bits per type, for the resources gauge.
    summary: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Record:
        meta = body.get("metadata") or {}
        status = body.get("status")
        status = status if isinstance(status, Mapping) else {}
        generation = meta.get("generation")
        annotations = meta.get("annotations") or {}
        finalizers = meta.get("finalizers") or ()
        return cls(
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            generation=generation if isinstance(generation, int) else None,
            spec=parse_spec(body.get("spec")),
            status_json=json.dumps(status, separators=(",", ":")) if status else "",
            deleting=bool(meta.get("deletionTimestamp")),
            finalizers=tuple(str(f) for f in finalizers) if finalizers else _EMPTY,
            skip_cancel=str(annotations.get(SKIP_CANCEL_ANNOTATION, "")).lower() == "true",
            summary=_summarize(status.get("conditions")),
        )

    def resource(self, key: Key) -> Resource:
        status = json.loads(self.status_json) if self.status_json else {}
        return Resource(
            spec=self.spec,
            generation=self.generation,
            status=status,
            namespace=key[0],
            name=key[1],
            deleting=self.deleting,
            finalized=FINALIZER in self.finalizers,
            skip_cancel=self.skip_cancel,
        )

    def newer_than(self, other: Record) -> bool:
        """Whether this copy is newer (resourceVersions are compared as etcd revisions)."""
        mine, theirs = self.resource_version, other.resource_version
        if mine.isdigit() and theirs.isdigit():
            return int(mine) > int(theirs)
        return mine != theirs


def _summarize(conditions: object) -> int:
    packed = 0
    if not isinstance(conditions, list):
        return packed
    for condition in conditions:
        if not isinstance(condition, Mapping):
            continue
        try:
            type_index = _CONDITION_TYPES.index(ConditionType(str(condition.get("type"))))
            status_index = _CONDITION_STATUSES.index(ConditionStatus(str(condition.get("status"))))
        except ValueError:
            continue
        packed |= (status_index + 1) << (2 * type_index)
    return packed


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    workers: int = 16
    poll_interval: float = 60.0
    poll_share: float = 0.5
    resync_interval: float = 600.0
    #: Longest a graceful stop waits for reconciles in flight.
    stop_grace: float = 10.0
    #: Per-key backoff after a failed write or an operator bug (AWS failures follow the
    #: reconcile policy instead): short, so that an API server back after an outage is used
    #: within seconds.
    failure_base_delay: float = 0.05
    failure_max_delay: float = 30.0
    #: Failed attempts of the operator's own code before the object shows Stalled InternalError.
    internal_error_attempts: int = 5
    #: How soon a key whose access cannot be decided yet (policies not listed, namespace labels
    #: not seen yet) is looked at again.
    undecided_delay: float = 0.5


@dataclass(slots=True)
class _Timer:
    at: float
    wake: Wake


class Controller:
    """The work queue, its workers, and the compact store they read."""

    def __init__(
        self,
        gateway: DataSyncGateway,
        kube: KubeClient,
        metrics: Metrics,
        policy: Policy,
        limiter: RegionalRateLimiter,
        events: EventRecorder,
        settings: ControllerSettings | None = None,
        *,
        access: AccessDirectory | None = None,
        regions: KnownRegions | None = None,
        leading: asyncio.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.gateway = gateway
        self.kube = kube
        self.metrics = metrics
        self.policy = policy
        self.limiter = limiter
        self.events = events
        self.settings = settings or ControllerSettings()
        #: The access policies and namespace labels (default: no policies, already listed).
        self.access = access or AccessDirectory(synced=True)
        self.regions = regions or KnownRegions.from_botocore()
        self.leading = leading
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()
        self.store: dict[Key, Record] = {}
        self.queue: WorkQueue[Key] = WorkQueue(
            clock=clock,
            rng=self.rng,
            backoff=Backoff(self.settings.failure_base_delay, self.settings.failure_max_delay),
        )
        self.schedule = PollSchedule(
            interval=self.settings.poll_interval or 60.0,
            rate=limiter.rate,
            share=self.settings.poll_share,
            rng=self.rng,
        )
        self._timers: dict[Key, _Timer] = {}
        self._poll_slots: set[Key] = set()
        #: Cancels DataSync accepted whose status is not written yet: (uid, when).
        self._accepted: dict[Key, tuple[str, datetime]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        #: Keys first seen in a listing and not yet reconciled to the end by this replica.
        self._listed: set[Key] = set()
        #: Whether this replica took over from one that crashed (see :mod:`.leadership`).
        self.inherited: Callable[[], bool] = lambda: False
        self._sweep_wanted = asyncio.Event()

    # --- the kopf side: record and enqueue -----------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record the latest copy of an object from a watch event and enqueue its key."""
        meta = body.get("metadata") or {}
        key: Key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED":
            self._drop(key)
            return
        old = self.store.get(key)
        if event_type is None and old is not None:
            # Listed again: a relist after a watch gap (the initial list only brings new keys),
            # so objects deleted meanwhile may be remembered still.
            self._sweep_wanted.set()
        if old is not None and old.resource_version == str(meta.get("resourceVersion") or ""):
            return  # our own write coming back (its answer is stored already), or no change
        record = Record.from_body(body)
        if not self._remember(key, record):
            return  # our own write coming back, or an older copy than the one we hold
        if event_type is None:  # the initial list or a relist: behind real changes
            if old is None:
                self._listed.add(key)
            self.queue.add(key, Priority.LOW)
        else:
            self.queue.add(key, Priority.NORMAL)

    def observe_policy(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record a DataSyncAccessPolicy watch event; re-enqueue the keys it may concern."""
        self._enqueue_where(self.access.observe_policy(event_type, body))

    def observe_namespace(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record a namespace's labels; re-enqueue its keys when they matter and changed."""
        name = str((body.get("metadata") or {}).get("name") or "")
        if self.access.observe_namespace(event_type, body) and self.access.needs_labels:
            self._enqueue_where(lambda namespace: namespace == name)

    def _enqueue_where(self, affected: Affected) -> None:
        for key in list(self.store):
            if affected(key[0]):
                self.queue.add(key, Priority.NORMAL)

    def _remember(self, key: Key, record: Record) -> bool:
        old = self.store.get(key)
        if old is not None and old.uid == record.uid and not record.newer_than(old):
            return False
        if old is not None and old.uid != record.uid:
            self._forget_state(key)  # deleted and created again under the same name
        self.store[key] = record
        return True

    def _drop(self, key: Key) -> None:
        self.store.pop(key, None)
        self._forget_state(key)
        self.queue.remove(key)

    def _forget_state(self, key: Key) -> None:
        self._listed.discard(key)
        self._timers.pop(key, None)
        self._poll_slots.discard(key)
        self._accepted.pop(key, None)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"datasync-worker-{n}")
            for n in range(self.settings.workers)
        ]
        self._background = [
            asyncio.create_task(self._sweeper(), name="datasync-ghost-sweeper"),
            asyncio.create_task(self.events.run(), name="datasync-event-poster"),
        ]
        if not self.access.synced:
            self._background.append(
                asyncio.create_task(self._list_policies(), name="datasync-access-policies")
            )

    async def stop(self) -> None:
        """Finish the reconciles in flight (up to the grace period), then stop the workers."""
        self.queue.shutdown()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=self.settings.stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.events.close()  # post what the last reconciles recorded
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._tasks, self._background = [], []

    def is_leader(self) -> bool:
        return self.leading is None or self.leading.is_set()

    # --- workers ---------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            if self.leading is not None:
                await self.leading.wait()
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                if not self.is_leader():
                    self.queue.add(key)  # leadership was lost while waiting: leave it queued
                    continue
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.internal_errors.labels(type(exc).__name__).inc()
                logger.exception("reconcile of %s/%s failed; requeued with backoff", *key)
                self.queue.add_rate_limited(key)
                if self.queue.failures(key) == self.settings.internal_error_attempts:
                    await self._show_internal_error(key, exc)
            finally:
                self.queue.done(key)
                self.metrics.queue_depth.set(len(self.queue))

    async def reconcile(self, key: Key) -> None:
        """One level-based step for one key: read, decide, call, write, schedule."""
        record = self.store.get(key)
        if record is None:
            self._drop(key)
            return
        resource = record.resource(key)
        log = _object_logger(key, record)
        now = self.clock()
        timer = self._timers.get(key)
        due = timer is not None and timer.at <= now + 1e-3
        # A predecessor that crashed may have cancelled an object it listed too, unrecorded.
        step = plan(resource, due=due, unsure=key in self._listed and self.inherited())
        accepted = self._accepted.get(key)
        if accepted is not None and accepted[0] == record.uid and step.action is Action.CANCEL:
            outcome: Outcome = CancelAccepted(at=accepted[1])  # done before; not written yet
        else:
            checked = self._authorize(
                key, step, live=timer is not None and not resource.deleting
            )
            if checked is None:
                self.queue.add_after(key, self.settings.undecided_delay, Priority.NORMAL)
                return  # cannot be decided yet: looked at again shortly, nothing written
            if isinstance(checked, Granted):
                if not await self._rate_gate(key, step, due=due, timer=timer):
                    return  # deferred to its rate-limit slot (the key is queued again)
                outcome = await self._carry_out(resource, step, log, checked)
            else:
                log.warning("no AWS call: %s", checked.message)
                outcome = checked
        if isinstance(outcome, CancelAccepted) and outcome.at is None:
            accepted = (record.uid, self.wall_clock())
            self._accepted[key] = accepted
            outcome = CancelAccepted(at=accepted[1])
        decision = conclude(
            resource, outcome, now=self.wall_clock(), policy=self.policy, rng=self.rng
        )
        try:
            await self._write(key, record, resource, decision)
        except Conflict:
            log.debug("status write conflicted with a newer object; reconciling that one")
            await self._refetch(key)
            return
        except NotFound:
            self._drop(key)
            return
        except KubeApiError as error:
            delay = self.queue.add_rate_limited(key, Priority.NORMAL)
            log.warning("could not write to the API server (%s); retrying in %.1fs", error, delay)
            return
        self._accepted.pop(key, None)
        self._listed.discard(key)
        self.queue.forget(key)
        self._report(key, record, decision, log)
        if decision.finalizer or not resource.deleting:
            self._schedule(key, decision, called=not isinstance(outcome, NoCall), timer=timer)
        else:
            self._forget_state(key)

    async def _show_internal_error(self, key: Key, exc: Exception) -> None:
        """After repeated failures of the operator's own code: say so in status (best effort)."""
        record = self.store.get(key)
        if record is None:
            return
        outcome = OperatorFailed(type(exc).__name__, self.queue.failures(key))
        try:
            resource = record.resource(key)
            decision = conclude(
                resource, outcome, now=self.wall_clock(), policy=self.policy, rng=self.rng
            )
            await self._write(key, record, resource, decision)
        except Exception:  # the bug may be on this path too: the log and metric still tell
            logger.warning("could not show the internal error of %s/%s in status", *key)
            return
        self._report(key, record, decision, _object_logger(key, record))

    def _authorize(
        self, key: Key, step: Plan, *, live: bool
    ) -> Granted | SpecInvalid | NotPermitted | None:
        """Whether the call the plan asks for may be made, and as whom; None: not decidable yet.

        Checked for every planned call, and for a ``live`` object (one with a poll, retry or
        re-check to come, not being deleted), so that a revoked grant shows at once and stops
        its timer. A deletion that makes no call (the skip annotation, Orphan) is never held.
        """
        spec = step.spec
        if spec is None or (step.action is Action.NOTHING and not live):
            return Granted()
        problem = self.regions.problem(spec.arn)
        if problem is not None:
            return SpecInvalid(problem)
        if not self.access.synced:
            return None
        verdict = self.access.verdict(key[0], spec)
        if isinstance(verdict, Granted):
            return verdict
        if isinstance(verdict, Refused):
            return NotPermitted(verdict.message)
        logger.debug("labels of namespace %s not seen yet; %s/%s waits", key[0], *key)
        return None

    async def _list_policies(self) -> None:
        """List the access policies once (kopf's watch keeps them current afterwards).

        Until this list is in, no access verdict is given: a restart never acts on an empty
        view of the policies. Without the CRD there can be no policies.
        """
        delay = 0.5
        while True:
            try:
                items = await self.kube.list(POLICIES, None)
            except NotFound:
                logger.warning(
                    "the DataSyncAccessPolicy CRD is not installed: the rules of a cluster "
                    "without access policies apply"
                )
                items = []
            except KubeApiError as error:
                logger.warning(
                    "cannot list DataSyncAccessPolicies (%s): no AWS call is made until they "
                    "can be read; retrying in %.0fs",
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.access.listed(items)
            logger.info("access policies listed: %d", len(items))
            return

    async def _rate_gate(self, key: Key, step: Plan, *, due: bool, timer: _Timer | None) -> bool:
        """Wait for (cancels) or reserve (describes) a rate-limit slot; False if deferred."""
        if step.action is Action.NOTHING or step.spec is None:
            return True
        region = step.spec.region
        if step.action in (Action.CANCEL, Action.CHECK_THEN_CANCEL):
            waited = await self.limiter.acquire(region)
            self.metrics.rate_limited.labels(region).observe(waited)
            return True
        polling = due and timer is not None and timer.wake is Wake.POLL
        if polling and key not in self._poll_slots:
            wait = self.schedule.reserve(region, self.clock())
            if wait > 0:
                self._poll_slots.add(key)
                self.queue.add_after(key, wait, Priority.LOW)
                return False
        wait = self.limiter.try_take(region)
        if wait > 0:
            self.metrics.rate_limited.labels(region).observe(wait)
            self.queue.add_after(key, wait, Priority.LOW)
            return False
        self._poll_slots.discard(key)
        return True

    async def _carry_out(
        self, resource: Resource, step: Plan, log: _Logger, grant: Granted
    ) -> Outcome:
        if step.invalid is not None:
            log.warning("invalid spec, no AWS call: %s", step.invalid.message)
            return SpecInvalid(step.invalid.message)
        spec = step.spec
        if step.action is Action.NOTHING or spec is None:
            return NoCall()
        target = Target(spec.arn, grant.role, resource.namespace or "")
        if step.action is Action.DESCRIBE:
            try:
                return Described(await self.gateway.describe(target))
            except AwsError as error:
                return CallFailed(error, "DescribeTaskExecution")
        if step.action is Action.CHECK_THEN_CANCEL:
            # The last cancel's answer was lost and DataSync may have acted on it: look before
            # sending another, so that a lost answer never costs a second cancel.
            try:
                description = await self.gateway.describe(target)
            except AwsError as error:
                return CallFailed(error, CANCEL_UNCONFIRMED)
            if description.phase not in (Phase.ACTIVE, Phase.UNKNOWN):
                return CancelRejected(UNCONFIRMED_CANCEL, description=description)
        try:
            log.info("requesting CancelTaskExecution")
            await self.gateway.cancel(target)
        except AwsError as error:
            if error.code != INVALID_REQUEST_CODE:
                return CallFailed(error, "CancelTaskExecution")
            log.info("CancelTaskExecution refused (%s); describing the execution", error.message)
            try:
                return CancelRejected(error, description=await self.gateway.describe(target))
            except AwsError as describe_error:
                return CancelRejected(error, describe_error=describe_error)
        return CancelAccepted()

    async def _write(
        self, key: Key, record: Record, resource: Resource, decision: Decision
    ) -> None:
        """The finalizer (when it must change) and the status, each guarded by resourceVersion."""
        namespace, name = key
        version = record.resource_version
        if decision.finalizer != resource.finalized:
            kept = [f for f in record.finalizers if f != FINALIZER]
            wanted = [*kept, FINALIZER] if decision.finalizer else kept
            body = await self.kube.patch(
                RESOURCE,
                namespace,
                name,
                {"metadata": {"finalizers": wanted}},
                resource_version=version,
            )
            if not decision.finalizer:
                return  # let go: the API server removes the object
            updated = Record.from_body(body)
            self._remember(key, updated)
            version = updated.resource_version
        changes = decision.changes(resource.status)
        if not changes:
            return
        body = await self.kube.patch(
            RESOURCE,
            namespace,
            name,
            {"status": changes},
            resource_version=version,
            subresource="status",
        )
        self._remember(key, Record.from_body(body))

    async def _refetch(self, key: Key) -> None:
        """After a conflict: take the object as it is now and reconcile it again at once."""
        try:
            body = await self.kube.get(RESOURCE, key[0], key[1])
        except NotFound:
            self._drop(key)
            return
        except KubeApiError:
            self.queue.add_rate_limited(key)
            return
        self._remember(key, Record.from_body(body))
        self.queue.add(key, Priority.NORMAL)

    def _report(self, key: Key, record: Record, decision: Decision, log: _Logger) -> None:
        involved = Involved(key[0], key[1], record.uid)
        for event in decision.events:
            self.events.record(involved, event.type, event.reason, event.message)
            level = logging.INFO if event.type == "Normal" else logging.WARNING
            log.log(level, "%s: %s", event.reason, event.message)
        if decision.outcome != "unchanged":
            self.metrics.reconciles.labels(decision.outcome).inc()
        if decision.retry_reason is not None:
            self.metrics.retries.labels(decision.retry_reason.value).inc()
        if decision.cancel_latency is not None:
            self.metrics.cancel_latency.observe(decision.cancel_latency)

    def _schedule(
        self, key: Key, decision: Decision, *, called: bool, timer: _Timer | None
    ) -> None:
        """Set (or keep) the key's one timer as the decision asks; it lives in the queue's heap."""
        now = self.clock()
        wake = decision.wake
        if wake is Wake.NEVER or (wake is Wake.POLL and self.settings.poll_interval <= 0):
            self._timers.pop(key, None)
            return
        if timer is not None and timer.wake is wake and timer.at > now + 1e-3:
            at = timer.at  # not due yet: an unrelated event does not push it back
        elif wake is Wake.POLL:
            first = timer is None and not called  # first sight after a (re)start: spread polls
            at = now + (self.schedule.first_poll() if first else self.schedule.next_poll())
        else:
            at = now + (decision.after or 0.0)
        self._timers[key] = _Timer(at, wake)
        priority = Priority.NORMAL if wake is Wake.RETRY else Priority.LOW
        self.queue.add_after(key, at - now, priority)

    # --- ghosts ----------------------------------------------------------------------------

    async def _sweeper(self) -> None:
        """Drop keys of objects that no longer exist: after every relist, and periodically."""
        interval = self.settings.resync_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_wanted.wait(), interval or None)
            self._sweep_wanted.clear()
            await asyncio.sleep(1.0)  # let a relist finish arriving
            if self.is_leader():
                try:
                    await self.sweep()
                except KubeApiError as error:
                    logger.warning("ghost sweep failed (%s); next one after the next relist", error)

    async def sweep(self) -> int:
        """List the objects; drop every remembered key that the API server no longer has."""
        namespaces = {namespace for namespace, _ in self.store}
        listed: set[Key] = set()
        for namespace in namespaces:
            for body in await self.kube.list(RESOURCE, namespace):
                meta = body.get("metadata") or {}
                listed.add((str(meta.get("namespace")), str(meta.get("name"))))
        dropped = 0
        for key in [key for key in self.store if key not in listed]:
            try:
                await self.kube.get(RESOURCE, key[0], key[1])
            except NotFound:
                logger.info("dropping %s/%s: deleted while the watch was away", *key)
                self._drop(key)
                dropped += 1
        return dropped

    # --- observability ---------------------------------------------------------------------

    def condition_counts(self) -> Iterator[tuple[str, str, int]]:
        """(condition type, status, resources) for the resources gauge; nothing on a standby."""
        if not self.is_leader():
            return
        counts = [[0] * len(_CONDITION_STATUSES) for _ in _CONDITION_TYPES]
        for record in list(self.store.values()):
            summary = record.summary
            for type_index in range(len(_CONDITION_TYPES)):
                status_index = (summary >> (2 * type_index)) & 3
                if status_index:
                    counts[type_index][status_index - 1] += 1
        for type_index, type_ in enumerate(_CONDITION_TYPES):
            for status_index, status in enumerate(_CONDITION_STATUSES):
                yield type_.value, status.value, counts[type_index][status_index]

    def arn_of(self, namespace: str, name: str) -> str | None:
        record = self.store.get((namespace, name))
        if record is None or isinstance(record.spec, InvalidSpec):
            return None
        return str(record.spec.arn)


_Logger = logging.LoggerAdapter[logging.Logger]


def _object_logger(key: Key, record: Record) -> _Logger:
    """A logger whose lines carry the object reference (kopf's formatters) and the ARN."""
    extra: dict[str, object] = {
        "k8s_ref": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "namespace": key[0],
            "name": key[1],
            "uid": record.uid,
        },
    }
    if isinstance(record.spec, Spec):
        extra["executionArn"] = str(record.spec.arn)
    return logging.LoggerAdapter(logger, extra)
