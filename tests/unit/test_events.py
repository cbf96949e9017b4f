"""Events are coalesced per object, type and reason (client-go's EventCorrelator): an hour-long
AWS outage retried by 1000 resources leaves a few Events per resource, not one per retry."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from datasync_operator.backoff import Backoff
from datasync_operator.events import EventRecorder, Involved
from datasync_operator.kube import NotFound, ResourceRef


class FakeEvents:
    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}
        self.patches = 0

    async def create(self, ref: ResourceRef, namespace: str | None, body: dict[str, Any]) -> Any:
        self.created[body["metadata"]["name"]] = body
        return body

    async def patch(self, ref: ResourceRef, namespace: str | None, name: str,
                    patch: dict[str, Any], **_: Any) -> Any:
        if name not in self.created:
            raise NotFound(404, "NotFound", name)
        self.created[name].update(patch)
        self.patches += 1
        return self.created[name]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def drain(recorder: EventRecorder) -> None:
    task = asyncio.create_task(recorder.run())
    await recorder.close()
    await task


async def test_an_hour_of_retries_by_a_thousand_resources_is_one_event_each() -> None:
    kube, clock = FakeEvents(), Clock()
    recorder = EventRecorder(kube, component="datasync-operator", instance="pod-1",  # type: ignore[arg-type]
                             clock=clock)
    backoff, rng = Backoff(base=2.0, cap=300.0), random.Random(7)
    schedule = []  # (time, resource, attempt) of every retry during a one-hour outage
    for n in range(1000):
        at, attempt = 0.0, 1
        while at < 3600:
            schedule.append((at, n, attempt))
            at += backoff.delay(attempt, rng)
            attempt += 1
    schedule.sort()
    for at, n, attempt in schedule:
        clock.now = at
        recorder.record(Involved("team", f"dse-{n}", f"uid-{n}"), "Warning",
                        "RetryingServerError", f"retry {attempt} in ...")
    await drain(recorder)
    per_resource: dict[str, int] = {}
    for event in kube.created.values():
        name = event["involvedObject"]["name"]
        per_resource[name] = per_resource.get(name, 0) + 1
    assert len(schedule) > 15_000  # the retries happened...
    assert max(per_resource.values()) <= 2  # ...but a resource has at most a couple of Events
    total = sum(int(e["count"]) for e in kube.created.values())
    assert total == len(schedule)  # and their counts add up to every retry
    sample = next(iter(kube.created.values()))
    assert sample["reportingComponent"] == "datasync-operator"
    assert sample["reportingInstance"] == "pod-1"


async def test_different_reasons_and_objects_are_separate_series() -> None:
    kube, clock = FakeEvents(), Clock()
    recorder = EventRecorder(kube, component="c", instance="i", clock=clock)  # type: ignore[arg-type]
    a, b = Involved("ns", "a", "uid-a"), Involved("ns", "b", "uid-b")
    for who, reason in ((a, "Throttled"), (a, "Throttled"), (a, "AccessDenied"), (b, "Throttled")):
        recorder.record(who, "Warning", reason, "m")
    await drain(recorder)
    series = sorted((e["involvedObject"]["name"], e["reason"], e["count"]) for e in kube.created.values())
    assert series == [("a", "AccessDenied", 1), ("a", "Throttled", 2), ("b", "Throttled", 1)]


async def test_a_series_older_than_the_window_starts_a_new_event() -> None:
    kube, clock = FakeEvents(), Clock()
    recorder = EventRecorder(kube, component="c", instance="i", window=600, clock=clock)  # type: ignore[arg-type]
    who = Involved("ns", "a", "uid-a")
    recorder.record(who, "Warning", "Throttled", "first")
    clock.now = 601
    recorder.record(who, "Warning", "Throttled", "later")
    await drain(recorder)
    assert sorted(e["message"] for e in kube.created.values()) == ["first", "later"]


async def test_an_event_deleted_on_the_server_is_created_again() -> None:
    kube, clock = FakeEvents(), Clock()
    recorder = EventRecorder(kube, component="c", instance="i", clock=clock)  # type: ignore[arg-type]
    who = Involved("ns", "a", "uid-a")
    recorder.record(who, "Warning", "Throttled", "one")
    await drain(recorder)
    kube.created.clear()  # expired by the API server's event TTL
    recorder = EventRecorder(kube, component="c", instance="i", clock=clock)  # type: ignore[arg-type]
    recorder.record(who, "Warning", "Throttled", "two")
    await drain(recorder)
    assert [e["message"] for e in kube.created.values()] == ["two"]
