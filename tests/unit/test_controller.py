"""The controller's shell logic with fake Kubernetes and DataSync: one writer per key, guarded
writes, nothing lost on failed writes, deletions and ghosts forgotten, cancels before polls."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from datasync_operator.backoff import Backoff
from datasync_operator.controller import Controller, ControllerSettings
from datasync_operator.datasync import Target
from datasync_operator.events import EventRecorder
from datasync_operator.execution import Description
from datasync_operator.kube import Conflict, NotFound, ResourceRef, Unavailable
from datasync_operator.metrics import Metrics
from datasync_operator.ratelimit import RegionalRateLimiter
from datasync_operator.reconcile import Policy

ARN = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-{:017x}"
NS = "team"


class FakeKube:
    """DataSyncExecutions and Events in memory, with resourceVersion preconditions."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 100
        self.status_writes: list[tuple[str, dict[str, Any]]] = []
        self.finalizer_writes: list[tuple[str, list[str]]] = []
        self.events: list[dict[str, Any]] = []
        self.unavailable_writes = 0

    def put(self, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
        """Create or change an object as a user would (a new resourceVersion)."""
        self.version += 1
        old = self.objects.get((NS, name))
        generation = 1 if old is None else old["metadata"]["generation"]
        if old is not None and old["spec"] != spec:
            generation += 1
        obj = {
            "metadata": {
                "namespace": NS, "name": name, "uid": f"uid-{name}", "generation": generation,
                "resourceVersion": str(self.version),
                "finalizers": (old or {}).get("metadata", {}).get("finalizers", []),
                **meta,
            },
            "spec": spec,
            "status": (old or {}).get("status", {}),
        }
        self.objects[(NS, name)] = obj
        return copy.deepcopy(obj)

    async def get(self, ref: ResourceRef, namespace: str | None, name: str) -> dict[str, Any]:
        found = self.objects.get((namespace or "", name))
        if found is None:
            raise NotFound(404, "NotFound", name)
        return copy.deepcopy(found)

    async def list(self, ref: ResourceRef, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (ns, _), o in self.objects.items() if ns == namespace]

    async def create(self, ref: ResourceRef, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body

    async def patch(
        self, ref: ResourceRef, namespace: str | None, name: str, patch: dict[str, Any], *,
        resource_version: str | None = None, subresource: str | None = None,
    ) -> dict[str, Any]:
        if ref.plural == "events":
            return {}
        if self.unavailable_writes:
            self.unavailable_writes -= 1
            raise Unavailable(None, "Unavailable", "the API server is away")
        obj = self.objects.get((namespace or "", name))
        if obj is None:
            raise NotFound(404, "NotFound", name)
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        if subresource == "status":
            for key, value in patch["status"].items():
                if value is None:
                    obj["status"].pop(key, None)
                else:
                    obj["status"][key] = value
            self.status_writes.append((name, copy.deepcopy(patch["status"])))
        else:
            obj["metadata"]["finalizers"] = patch["metadata"]["finalizers"]
            self.finalizer_writes.append((name, list(patch["metadata"]["finalizers"])))
            if not obj["metadata"]["finalizers"] and obj["metadata"].get("deletionTimestamp"):
                del self.objects[(namespace or "", name)]
        return copy.deepcopy(obj)

    def condition(self, name: str, type_: str) -> tuple[str, str] | None:
        for c in self.objects[(NS, name)]["status"].get("conditions", []):
            if c["type"] == type_:
                return c["status"], c["reason"]
        return None


class FakeGateway:
    """DataSync: counts calls per execution, tracks concurrency per execution."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight = 0
        self.before_answer: Callable[[], Awaitable[None]] | None = None
        self.cancelled: set[str] = set()
        self.bug: Exception | None = None

    async def _enter(self, operation: str, target: Target) -> None:
        arn = str(target.arn)
        self.calls.append((operation, arn))
        self.in_flight[arn] += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight[arn])
        try:
            if self.before_answer is not None:
                await self.before_answer()
        finally:
            self.in_flight[arn] -= 1

    async def cancel(self, target: Target) -> None:
        await self._enter("cancel", target)
        if self.bug is not None:
            raise self.bug
        self.cancelled.add(str(target.arn))

    async def describe(self, target: Target) -> Description:
        await self._enter("describe", target)
        return Description("ERROR" if str(target.arn) in self.cancelled else "TRANSFERRING")

    def close(self) -> None:
        pass

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)


def spec(n: int, desired: str = "Cancelled", **extra: Any) -> dict[str, Any]:
    return {"executionArn": ARN.format(n), "desiredState": desired, **extra}


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def stays(check: Callable[[], bool], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        assert check()
        await asyncio.sleep(0.01)


Harness = tuple[Controller, FakeKube, FakeGateway]


@pytest.fixture
async def harness() -> Any:
    kube, gateway = FakeKube(), FakeGateway()
    metrics = Metrics()
    controller = Controller(
        gateway,  # type: ignore[arg-type]
        kube,  # type: ignore[arg-type]
        metrics,
        Policy(backoff=Backoff(base=0.01, cap=0.05), stalled_recheck=600.0),
        RegionalRateLimiter(1000.0, 100.0),
        EventRecorder(kube, component="test", instance="test"),  # type: ignore[arg-type]
        ControllerSettings(workers=4, poll_interval=0.2, failure_base_delay=0.01),
    )
    controller.start()
    yield controller, kube, gateway
    await controller.stop()


async def test_happy_path_one_call_one_guarded_status_write(harness: Harness) -> None:
    controller, kube, gateway = harness
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
    first = kube.status_writes[0][1]
    assert {c["type"]: c["status"] for c in first["conditions"]}["Cancelled"] == "True"
    assert gateway.calls[0][0] == "cancel"
    # then the poll (0.2 s here) looks until the execution reports its end, and stops
    await eventually(lambda: kube.objects[(NS, "a")]["status"].get("executionStatus") == "ERROR")
    await stays(lambda: gateway.count("cancel") == 1 and gateway.count("describe") == 1, 0.5)
    assert len(kube.status_writes) == 2
    assert kube.finalizer_writes == []
    assert kube.events == []  # the happy path writes the status and nothing else


async def test_one_writer_per_key_while_events_keep_coming(harness: Harness) -> None:
    controller, kube, gateway = harness
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    gateway.before_answer = slow
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: gateway.count("cancel") == 1)
    for n in range(20):  # label changes: new resourceVersions while the cancel is in flight
        controller.observe("MODIFIED", kube.put("a", spec(1), labels={"n": str(n)}))
        await asyncio.sleep(0)
    release.set()
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
    await stays(lambda: gateway.count("cancel") == 1, 0.3)
    assert gateway.most_in_flight == 1


async def test_an_accepted_cancel_is_not_repeated_when_its_write_fails(harness: Harness) -> None:
    controller, kube, gateway = harness
    kube.unavailable_writes = 5
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
    assert gateway.count("cancel") == 1
    assert kube.unavailable_writes == 0


async def test_a_stale_result_never_overwrites_a_newer_object(harness: Harness) -> None:
    """A describe answered after the spec changed is written against the old version: 409."""
    controller, kube, gateway = harness
    release = asyncio.Event()
    controller.observe("ADDED", kube.put("a", spec(1, "Running")))
    await eventually(lambda: kube.condition("a", "Ready") == ("True", "ExecutionActive"))

    async def slow() -> None:
        await release.wait()

    gateway.before_answer = slow
    await eventually(lambda: gateway.count("describe") == 2, timeout=2)  # a poll in flight
    controller.observe("MODIFIED", kube.put("a", spec(1, "Cancelled")))
    gateway.before_answer = None
    release.set()
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
    await stays(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"), 0.6)
    assert gateway.count("cancel") == 1


async def test_a_deleted_object_gets_no_further_call(harness: Harness) -> None:
    controller, kube, gateway = harness
    controller.observe("ADDED", kube.put("a", spec(1, "Running")))
    await eventually(lambda: gateway.count("describe") >= 2, timeout=3)
    body = kube.objects.pop((NS, "a"))
    controller.observe("DELETED", body)
    calls = len(gateway.calls)
    await stays(lambda: len(gateway.calls) == calls, 0.6)
    assert ("team", "a") not in controller.store


async def test_a_relist_drops_ghosts(harness: Harness) -> None:
    controller, kube, gateway = harness
    for name, n in (("kept", 1), ("ghost", 2)):
        controller.observe(None, kube.put(name, spec(n, "Running")))
    await eventually(lambda: gateway.count("describe") >= 2)
    kube.objects.pop((NS, "ghost"))  # deleted while the watch was away: no DELETED event
    controller.observe(None, kube.objects[(NS, "kept")])  # a relist
    await eventually(lambda: (NS, "ghost") not in controller.store, timeout=4)
    assert (NS, "kept") in controller.store
    calls = sum(1 for _, arn in gateway.calls if arn == ARN.format(2))
    await stays(lambda: sum(1 for _, arn in gateway.calls if arn == ARN.format(2)) == calls, 0.5)


async def test_deletion_policy_cancel_holds_the_finalizer_until_cancelled(harness: Harness) -> None:
    controller, kube, gateway = harness
    controller.observe("ADDED", kube.put("a", spec(1, "Running", deletionPolicy="Cancel")))
    await eventually(lambda: kube.finalizer_writes == [("a", ["datasync.operator.io/finalizer"])])
    deleting = kube.put("a", spec(1, "Running", deletionPolicy="Cancel"),
                        deletionTimestamp="2026-11-29T12:00:00Z")
    controller.observe("MODIFIED", deleting)
    await eventually(lambda: (NS, "a") not in kube.objects)
    assert gateway.count("cancel") == 1
    assert kube.finalizer_writes[-1] == ("a", [])


async def test_a_cancel_overtakes_a_thousand_queued_polls() -> None:
    """One worker; 1,000 Running objects from the initial list are queued; a new Cancelled
    object is the next to be reconciled."""
    kube, gateway = FakeKube(), FakeGateway()
    controller = Controller(
        gateway, kube, Metrics(), Policy(),  # type: ignore[arg-type]
        RegionalRateLimiter(1_000_000.0, 1_000_000.0),
        EventRecorder(kube, component="t", instance="t"),  # type: ignore[arg-type]
        ControllerSettings(workers=1, poll_interval=60.0),
    )
    for n in range(1000):
        controller.observe(None, kube.put(f"r{n}", spec(n, "Running")))
    controller.start()
    try:
        await eventually(lambda: gateway.count("describe") >= 5)
        controller.observe("ADDED", kube.put("urgent", spec(5000)))
        seen = len(gateway.calls)
        await eventually(lambda: gateway.count("cancel") == 1)
        position = gateway.calls.index(("cancel", ARN.format(5000)))
        assert position <= seen + 1, f"the cancel waited behind {position - seen} calls"
    finally:
        await controller.stop()


async def test_nothing_happens_without_leadership() -> None:
    kube, gateway = FakeKube(), FakeGateway()
    leading = asyncio.Event()
    controller = Controller(
        gateway, kube, Metrics(), Policy(),  # type: ignore[arg-type]
        RegionalRateLimiter(1000.0, 100.0),
        EventRecorder(kube, component="t", instance="t"),  # type: ignore[arg-type]
        ControllerSettings(workers=2), leading=leading,
    )
    controller.start()
    try:
        controller.observe("ADDED", kube.put("a", spec(1)))
        await stays(lambda: gateway.calls == [] and kube.status_writes == [], 0.3)
        assert list(controller.condition_counts()) == []  # standbys publish no gauge
        leading.set()
        await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
        assert ("Cancelled", "True", 1) in list(controller.condition_counts())
    finally:
        await controller.stop()


async def test_an_operator_bug_is_retried_counted_and_shown_then_heals(harness: Harness) -> None:
    controller, kube, gateway = harness
    gateway.bug = KeyError("executionArn")  # not an AWS failure: the operator's own code
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: kube.condition("a", "Stalled") == ("True", "InternalError"))
    message = next(c["message"] for c in kube.objects[(NS, "a")]["status"]["conditions"]
                   if c["type"] == "Stalled")
    assert "KeyError" in message
    errors = controller.metrics.registry.get_sample_value(
        "datasync_operator_internal_errors_total", {"type": "KeyError"})
    assert errors is not None and errors >= 5
    await eventually(lambda: [e["reason"] for e in kube.events] == ["InternalError"])
    gateway.bug = None  # fixed (say, by an upgrade): the retries go on and it heals
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
    assert kube.condition("a", "Stalled") == ("False", "Idle")


async def test_a_lost_cancel_answer_is_checked_not_repeated(harness: Harness) -> None:
    """The cancel reached DataSync but its answer was lost: the retry looks, finds it
    cancelled, and never sends a second cancel."""
    from datasync_operator.errors import AwsError, ErrorKind

    controller, kube, gateway = harness
    original = gateway.cancel

    async def accepted_then_lost(target: Target) -> None:
        await original(target)
        if gateway.count("cancel") == 1:
            raise AwsError(ErrorKind.NETWORK, "ReadTimeoutError", "Read timeout")

    gateway.cancel = accepted_then_lost  # type: ignore[method-assign]
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "AlreadyCancelled"))
    assert gateway.count("cancel") == 1
    assert gateway.count("describe") >= 1


async def test_a_leader_that_inherited_from_a_crash_checks_listed_objects_first(
    harness: Harness,
) -> None:
    controller, kube, gateway = harness
    controller.inherited = lambda: True
    gateway.cancelled.add(ARN.format(1))  # the crashed leader's cancel took effect, unrecorded
    controller.observe(None, kube.put("listed", spec(1)))
    await eventually(lambda: kube.condition("listed", "Cancelled") == ("True", "AlreadyCancelled"))
    assert gateway.calls == [("describe", ARN.format(1))]  # looked, did not cancel again
    controller.observe("ADDED", kube.put("new", spec(2)))  # created since: nobody touched it
    await eventually(lambda: kube.condition("new", "Cancelled") == ("True", "CancelAccepted"))
    assert ("cancel", ARN.format(2)) in gateway.calls
    assert ("describe", ARN.format(2)) not in gateway.calls[:3]
