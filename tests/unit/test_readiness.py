"""/readyz: ready once kopf started, the watched DataSyncExecutions can be listed and (with
leader election) the Lease could be read. Standbys are ready; the role says who acts."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest

from datasync_operator.kube import KubeApiError, NotFound, ResourceRef
from datasync_operator.readiness import Readiness, serve


class FakeLister:
    def __init__(self) -> None:
        self.error: KubeApiError | None = None
        self.calls: list[tuple[str, str | None, int]] = []

    async def list_page(self, ref: ResourceRef, namespace: str | None, *, limit: int = 1) -> dict[str, Any]:
        self.calls.append((ref.plural, namespace, limit))
        if self.error is not None:
            raise self.error
        return {"items": []}


class FakeElection:
    def __init__(self, leader: bool = False, known: bool = False) -> None:
        self.is_leader = leader
        self.lease_known = known


async def test_standalone_is_ready_once_started_and_listed() -> None:
    kube = FakeLister()
    readiness = Readiness(kube, all_namespaces=True)
    assert readiness.report() == (False, {"ready": False, "role": "standalone", "checks": {
        "started": "kopf has not started yet", "listed": "not checked yet"}})
    readiness.mark_started()
    await readiness.check_list()
    assert readiness.report() == (True, {"ready": True, "role": "standalone",
                                         "checks": {"started": "ok", "listed": "ok"}})
    assert kube.calls == [("datasyncexecutions", None, 1)]  # cluster-wide, one object


async def test_lists_each_exact_namespace_and_leaves_patterns_to_kopf() -> None:
    kube = FakeLister()
    readiness = Readiness(kube, all_namespaces=False, namespaces=("team-a", "team-*", "team-b"))
    await readiness.check_list()
    assert [namespace for _, namespace, _ in kube.calls] == ["team-a", "team-b"]


@pytest.mark.parametrize(("error", "words"), [
    (NotFound(404, "NotFound", "the server could not find the requested resource"), "CRD installed"),
    (KubeApiError(403, "Forbidden", "cannot list"), "cannot list datasyncexecutions in all namespaces"),
    (KubeApiError(None, "ClientConnectorError", "no answer"), "no answer"),
])
async def test_not_ready_while_listing_fails_and_says_why(error: KubeApiError, words: str) -> None:
    kube = FakeLister()
    readiness = Readiness(kube, all_namespaces=True)
    readiness.mark_started()
    kube.error = error
    await readiness.check_list()
    ready, body = readiness.report()
    assert not ready
    assert words in body["checks"]["listed"]
    kube.error = None  # fixed (CRD installed, RBAC granted, API server back): ready again
    await readiness.check_list()
    assert readiness.report()[0]


@pytest.mark.parametrize(("leader", "known", "ready", "role"), [
    (True, True, True, "leader"),
    (False, True, True, "standby"),  # a warm standby is ready: see the module docstring
    (False, False, False, "standby"),  # the Lease could not be read yet
])
async def test_leader_election(leader: bool, known: bool, ready: bool, role: str) -> None:
    readiness = Readiness(FakeLister(), all_namespaces=True,
                          election=FakeElection(leader, known))
    readiness.mark_started()
    await readiness.check_list()
    got, body = readiness.report()
    assert (got, body["role"]) == (ready, role)
    assert body["checks"]["leadership"] == ("ok" if ready else "the Lease could not be read yet")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_served_over_http_with_503_until_ready() -> None:
    kube = FakeLister()
    readiness = Readiness(kube, all_namespaces=True, retry=0.01, recheck=0.01)
    url = f"http://127.0.0.1:{_free_port()}/readyz"
    server = asyncio.create_task(serve(readiness, url))
    checks = asyncio.create_task(readiness.run())
    try:
        for _ in range(200):
            try:
                status, body = await asyncio.to_thread(_get, url)
                break
            except OSError:
                await asyncio.sleep(0.02)
        assert status == 503 and body["checks"]["started"] != "ok"
        readiness.mark_started()
        status, body = await asyncio.to_thread(_get, url)
        assert (status, body["ready"]) == (200, True)
        kube.error = KubeApiError(403, "Forbidden", "RBAC says no")
        await asyncio.sleep(0.1)
        status, body = await asyncio.to_thread(_get, url)
        assert status == 503 and "RBAC says no" in body["checks"]["listed"]
    finally:
        server.cancel()
        checks.cancel()
        await asyncio.gather(server, checks, return_exceptions=True)
