"""The access check in the controller, with fake Kubernetes and DataSync: before any AWS call and
before the rate limiter, re-decided at once when a policy or a namespace's labels change."""

from __future__ import annotations

from typing import Any

import pytest

from datasync_operator import FINALIZER, SKIP_CANCEL_ANNOTATION
from datasync_operator.access import AccessDirectory, AssumedRole
from datasync_operator.backoff import Backoff
from datasync_operator.controller import POLICIES, Controller, ControllerSettings
from datasync_operator.datasync import Target
from datasync_operator.events import EventRecorder
from datasync_operator.execution import Description
from datasync_operator.kube import ResourceRef, Unavailable
from datasync_operator.metrics import Metrics
from datasync_operator.ratelimit import RegionalRateLimiter
from datasync_operator.reconcile import Policy
from tests.unit.test_controller import NS, FakeGateway, FakeKube, eventually, spec, stays

ACCOUNT = "111122223333"  # the account of tests.unit.test_controller.ARN
ROLE = f"arn:aws:iam::{ACCOUNT}:role/team/datasync"
UNKNOWN_REGION = "arn:aws:datasync:xx:111122223333:task/task-0123456789abcdef0/execution/exec-{:017x}"


class RecordingGateway(FakeGateway):
    """Also keeps the targets, to see the role and namespace each call was made as."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[Target] = []

    async def cancel(self, target: Target) -> None:
        self.targets.append(target)
        await super().cancel(target)

    async def describe(self, target: Target) -> Description:
        self.targets.append(target)
        return await super().describe(target)


class PolicyKube(FakeKube):
    """FakeKube that also lists policies (or fails to, while ``policies_unavailable``)."""

    def __init__(self) -> None:
        super().__init__()
        self.policies: list[dict[str, Any]] = []
        self.policies_unavailable = False

    async def list(self, ref: ResourceRef, namespace: str | None) -> list[dict[str, Any]]:
        if ref == POLICIES:
            if self.policies_unavailable:
                raise Unavailable(None, "Unavailable", "the API server is away")
            return list(self.policies)
        return await super().list(ref, namespace)


def policy(name: str, rv: int, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}, "spec": spec}


def namespace(labels: dict[str, str], rv: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": NS, "resourceVersion": str(rv), "labels": labels}}


Harness = tuple[Controller, PolicyKube, RecordingGateway, Metrics]


@pytest.fixture
async def make() -> Any:
    started: list[Controller] = []

    async def build(access: AccessDirectory | None = None, poll_interval: float = 0.2) -> Harness:
        kube, gateway, metrics = PolicyKube(), RecordingGateway(), Metrics()
        controller = Controller(
            gateway,  # type: ignore[arg-type]
            kube,  # type: ignore[arg-type]
            metrics,
            Policy(backoff=Backoff(base=0.01, cap=0.05), stalled_recheck=600.0),
            RegionalRateLimiter(1000.0, 100.0),
            EventRecorder(kube, component="test", instance="test"),  # type: ignore[arg-type]
            ControllerSettings(workers=4, poll_interval=poll_interval, failure_base_delay=0.01,
                               undecided_delay=0.02),
            access=access or AccessDirectory(synced=True),
        )
        controller.start()
        started.append(controller)
        return controller, kube, gateway, metrics

    yield build
    for controller in started:
        await controller.stop()


def regions_rate_limited(metrics: Metrics) -> set[str]:
    return {
        sample.labels["region"]
        for family in metrics.registry.collect()
        if family.name.endswith("rate_limit_wait_seconds")
        for sample in family.samples
        if "region" in sample.labels
    }


def warnings(kube: FakeKube) -> list[str]:
    return [e["reason"] for e in kube.events if e["type"] == "Warning"]


async def test_a_refusal_makes_no_call_and_never_reaches_the_rate_limiter(make: Any) -> None:
    controller, kube, gateway, metrics = await make()
    controller.observe_policy("ADDED", policy("other", 1, namespaces=["elsewhere"], accounts=[ACCOUNT]))
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: kube.condition("a", "Stalled") == ("True", "NotPermitted"))
    await eventually(lambda: "NotPermitted" in warnings(kube))
    message = next(c["message"] for c in kube.objects[(NS, "a")]["status"]["conditions"]
                   if c["type"] == "Stalled")
    assert "no DataSyncAccessPolicy selects namespace 'team'" in message and "other" in message
    await stays(lambda: gateway.calls == [], 0.3)
    assert regions_rate_limited(metrics) == set()


async def test_a_new_policy_heals_at_once_without_touching_the_object(make: Any) -> None:
    controller, kube, gateway, _ = await make()
    controller.observe_policy("ADDED", policy("other", 1, namespaces=["elsewhere"], accounts=[ACCOUNT]))
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: kube.condition("a", "Stalled") == ("True", "NotPermitted"))
    version = kube.objects[(NS, "a")]["metadata"]["generation"]
    controller.observe_policy("ADDED", policy(
        "team", 2, namespaces=[NS], accounts=[ACCOUNT], roleArn=ROLE, externalId="xid-team"))
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
    assert kube.objects[(NS, "a")]["metadata"]["generation"] == version
    assert gateway.count("cancel") == 1
    target = gateway.targets[0]
    assert target.role == AssumedRole(ROLE, "xid-team") and target.namespace == NS


async def test_revoking_stops_polling_at_once_and_shows_why(make: Any) -> None:
    controller, kube, gateway, _ = await make(poll_interval=3.0)
    controller.observe_policy("ADDED", policy("team", 1, namespaces=[NS], accounts=[ACCOUNT]))
    controller.observe("ADDED", kube.put("a", spec(1, "Running")))
    await eventually(lambda: kube.condition("a", "Ready") == ("True", "ExecutionActive"))
    assert gateway.count("describe") == 1  # the next poll is about 3 s away
    controller.observe_policy("MODIFIED", policy("team", 2, namespaces=[NS], accounts=["999999999999"]))
    # shown at once, not at the next poll, and that poll never comes
    await eventually(lambda: kube.condition("a", "Stalled") == ("True", "NotPermitted"), timeout=1)
    await stays(lambda: gateway.count("describe") == 1, 3.5)


async def test_an_accepted_cancel_stays_accepted_when_revoked(make: Any) -> None:
    controller, kube, gateway, _ = await make()
    gateway.cancelled.add("never")  # describes answer TRANSFERRING: the poll goes on
    controller.observe_policy("ADDED", policy("team", 1, namespaces=[NS], accounts=[ACCOUNT]))
    controller.observe("ADDED", kube.put("a", spec(1)))
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"))
    controller.observe_policy("DELETED", policy("team", 2, namespaces=[NS], accounts=[ACCOUNT]))
    controller.observe_policy("ADDED", policy("z", 3, namespaces=["elsewhere"], accounts=[ACCOUNT]))
    await eventually(lambda: "NotPermitted" in warnings(kube))
    calls = len(gateway.calls)
    await stays(lambda: len(gateway.calls) == calls, 0.6)
    assert kube.condition("a", "Cancelled") == ("True", "CancelAccepted")
    assert kube.condition("a", "Ready") == ("True", "CancelAccepted")


async def test_nothing_is_decided_before_the_policies_could_be_listed(make: Any) -> None:
    access = AccessDirectory()
    controller, kube, gateway, _ = await make(access)
    kube.policies_unavailable = True
    controller.observe("ADDED", kube.put("a", spec(1)))
    await stays(lambda: gateway.calls == [] and kube.status_writes == [], 0.4)
    kube.policies = [policy("team", 1, namespaces=[NS], accounts=[ACCOUNT])]
    kube.policies_unavailable = False  # the listing retries with backoff (0.5 s, then 1 s, ...)
    await eventually(lambda: kube.condition("a", "Cancelled") == ("True", "CancelAccepted"), timeout=5)
    assert access.synced


async def test_namespace_labels_are_awaited_then_followed(make: Any) -> None:
    controller, kube, gateway, _ = await make()
    controller.observe_policy("ADDED", policy(
        "tenants", 1, namespaceSelector={"matchLabels": {"tenant": "yes"}}, accounts=[ACCOUNT]))
    controller.observe("ADDED", kube.put("a", spec(1, "Running")))
    await stays(lambda: gateway.calls == [] and kube.status_writes == [], 0.3)  # labels unknown
    controller.observe_namespace("ADDED", namespace({"tenant": "yes"}))
    await eventually(lambda: kube.condition("a", "Ready") == ("True", "ExecutionActive"))
    controller.observe_namespace("MODIFIED", namespace({}, rv=2))  # the label is taken away
    await eventually(lambda: kube.condition("a", "Stalled") == ("True", "NotPermitted"), timeout=1)


async def test_without_policies_a_named_role_is_refused(make: Any) -> None:
    controller, kube, gateway, _ = await make()
    controller.observe("ADDED", kube.put("a", spec(1, roleArn=ROLE)))
    await eventually(lambda: kube.condition("a", "Stalled") == ("True", "NotPermitted"))
    await stays(lambda: gateway.calls == [], 0.2)
    controller.observe("ADDED", kube.put("b", spec(2)))
    await eventually(lambda: kube.condition("b", "Cancelled") == ("True", "CancelAccepted"))
    assert gateway.targets[-1].role is None  # the operator's own identity


async def test_an_unknown_region_is_terminal_with_no_call_bucket_or_metric_series(make: Any) -> None:
    controller, kube, gateway, metrics = await make()
    controller.observe("ADDED", kube.put("a", {"executionArn": UNKNOWN_REGION.format(1),
                                               "desiredState": "Cancelled"}))
    await eventually(lambda: kube.condition("a", "Stalled") == ("True", "InvalidSpec"))
    await stays(lambda: gateway.calls == [], 0.3)
    assert regions_rate_limited(metrics) == set()
    assert "xx" not in controller.limiter._buckets
    assert [w for w in warnings(kube) if w == "InvalidSpec"]


async def test_the_skip_annotation_lets_a_refused_deletion_go(make: Any) -> None:
    """A deletion that makes no call is never held by a refusal, even with a poll pending."""
    controller, kube, gateway, _ = await make(poll_interval=3.0)
    controller.observe_policy("ADDED", policy("team", 1, namespaces=[NS], accounts=[ACCOUNT]))
    controller.observe("ADDED", kube.put("a", spec(1, "Running", deletionPolicy="Cancel")))
    await eventually(lambda: kube.objects[(NS, "a")]["metadata"]["finalizers"] == [FINALIZER])
    # revoked, and deleted with the escape hatch, before the controller looked again
    controller.observe_policy("MODIFIED", policy("team", 2, namespaces=["elsewhere"], accounts=[ACCOUNT]))
    controller.observe("MODIFIED", kube.put(
        "a", spec(1, "Running", deletionPolicy="Cancel"), deletionTimestamp="2026-11-29T12:00:00Z",
        annotations={SKIP_CANCEL_ANNOTATION: "true"}))
    await eventually(lambda: (NS, "a") not in kube.objects)
    assert gateway.count("cancel") == 0
