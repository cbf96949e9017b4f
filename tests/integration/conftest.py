"""Fixtures of the integration tier: the real operator process against kmock's Kubernetes
emulator and moto's DataSync server (a real HTTP endpoint) behind a fault-injecting proxy."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.kube_emulator import KubeEmulator
from tests.support.moto_server import free_port
from tests.support.objects import condition
from tests.support.operator_process import FAST_RETRIES, OperatorProcess, aws_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """A fresh emulated API server per test: no object of another test can wake the operator."""
    with KubeEmulator() as emulator:
        yield emulator


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace of this test's own, so operators of different tests never meet."""
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    return f"it-{digest}"


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(
    kube: KubeEmulator, proxy: FaultProxy, namespace: str, tmp_path: Path
) -> Iterator[OperatorFactory]:
    """Start the real operator (``python -m datasync_operator run``) watching ``namespace``."""
    started: list[OperatorProcess] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> OperatorProcess:
        port = free_port()
        process = OperatorProcess(
            ["--namespace", namespace, "--metrics-port", str(port), *FAST_RETRIES, *extra],
            env={**kube.env(), **aws_env(proxy.url), **(env or {})},
            log_path=tmp_path / f"operator-{len(started)}.log",
        )
        process.metrics_url = f"http://127.0.0.1:{port}/metrics"
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


def wait_condition(
    kube: KubeEmulator,
    name: str,
    namespace: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 30.0,
    process: OperatorProcess | None = None,
) -> dict[str, Any]:
    """Wait until the object's condition has that status (and reason); return the object."""

    def check() -> dict[str, Any] | None:
        if process is not None and not process.running:
            raise AssertionError(f"the operator exited ({process.returncode}):\n{process.log()}")
        obj = kube.get(name, namespace=namespace)
        found = condition(obj, type_)
        if found and found["status"] == status and (reason is None or found["reason"] == reason):
            return obj
        return None

    def explain() -> str:
        obj = kube.find(name, namespace=namespace)
        log = process.log()[-3000:] if process else ""
        return f"{type_}={status}/{reason} not reached; object status: {obj and obj.get('status')}\n{log}"

    return wait_for(check, timeout, message=explain)
