"""Structured logs: every line about a resource names it and its execution; no credential ever
appears, on happy and error paths, at DEBUG level."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import OperatorFactory, wait_condition
from tests.integration.test_cancel_scenarios import CANCEL, NAME, create
from tests.support.fault_proxy import FaultProxy
from tests.support.kube_emulator import KubeEmulator
from tests.support.moto_server import MotoServer
from tests.support.operator_process import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY

pytestmark = pytest.mark.integration


def test_json_logs_carry_the_resource_and_arn_and_no_credentials(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    proxy.fail(CANCEL, times=2, status=500)
    proxy.throttle(CANCEL, times=1)
    operator = start_operator(
        "--log-format", "json", "--log-level", "DEBUG",
        env={"AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLESESSIONTOKENdoNotLogMe"},
    )
    create(kube, namespace, arn)
    wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    # a second resource whose execution does not exist: the InvalidRequest path
    kube.create("missing", {"executionArn": arn[:-4] + "beef", "desiredState": "Cancelled"},
                namespace=namespace)
    wait_condition(kube, "missing", namespace, "Stalled", "True", "InvalidRequest", process=operator)
    operator.stop()

    text = operator.log()
    for secret in (FAKE_SECRET_ACCESS_KEY, FAKE_ACCESS_KEY_ID, "doNotLogMe"):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) > 10
    about_transfer = [line for line in lines if (line.get("object") or {}).get("name") == NAME]
    assert about_transfer, "no log line names the resource"
    for line in about_transfer:
        assert line["object"]["namespace"] == namespace
        assert line.get("executionArn") == arn, line
    messages = " ".join(line["message"] for line in about_transfer)
    assert "RetryingServerError" in messages
    assert "Throttled" in messages
    assert "CancelAccepted" in messages
