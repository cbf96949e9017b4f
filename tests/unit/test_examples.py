"""The examples: they apply cleanly in reading order (no two share a name, so none is an update
of another that the one-way rule could refuse), the IAM documents fit the cross-account example,
and the Flux example installs the operator from the OCI chart with health checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from datasync_operator import KIND

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def resources() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == KIND:
                found.append((path.name, doc))
    return found


def test_examples_apply_in_reading_order_without_updating_each_other() -> None:
    keys = [(doc["metadata"].get("namespace"), doc["metadata"]["name"]) for _, doc in resources()]
    assert len(keys) == len(set(keys)), keys
    arns = [doc["spec"]["executionArn"] for _, doc in resources()]
    assert len(arns) == len(set(arns)), "two examples name the same execution"


def test_deletion_policy_and_cross_account_examples() -> None:
    docs = dict(resources())
    assert docs["datasyncexecution-delete-cancels.yaml"]["spec"]["deletionPolicy"] == "Cancel"
    cross = docs["datasyncexecution-cross-account.yaml"]["spec"]
    role_account = cross["roleArn"].split(":")[4]
    assert cross["executionArn"].split(":")[4] == role_account
    role_policy = json.loads((EXAMPLES / "iam" / "cross-account-role-policy.json").read_text())
    trust = json.loads((EXAMPLES / "iam" / "cross-account-trust-policy.json").read_text())
    operator = json.loads((EXAMPLES / "iam" / "operator-policy.json").read_text())
    [allow] = role_policy["Statement"]
    assert set(allow["Action"]) == {"datasync:CancelTaskExecution", "datasync:DescribeTaskExecution"}
    assert f":{role_account}:" in allow["Resource"]
    [trusted] = trust["Statement"]
    assert "sts:AssumeRole" in trusted["Action"]
    assume = [s for s in operator["Statement"] if "sts:AssumeRole" in s["Action"]]
    assert assume and assume[0]["Resource"] == cross["roleArn"]
    assert trusted["Principal"]["AWS"].split(":")[4] != role_account  # another account trusts in


def test_flux_example_installs_the_operator_from_the_oci_chart_with_health_checks() -> None:
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((EXAMPLES / "flux-kustomization.yaml").read_text())}
    assert docs["HelmRepository"]["spec"]["type"] == "oci"
    assert docs["HelmRepository"]["spec"]["url"].startswith("oci://")
    release = docs["HelmRelease"]["spec"]
    assert release["chart"]["spec"]["chart"] == "datasync-operator"
    assert release["test"]["enable"] is True
    executions = docs["Kustomization"]["spec"]
    assert {"kind": "HelmRelease", "name": "datasync-operator"}.items() <= executions["healthChecks"][0].items()
    assert executions["wait"] is True
