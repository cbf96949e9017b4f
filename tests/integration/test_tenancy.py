"""Access policies and assumed roles with the real operator process, kmock's Kubernetes emulator
(serving the cluster-scoped DataSyncAccessPolicy too) and moto's STS and DataSync behind the
fault proxy; and the memory of assumed-role credentials (benchmarks/bench_credentials.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.bench_credentials import ACCOUNT, create_executions
from tests.integration.conftest import OperatorFactory, wait_condition
from tests.integration.test_cancel_scenarios import CANCEL, DESCRIBE, NAME, stays
from tests.support.fault_proxy import UNKNOWN_OPERATION, Fault, FaultKind, FaultProxy
from tests.support.kube_emulator import DATASYNC_EXECUTIONS, CustomResource, KubeEmulator
from tests.support.moto_server import MotoServer
from tests.support.objects import condition
from tests.support.operator_process import FAKE_ACCESS_KEY_ID
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

POLICIES = CustomResource(
    group="datasync.operator.io",
    version="v1alpha1",
    plural="datasyncaccesspolicies",
    kind="DataSyncAccessPolicy",
    singular="datasyncaccesspolicy",
    namespaced=False,
    short_names=frozenset({"dsap"}),
)
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tenants/datasync"
EXTERNAL_ID = "tenant-7f3c9a"


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """The emulator serving DataSyncExecutions and (cluster-scoped) DataSyncAccessPolicies."""
    with KubeEmulator(resources=(DATASYNC_EXECUTIONS, POLICIES)) as emulator:
        yield emulator


def grant(kube: KubeEmulator, name: str, **spec: Any) -> None:
    body = {"apiVersion": POLICIES.api_version, "kind": POLICIES.kind,
            "metadata": {"name": name}, "spec": spec}
    kube.request("POST", POLICIES.path(), body)


def assume_role_requests(proxy: FaultProxy) -> list[dict[str, Any]]:
    return [dict(r.body) for r in proxy.requests(UNKNOWN_OPERATION)
            if r.body.get("Action") == "AssumeRole"]


def test_a_granted_role_is_assumed_with_the_namespace_tag_and_external_id(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    [arn] = create_executions(moto.url, 1)  # in the account of ROLE (moto: where it belongs)
    grant(kube, "tenant", namespaces=[namespace], accounts=[ACCOUNT],
          allowedRoleArns=[ROLE], externalId=EXTERNAL_ID)
    operator = start_operator(env={"AWS_ENDPOINT_URL_STS": proxy.url})
    kube.create(NAME, {"executionArn": arn, "desiredState": "Cancelled", "roleArn": ROLE},
                namespace=namespace)
    wait_condition(kube, NAME, namespace, "Cancelled", "True", "CancelAccepted", process=operator)
    [assume] = assume_role_requests(proxy)
    assert assume["RoleArn"] == ROLE
    assert assume["RoleSessionName"] == f"dse@{namespace}"
    assert (assume["Tags.member.1.Key"], assume["Tags.member.1.Value"]) == (
        "kubernetes-namespace", namespace)
    assert assume["ExternalId"] == EXTERNAL_ID
    [cancel] = proxy.requests(CANCEL)
    # signed with the role's temporary credentials, not the operator's own key; moto found the
    # execution in the role's account, where the operator's own identity cannot see it
    assert cancel.access_key_id is not None and cancel.access_key_id.startswith("ASIA")
    log = operator.log()
    assert cancel.access_key_id not in log and EXTERNAL_ID not in log


def test_namespaces_of_one_role_share_nothing_and_resources_of_one_namespace_share_one_session(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arns = create_executions(moto.url, 3)
    grant(kube, "tenant", namespaces=[namespace], accounts=[ACCOUNT], roleArn=ROLE)
    operator = start_operator(env={"AWS_ENDPOINT_URL_STS": proxy.url})
    for n, arn in enumerate(arns):
        kube.create(f"{NAME}-{n}", {"executionArn": arn, "desiredState": "Cancelled"},
                    namespace=namespace)
    for n in range(3):
        wait_condition(kube, f"{NAME}-{n}", namespace, "Cancelled", "True", process=operator)
    assert proxy.calls(CANCEL) == 3
    assert len(assume_role_requests(proxy)) == 1  # one session for the (role, namespace)
    assert {r.access_key_id for r in proxy.requests(CANCEL)} != {FAKE_ACCESS_KEY_ID}


def test_a_refused_assume_role_stalls_access_denied(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    [arn] = create_executions(moto.url, 1)
    grant(kube, "tenant", namespaces=[namespace], accounts=[ACCOUNT], roleArn=ROLE)
    # STS through the proxy too, answering AccessDenied to AssumeRole (query protocol: no target)
    proxy.add_fault(UNKNOWN_OPERATION, Fault(
        FaultKind.ERROR, remaining=None, status=403, code="AccessDenied",
        message="not authorized to perform sts:AssumeRole", xml=True,
    ))
    operator = start_operator(env={"AWS_ENDPOINT_URL_STS": proxy.url})
    kube.create(NAME, {"executionArn": arn, "desiredState": "Cancelled"}, namespace=namespace)
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "AccessDenied", process=operator)
    assert "sts:AssumeRole" in condition(obj, "Stalled")["message"]
    assert proxy.calls(CANCEL) == 0


def test_a_refusal_heals_when_a_policy_grants_it(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    [arn] = create_executions(moto.url, 1)
    grant(kube, "elsewhere", namespaces=["someone-else"], accounts=[ACCOUNT])
    operator = start_operator(env={"AWS_ENDPOINT_URL_STS": proxy.url})
    kube.create(NAME, {"executionArn": arn, "desiredState": "Running"}, namespace=namespace)
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "NotPermitted", process=operator)
    assert f"no DataSyncAccessPolicy selects namespace '{namespace}'" in condition(obj, "Stalled")["message"]
    stays(lambda: proxy.total_calls() == 0, 0.5)
    grant(kube, "tenant", namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
          accounts=[ACCOUNT], roleArn=ROLE)
    wait_condition(kube, NAME, namespace, "Ready", "True", "ExecutionActive", process=operator, timeout=10)
    assert proxy.calls(DESCRIBE) == 1


@pytest.mark.parametrize("namespaces", [20, 100], ids=["20-namespaces", "100-namespaces"])
def test_100_role_arn_resources_over_20_roles_stay_under_20_mib(moto: MotoServer, namespaces: int) -> None:
    """The budget of issue 9, measured in a fresh process (benchmarks/bench_credentials.py).

    One role per tenant namespace (20 pairs) is the usual case; every resource in its own
    namespace (100 pairs) is the worst the per-(role, namespace) sharing allows."""
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_credentials.py", "--endpoint", moto.url,
         "--resources", "100", "--roles", "20", "--namespaces", str(namespaces), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pairs"] == namespaces
    assert result["assume_role_calls"] == namespaces  # one per (role, namespace), shared
    assert result["traced_mib"] < 20, result
    assert result["rss_mib"] < 20, result


def test_without_policies_naming_a_role_is_refused_with_no_call(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    arn = moto.create_execution()
    operator = start_operator(env={"AWS_ENDPOINT_URL_STS": proxy.url})
    kube.create(NAME, {"executionArn": arn, "desiredState": "Cancelled", "roleArn": ROLE},
                namespace=namespace)
    obj = wait_condition(kube, NAME, namespace, "Stalled", "True", "NotPermitted", process=operator)
    assert "no DataSyncAccessPolicy exists" in condition(obj, "Stalled")["message"]
    stays(lambda: proxy.total_calls() == 0, 0.5)
    wait_for(lambda: operator.running, 1)
