"""``datasync-operator doctor`` with a fake API server and moto's STS/DataSync in-process: what
each check says, and that a failure names what to fix (the real API server: tests/e2e)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner
from moto import mock_aws

from datasync_operator import cli, doctor
from datasync_operator.doctor import (
    SPEC_FIELDS,
    Check,
    DoctorSettings,
    Status,
    check_aws,
    needed_permissions,
    run_checks,
)
from datasync_operator.kube import KubeApiError, ResourceRef

CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "datasyncexecution.yaml").read_text())


class FakeApi:
    """SelfSubjectReview, SelfSubjectAccessReview and a CRD list, in memory."""

    def __init__(self, crd: dict[str, Any] | None = None, denied: set[tuple[str, str]] | None = None) -> None:
        self.crd = crd
        self.denied = denied or set()
        self.reviews: list[dict[str, Any]] = []
        self.unreachable = False

    async def create(self, ref: ResourceRef, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if self.unreachable:
            raise KubeApiError(None, "ClientConnectorError", "connection refused")
        if ref.plural == "selfsubjectreviews":
            return {**body, "status": {"userInfo": {"username": "system:serviceaccount:ops:dso"}}}
        attributes = body["spec"]["resourceAttributes"]
        self.reviews.append(attributes)
        resource = attributes["resource"] + ("/" + attributes["subresource"] if "subresource" in attributes else "")
        return {**body, "status": {"allowed": (resource, attributes["verb"]) not in self.denied}}

    async def list_page(self, ref: ResourceRef, namespace: str | None, *, limit: int = 1,
                        field_selector: str | None = None) -> dict[str, Any]:
        assert ref.plural == "customresourcedefinitions"
        return {"items": [self.crd] if self.crd else []}


def established(crd: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(crd), "status": {"conditions": [{"type": "Established", "status": "True"}]}}


def no_aws(settings: DoctorSettings) -> list[Check]:
    return []


async def test_a_healthy_install_passes_every_check() -> None:
    api = FakeApi(established(CRD))
    settings = DoctorSettings(all_namespaces=True, leader_election=True,
                              lease_name="dso", lease_namespace="ops")
    checks = await run_checks(settings, api, aws=no_aws)  # type: ignore[arg-type]
    assert [c.status for c in checks] == [Status.OK] * 5, [c.line() for c in checks]
    assert "authenticated as system:serviceaccount:ops:dso" in checks[0].detail
    assert [c.name for c in checks[2:]] == [
        "RBAC in all namespaces", "RBAC in access policies and namespace labels",
        "RBAC in Lease ops/dso"]
    lease_reviews = [r for r in api.reviews if r["resource"] == "leases"]
    assert {(r["verb"], r.get("name")) for r in lease_reviews} == {
        ("get", "dso"), ("update", "dso"), ("create", None)}


async def test_missing_crd_missing_fields_and_denied_permissions_fail_with_the_fix() -> None:
    settings = DoctorSettings(all_namespaces=False, namespaces=("team-a", "team-*"))
    missing = await run_checks(settings, FakeApi(None), aws=no_aws)  # type: ignore[arg-type]
    assert missing[1].status is Status.FAIL and "crds.enabled=true" in missing[1].detail

    old = established(CRD)
    spec = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["roleArn"]
    older = await run_checks(settings, FakeApi(old), aws=no_aws)  # type: ignore[arg-type]
    assert older[1].status is Status.FAIL and "no spec.roleArn" in older[1].detail

    denied = FakeApi(established(CRD), denied={("datasyncexecutions/status", "patch"), ("events", "create")})
    checks = await run_checks(settings, denied, aws=no_aws)  # type: ignore[arg-type]
    assert [c.name for c in checks[2:]] == [  # patterns: kopf's job
        "RBAC in namespace team-a", "RBAC in access policies and namespace labels"]
    assert checks[2].status is Status.FAIL
    assert checks[2].detail == ("denied: patch datasyncexecutions/status.datasync.operator.io; "
                                "create events")


async def test_unreachable_api_server_stops_the_kubernetes_checks() -> None:
    api = FakeApi(established(CRD))
    api.unreachable = True
    checks = await run_checks(DoctorSettings(all_namespaces=True), api, aws=no_aws)  # type: ignore[arg-type]
    assert len(checks) == 1 and checks[0].status is Status.FAIL
    assert "cannot reach the API server" in checks[0].detail


def test_permissions_asked_are_the_chart_rbac_rules() -> None:
    chart_rules = {
        (group, resource, verb)
        for group, resource, verb in [
            ("datasync.operator.io", "datasyncexecutions", v) for v in ("get", "list", "watch", "patch")
        ] + [("datasync.operator.io", "datasyncexecutions/status", "patch"),
             ("", "events", "create"), ("", "events", "patch")]
    }
    [(_, asked), (_, access)] = needed_permissions(DoctorSettings(all_namespaces=True))
    assert {(p.group, p.resource + (f"/{p.subresource}" if p.subresource else ""), p.verb)
            for p in asked} == chart_rules
    # and the chart's <release>-access ClusterRole (rbac.yaml)
    assert {(p.group, p.resource, p.verb, p.namespace) for p in access} == {
        ("datasync.operator.io", "datasyncaccesspolicies", "list", None),
        ("datasync.operator.io", "datasyncaccesspolicies", "watch", None),
        ("", "namespaces", "list", None),
        ("", "namespaces", "watch", None),
    }


def test_spec_fields_are_the_crd_spec_fields() -> None:
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert set(schema["properties"]["spec"]["properties"]) == SPEC_FIELDS


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DATASYNC", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def _execution() -> str:
    client = boto3.client("datasync", region_name="eu-west-1")
    locations = [client.create_location_smb(
        ServerHostname="host", Subdirectory="/share", User="u", Password="p",
        AgentArns=["arn:aws:datasync:eu-west-1:123456789012:agent/agent-00000000000000001"],
    )["LocationArn"] for _ in range(2)]
    task = client.create_task(SourceLocationArn=locations[0], DestinationLocationArn=locations[1])
    return str(client.start_task_execution(TaskArn=task["TaskArn"])["TaskExecutionArn"])


def test_aws_identity_and_one_execution(aws: Any) -> None:
    arn = _execution()
    [identity, execution] = check_aws(DoctorSettings(all_namespaces=True, execution_arn=arn))
    assert identity.status is Status.OK and identity.detail.startswith("arn:aws:")
    assert "(account " in identity.detail
    assert execution.status is Status.OK and "DescribeTaskExecution" in execution.detail
    [_, bad] = check_aws(DoctorSettings(all_namespaces=True, execution_arn="arn:aws:nope"))
    assert bad.status is Status.FAIL and bad.detail.startswith("--execution-arn")


def test_aws_without_credentials_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    [check] = check_aws(DoctorSettings(all_namespaces=True))
    assert check.status is Status.FAIL and "no usable AWS credentials" in check.detail


def test_cli_prints_one_line_per_check_and_exits_1_on_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake(settings: DoctorSettings, kube: Any) -> list[Check]:
        assert settings.namespaces == ("a", "b") and settings.leader_election
        return [Check("Kubernetes API", Status.OK, "reachable"),
                Check("RBAC in namespace a", Status.FAIL, "denied: create events")]

    monkeypatch.setattr(doctor, "run_checks", fake)
    result = CliRunner().invoke(cli.main, ["doctor", "--leader-elect"],
                                env={"DATASYNC_OPERATOR_NAMESPACES": "a,b"})
    assert result.exit_code == 1, result.output
    assert "[ ok ] Kubernetes API: reachable" in result.output
    assert "[FAIL] RBAC in namespace a: denied: create events" in result.output
    assert "1 passed, 1 failed, 0 warnings" in result.output
    assert CliRunner().invoke(cli.main, ["doctor"]).exit_code == 2  # no scope given
