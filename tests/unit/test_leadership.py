"""Lease leader election (datasync_operator.leadership) against an in-memory Lease API.

The fake API below keeps Leases in a dict with resourceVersions (a stale PUT is a 409, like the
real API server); expiry is driven by a fake clock that the tests advance, while the electors
pace their retries with a real (tiny) ``retry_period``. Every wait is a condition with a
deadline: "still standing by" is checked after the elector has read the Lease several more times.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from datasync_operator.kube import Conflict, NotFound, ResourceRef, Unavailable
from datasync_operator.leadership import LeaderElector, LeaseSettings, default_identity

NS, NAME = "ops", "datasync-operator"
WHERE = f"{NS}/{NAME}"


class FakeLeases:
    """The three Lease calls of KubeClient, in memory, with optimistic concurrency."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str | None, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.down = False
        self.before_replace: Callable[[], None] | None = None
        self._version = 0

    def _call(self, verb: str) -> None:
        self.calls.append(verb)
        if self.down:
            raise Unavailable(None, "ClientConnectorError", "connection refused")

    def count(self, verb: str) -> int:
        return self.calls.count(verb)

    def store(self, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(self._version)
        self.objects[(namespace, obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def spec(self) -> dict[str, Any]:
        return dict(self.objects[(NS, NAME)]["spec"])

    def write_as(self, holder: str, transitions: int = 0) -> None:
        """Another replica writes (or renews) the Lease as ``holder``."""
        spec = {"holderIdentity": holder, "leaseDurationSeconds": 15,
                "renewTime": f"renewed-{self._version}", "leaseTransitions": transitions}
        self.store(NS, {"metadata": {"name": NAME, "namespace": NS}, "spec": spec})

    async def get(self, ref: ResourceRef, namespace: str | None, name: str) -> dict[str, Any]:
        self._call("get")
        if (namespace, name) not in self.objects:
            raise NotFound(404, "NotFound", f"leases {name!r} not found")
        return copy.deepcopy(self.objects[(namespace, name)])

    async def create(
        self, ref: ResourceRef, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._call("create")
        if (namespace, body["metadata"]["name"]) in self.objects:
            raise Conflict(409, "AlreadyExists", "already exists")
        return self.store(namespace, body)

    async def replace(
        self, ref: ResourceRef, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._call("replace")
        if self.before_replace is not None:
            hook, self.before_replace = self.before_replace, None
            hook()
        current = self.objects[(namespace, name)]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        return self.store(namespace, body)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.002)


async def more_calls(api: FakeLeases, verb: str, n: int = 3) -> None:
    """Wait until the elector has made ``n`` more calls of ``verb`` (it went round its loop)."""
    target = api.count(verb) + n
    await eventually(lambda: api.count(verb) >= target)


@pytest.fixture
def api() -> FakeLeases:
    return FakeLeases()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def messages(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    caplog.set_level(logging.INFO, logger="datasync_operator.leadership")
    yield lambda: [r.getMessage() for r in caplog.records if r.name.endswith("leadership")]


Start = Callable[..., tuple[LeaderElector, "asyncio.Task[None]"]]


@pytest.fixture
async def start(api: FakeLeases, clock: FakeClock) -> AsyncIterator[Start]:
    """Start an elector's ``run()`` as a task (cancelled at teardown)."""
    tasks: list[asyncio.Task[None]] = []

    def _start(identity: str, **options: Any) -> tuple[LeaderElector, asyncio.Task[None]]:
        settings = LeaseSettings(NS, NAME, identity, **{"retry_period": 0.005, **options})
        elector = LeaderElector(api, settings, clock=clock)
        tasks.append(asyncio.create_task(elector.run()))
        return elector, tasks[-1]

    yield _start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_acquires_a_missing_lease(
    api: FakeLeases, start: Start, messages: Callable[[], list[str]]
) -> None:
    elector, _ = start("me")
    await asyncio.wait_for(elector.wait_leading(), 5)
    spec = api.spec()
    assert spec["holderIdentity"] == "me"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert api.calls[:2] == ["get", "create"]
    assert f"leader election: became leader of lease {WHERE} as me" in messages()
    assert not elector.inherited


async def test_renews_with_one_put_per_round(api: FakeLeases, start: Start) -> None:
    elector, _ = start("me")
    await asyncio.wait_for(elector.wait_leading(), 5)
    first = api.spec()
    gets = api.count("get")
    await more_calls(api, "replace", 5)
    spec = api.spec()
    assert spec["renewTime"] > first["renewTime"]
    assert (spec["acquireTime"], spec["leaseTransitions"]) == (first["acquireTime"], 0)
    assert api.count("get") == gets  # renewals write what was last written, no read first
    assert elector.is_leader


async def test_standby_takes_over_only_after_duration_of_an_unchanged_record(
    api: FakeLeases, clock: FakeClock, start: Start, messages: Callable[[], list[str]]
) -> None:
    api.write_as("other", transitions=4)
    elector, _ = start("me")
    await more_calls(api, "get")
    clock.advance(14.0)
    await more_calls(api, "get")
    assert not elector.is_leader

    api.write_as("other", transitions=4)  # the holder renews at t=14: the wait starts over
    await more_calls(api, "get")
    clock.advance(14.0)  # 28 s after the first record, 14 s after the renewal
    await more_calls(api, "get")
    assert not elector.is_leader
    assert api.count("replace") == 0

    clock.advance(1.1)
    await asyncio.wait_for(elector.wait_leading(), 5)
    spec = api.spec()
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("me", 5)
    assert spec["acquireTime"] == spec["renewTime"]
    standby = f"leader election: standing by; lease {WHERE} is held by other"
    assert messages().count(standby) == 1  # once per holder, not every retry
    assert elector.inherited  # the holder never released: it may have left work unrecorded


async def test_conflict_on_takeover_leaves_it_standing_by(
    api: FakeLeases, clock: FakeClock, start: Start, messages: Callable[[], list[str]]
) -> None:
    api.write_as("other")
    elector, _ = start("me")
    await more_calls(api, "get")
    api.before_replace = lambda: api.write_as("third")  # someone else wins this round
    clock.advance(16.0)
    await eventually(lambda: api.before_replace is None)
    await more_calls(api, "get")
    assert not elector.is_leader
    assert api.spec()["holderIdentity"] == "third"
    assert f"leader election: standing by; lease {WHERE} is held by third" in messages()
    assert not any("became leader" in m for m in messages())


async def test_renewals_failing_for_renew_deadline_lose_leadership(
    api: FakeLeases, clock: FakeClock, start: Start, messages: Callable[[], list[str]]
) -> None:
    elector, _ = start("me")
    await asyncio.wait_for(elector.wait_leading(), 5)
    api.down = True
    await more_calls(api, "get")  # the fast-path PUT failed: it reads first from now on
    clock.advance(9.9)
    await more_calls(api, "get")
    assert elector.is_leader

    clock.advance(0.2)
    await eventually(lambda: not elector.is_leader)
    assert f"leader election: lost lease {WHERE}" in messages()
    assert sum("cannot use lease" in m for m in messages()) == 1  # one warning per cause

    api.down = False  # the record still names us and nobody took it: lead again
    await asyncio.wait_for(elector.wait_leading(), 5)
    assert api.spec()["leaseTransitions"] == 0


async def test_leader_that_sees_another_holder_loses_at_once(
    api: FakeLeases, start: Start, messages: Callable[[], list[str]]
) -> None:
    elector, _ = start("me")
    await asyncio.wait_for(elector.wait_leading(), 5)
    api.write_as("usurper")
    await eventually(lambda: not elector.is_leader)
    assert f"leader election: lost lease {WHERE}" in messages()
    assert api.spec()["holderIdentity"] == "usurper"


async def test_cancel_releases_so_a_standby_takes_over_at_once(
    api: FakeLeases, start: Start, messages: Callable[[], list[str]]
) -> None:
    leader, leader_task = start("me")
    await asyncio.wait_for(leader.wait_leading(), 5)
    standby, _ = start("standby")
    await more_calls(api, "get")
    assert not standby.is_leader

    leader_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader_task
    assert not leader.is_leader
    assert f"leader election: released lease {WHERE}" in messages()

    await asyncio.wait_for(standby.wait_leading(), 5)  # no clock advance: no expiry needed
    assert api.spec()["holderIdentity"] == "standby"
    assert api.spec()["leaseTransitions"] == 1
    assert not standby.inherited  # a released Lease: its holder finished its work


async def test_cancel_without_release_keeps_the_record(api: FakeLeases, start: Start) -> None:
    leader, leader_task = start("me", release_on_cancel=False)
    await asyncio.wait_for(leader.wait_leading(), 5)
    leader_task.cancel()
    await asyncio.gather(leader_task, return_exceptions=True)
    assert api.spec()["holderIdentity"] == "me"
    assert api.spec()["leaseDurationSeconds"] == 15


async def test_cancelled_standby_writes_nothing(api: FakeLeases, start: Start) -> None:
    api.write_as("other")
    _, standby_task = start("me")
    await more_calls(api, "get")
    standby_task.cancel()
    await asyncio.gather(standby_task, return_exceptions=True)
    assert api.count("replace") == 0
    assert api.spec()["holderIdentity"] == "other"


@pytest.mark.parametrize(
    "timings",
    [
        {"duration": 10.0, "renew_deadline": 10.0},
        {"renew_deadline": 2.0, "retry_period": 2.0},
        {"retry_period": 0.0},
        {"duration": 1.0, "renew_deadline": 2.0, "retry_period": 0.5},
    ],
)
def test_settings_need_duration_above_deadline_above_retry(timings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="duration > renew_deadline > retry_period > 0"):
        LeaseSettings(NS, NAME, "me", **timings)


def test_settings_need_names() -> None:
    with pytest.raises(ValueError, match="identity"):
        LeaseSettings(NS, NAME, "")


def test_default_identity_is_pod_name_plus_random_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "datasync-operator-7c9f-abcde")
    first, second = default_identity(), default_identity()
    prefix, suffix = first.rsplit("_", 1)
    assert prefix == "datasync-operator-7c9f-abcde"
    assert len(suffix) == 8 and int(suffix, 16) >= 0
    assert first != second
