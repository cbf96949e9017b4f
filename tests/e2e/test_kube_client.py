"""The operator's own Kubernetes client and Lease leader election on the real kube-apiserver.

What is checked here is the API server's behaviour that the operator relies on: a merge patch of
/status carrying a stale ``metadata.resourceVersion`` is refused (409) and changes nothing, a
PUT of a Lease with a stale resourceVersion lets exactly one replica win, 401 leads to one new
login. "Server away" is a port nothing listens on and a listener that never answers (the
session's control plane is shared by every e2e test, so it is not stopped here).

These tests are async (the client and electors live on the test's event loop), so they wait
with the small async ``eventually`` below rather than the blocking ``tests.support.waiting``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import kopf
import pytest
from aiohttp import web

from datasync_operator import GROUP, PLURAL, VERSION
from datasync_operator.kube import (
    Conflict,
    KubeApiError,
    KubeClient,
    NotFound,
    ResourceRef,
    Unavailable,
)
from datasync_operator.leadership import LEASES, LeaderElector, LeaseSettings
from tests.support.controlplane import ControlPlane

DSE = ResourceRef(GROUP, VERSION, PLURAL)
NAMESPACES = ResourceRef("", "v1", "namespaces")
ARN = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-0123456789abcdef1"
# Short timings so hand-overs take seconds: duration 3 s, renew deadline 2 s, retry 0.5 s.
TIMINGS: dict[str, Any] = {"duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}


async def eventually(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Wait (without blocking the loop) until ``predicate()`` is truthy; return seconds taken."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} (waited {timeout:g}s)")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def admin_info(plane: ControlPlane) -> kopf.ConnectionInfo:
    """The admin identity as kopf's login would find it: PEM data from the kubeconfig."""
    config = json.loads(plane.kubeconfig.read_text(encoding="utf-8"))
    user = config["users"][0]["user"]
    return kopf.ConnectionInfo(
        server=plane.server,
        ca_data=config["clusters"][0]["cluster"]["certificate-authority-data"],
        certificate_data=user["client-certificate-data"],
        private_key_data=user["client-key-data"],
    )


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> str:
    name = f"kube-client-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    return name


@pytest.fixture
async def make_client(control_plane: ControlPlane) -> AsyncIterator[Callable[[], KubeClient]]:
    """New admin clients (one per simulated replica), closed at teardown."""
    clients: list[KubeClient] = []
    info = admin_info(control_plane)

    def make() -> KubeClient:
        clients.append(KubeClient(lambda: info, timeout=10.0))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def client(make_client: Callable[[], KubeClient]) -> KubeClient:
    return make_client()


def execution(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DataSyncExecution",
        "metadata": {"name": name},
        "spec": {"executionArn": ARN},
    }


# --- the client -------------------------------------------------------------------------------


async def test_create_get_and_list_in_pages(client: KubeClient, namespace: str) -> None:
    prefix = f"page-{uuid.uuid4().hex[:4]}"
    names = {f"{prefix}-{i}" for i in range(5)}
    for name in sorted(names):
        created = await client.create(DSE, namespace, execution(name))
        assert created["metadata"]["resourceVersion"]
    got = await client.get(DSE, namespace, f"{prefix}-3")
    assert (got["metadata"]["name"], got["spec"]["desiredState"]) == (f"{prefix}-3", "Running")

    in_pages = await client.list(DSE, namespace, limit=2)  # 3+ pages: continue tokens
    assert names <= {o["metadata"]["name"] for o in in_pages}
    everywhere = await client.list(DSE, None, limit=2)
    assert names <= {o["metadata"]["name"] for o in everywhere if o["metadata"]["namespace"] == namespace}

    core = await client.get(NAMESPACES, None, namespace)  # the core group: /api/v1
    assert core["metadata"]["name"] == namespace
    with pytest.raises(Conflict) as exc_info:
        await client.create(DSE, namespace, execution(f"{prefix}-0"))
    assert exc_info.value.status == 409 and exc_info.value.reason == "AlreadyExists"


async def test_status_patch_with_a_stale_resource_version_is_refused(
    client: KubeClient, namespace: str
) -> None:
    name = f"guarded-{uuid.uuid4().hex[:4]}"
    stale = (await client.create(DSE, namespace, execution(name)))["metadata"]["resourceVersion"]
    newer = await client.patch(DSE, namespace, name, {"metadata": {"labels": {"touched": "yes"}}})
    fresh = newer["metadata"]["resourceVersion"]
    assert fresh != stale

    with pytest.raises(Conflict) as exc_info:
        await client.patch(DSE, namespace, name, {"status": {"executionStatus": "STALE"}},
                           resource_version=stale, subresource="status")
    assert exc_info.value.status == 409
    unchanged = await client.get(DSE, namespace, name)
    assert "status" not in unchanged or "executionStatus" not in unchanged["status"]
    assert unchanged["metadata"]["resourceVersion"] == fresh

    applied = await client.patch(DSE, namespace, name, {"status": {"executionStatus": "QUEUED"}},
                                 resource_version=fresh, subresource="status")
    assert applied["status"]["executionStatus"] == "QUEUED"
    assert (await client.get(DSE, namespace, name))["status"]["executionStatus"] == "QUEUED"

    # A PUT is guarded the same way.
    with pytest.raises(Conflict):
        await client.replace(DSE, namespace, name, {**unchanged, "spec": {"executionArn": ARN}})


async def test_not_found(client: KubeClient, namespace: str) -> None:
    with pytest.raises(NotFound) as exc_info:
        await client.get(DSE, namespace, "no-such-object")
    assert exc_info.value.status == 404
    assert str(exc_info.value).startswith("404 NotFound: ")
    with pytest.raises(NotFound):
        await client.patch(DSE, namespace, "no-such-object", {"status": {}}, subresource="status")


async def test_a_401_logs_in_again_once(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = admin_info(control_plane)
    secret = f"expired-token-{uuid.uuid4().hex}"
    expired = kopf.ConnectionInfo(server=good.server, ca_data=good.ca_data, token=secret)
    answers = [expired, good]
    logins: list[int] = []

    def credentials() -> kopf.ConnectionInfo:
        logins.append(1)
        return answers.pop(0) if answers else expired

    client = KubeClient(credentials)
    try:
        assert (await client.get(NAMESPACES, None, "default"))["metadata"]["name"] == "default"
        assert len(logins) == 2
        await client.get(NAMESPACES, None, "default")
        assert len(logins) == 2  # the session is kept

        answers[:] = [expired, expired]
        await client.close()  # next request logs in again, gets a 401, logs in again, 401 again
        with pytest.raises(KubeApiError) as exc_info:
            await client.get(NAMESPACES, None, "default")
        assert exc_info.value.status == 401 and len(logins) == 4
        assert secret not in str(exc_info.value)
    finally:
        await client.close()
    assert secret not in caplog.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"


async def _unavailable(server: str, timeout: float = 10.0) -> Unavailable:
    client = KubeClient(lambda: kopf.ConnectionInfo(server=server, token="t"), timeout=timeout)
    try:
        with pytest.raises(Unavailable) as exc_info:
            await client.get(NAMESPACES, None, "default")
        return exc_info.value
    finally:
        await client.close()


async def test_unavailable_when_nothing_listens() -> None:
    error = await _unavailable(f"https://127.0.0.1:{_free_port()}")
    assert error.status is None and "GET /api/v1/namespaces/default" in str(error)


async def test_unavailable_when_the_server_never_answers(silent_server: str) -> None:
    started = time.monotonic()
    error = await _unavailable(silent_server, timeout=0.5)
    assert error.status is None and time.monotonic() - started < 5


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_unavailable_when_overloaded_or_failing(status: int) -> None:
    async def answer(request: web.Request) -> web.Response:
        body = {"kind": "Status", "reason": "TooManyRequests" if status == 429 else "InternalError",
                "message": "busy", "code": status}
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        error = await _unavailable(f"http://127.0.0.1:{port}")
        assert error.status == status and error.message == "busy"
    finally:
        await runner.cleanup()


# --- leader election on the real API server ----------------------------------------------------


@pytest.fixture
async def electors(
    make_client: Callable[[], KubeClient], namespace: str
) -> AsyncIterator[Callable[..., tuple[LeaderElector, asyncio.Task[None]]]]:
    """Start replicas (own client each) competing for one new Lease; cancelled at teardown."""
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    tasks: list[asyncio.Task[None]] = []

    def start(identity: str, **options: Any) -> tuple[LeaderElector, asyncio.Task[None]]:
        settings = LeaseSettings(namespace, lease, identity, **{**TIMINGS, **options})
        elector = LeaderElector(make_client(), settings)
        tasks.append(asyncio.create_task(elector.run(), name=identity))
        return elector, tasks[-1]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _holder(client: KubeClient, elector: LeaderElector) -> dict[str, Any]:
    lease = await client.get(LEASES, elector.settings.namespace, elector.settings.name)
    spec: dict[str, Any] = lease["spec"]
    return spec


async def _one_leader(a: LeaderElector, b: LeaderElector) -> tuple[LeaderElector, LeaderElector]:
    await eventually(lambda: a.is_leader or b.is_leader, 15, "nobody became leader")
    return (a, b) if a.is_leader else (b, a)


async def _watch_renewals(client: KubeClient, leader: LeaderElector, other: LeaderElector,
                          count: int) -> dict[str, Any]:
    """Let the leader renew ``count`` times; exactly one replica leads all along."""
    seen: set[str] = set()
    spec: dict[str, Any] = {}
    started = time.monotonic()
    while len(seen) < count:
        assert leader.is_leader and not other.is_leader
        spec = await _holder(client, leader)
        assert spec["holderIdentity"] == leader.settings.identity
        seen.add(spec["renewTime"])
        assert time.monotonic() - started < 10 * count, f"only {len(seen)} renewals"
        await asyncio.sleep(0.1)
    return spec


async def test_two_replicas_one_leader_and_a_graceful_handover(
    electors: Callable[..., tuple[LeaderElector, asyncio.Task[None]]],
    client: KubeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="datasync_operator.leadership")
    (a, a_task), (b, b_task) = electors("replica-a"), electors("replica-b")
    leader, standby = await _one_leader(a, b)
    before = await _watch_renewals(client, leader, standby, count=3)

    leader_task = a_task if leader is a else b_task
    started = time.monotonic()
    leader_task.cancel()
    await asyncio.gather(leader_task, return_exceptions=True)
    await eventually(lambda: standby.is_leader, 10, "the standby never took over")
    took = time.monotonic() - started
    # Released: the standby takes over at its next retry, long before the 3 s lease expires.
    assert took < TIMINGS["duration"] - TIMINGS["retry_period"], f"hand-over took {took:.2f}s"
    after = await _holder(client, standby)
    assert after["holderIdentity"] == standby.settings.identity
    assert after["leaseTransitions"] == before["leaseTransitions"] + 1
    assert not leader.is_leader
    where = f"{leader.settings.namespace}/{leader.settings.name}"
    text = caplog.text
    assert f"leader election: released lease {where}" in text
    assert f"leader election: became leader of lease {where} as {standby.settings.identity}" in text
    assert f"leader election: standing by; lease {where} is held by {leader.settings.identity}" in text


async def test_a_leader_that_dies_without_release_is_replaced_after_duration(
    electors: Callable[..., tuple[LeaderElector, asyncio.Task[None]]],
    client: KubeClient,
) -> None:
    (a, a_task) = electors("killed", release_on_cancel=False)
    await eventually(lambda: a.is_leader, 15, "the first replica never became leader")
    b, _ = electors("survivor")
    await _watch_renewals(client, a, b, count=2)

    started = time.monotonic()
    a_task.cancel()  # renewals stop; the Lease still names the dead replica
    await asyncio.gather(a_task, return_exceptions=True)
    assert (await _holder(client, a))["holderIdentity"] == "killed"
    await eventually(lambda: b.is_leader, 15, "the standby never took over")
    took = time.monotonic() - started
    duration, retry = TIMINGS["duration"], TIMINGS["retry_period"]
    # The last renewal was at most one retry period before the kill; the standby waits a full
    # duration after it saw that renewal, then at most one (jittered) retry more.
    assert duration - retry - 0.2 <= took <= duration + 3 * retry + 2, f"took {took:.2f}s"
    assert (await _holder(client, b))["holderIdentity"] == "survivor"


async def test_only_one_of_many_racing_replicas_wins_a_new_lease(
    electors: Callable[..., tuple[LeaderElector, asyncio.Task[None]]],
    client: KubeClient,
) -> None:
    replicas = [electors(f"racer-{i}")[0] for i in range(4)]
    await eventually(lambda: any(r.is_leader for r in replicas), 15, "nobody became leader")
    leader = next(r for r in replicas if r.is_leader)
    others = [r for r in replicas if r is not leader]
    await asyncio.gather(*(_watch_renewals(client, leader, o, count=1) for o in others))
    assert sum(r.is_leader for r in replicas) == 1

