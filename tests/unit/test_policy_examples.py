"""The DataSyncAccessPolicy CRD and its examples: the examples validate against the schema, parse
as the operator parses them, grant the example executions what their comments say, and agree
with the IAM trust policy example (namespace session tag, ExternalId)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from datasync_operator import GROUP, KIND, VERSION
from datasync_operator.access import (
    POLICY_KIND,
    POLICY_PLURAL,
    AccessPolicy,
    AssumedRole,
    Granted,
    Refused,
    Request,
    decide,
)
from datasync_operator.datasync import NAMESPACE_TAG
from datasync_operator.spec import Spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "datasyncaccesspolicy.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
EXAMPLES = ROOT / "examples"


def docs(kind: str) -> list[dict[str, Any]]:
    return [doc for path in sorted(EXAMPLES.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == kind]


POLICIES = docs(POLICY_KIND)


def test_crd_identity() -> None:
    assert CRD["spec"]["group"] == GROUP
    assert CRD["spec"]["scope"] == "Cluster"
    assert CRD["spec"]["names"]["kind"] == POLICY_KIND
    assert CRD["spec"]["names"]["plural"] == POLICY_PLURAL
    assert CRD["spec"]["names"]["shortNames"] == ["dsap"]
    version = CRD["spec"]["versions"][0]
    assert version["name"] == VERSION
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Namespaces", "Accounts", "Regions", "Role", "Age"]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["metadata"]["name"])
def test_policy_examples_validate_and_parse(policy: dict[str, Any]) -> None:
    assert policy["apiVersion"] == f"{GROUP}/{VERSION}"
    jsonschema.Draft7Validator(SCHEMA).validate(policy)
    assert isinstance(AccessPolicy.from_body(policy), AccessPolicy)


@pytest.mark.parametrize("spec", [
    {"namespaceSelector": {}, "accounts": ["1"]},
    {"namespaces": ["a"], "accounts": ["111122223333"], "allowedRoleArnPrefixes": ["arn:aws:iam::111122223333:role/x"]},
    {"namespaces": ["a"], "accounts": ["111122223333"], "regions": ["Mars-1"]},
])
def test_the_schema_refuses_what_the_parser_refuses(spec: dict[str, Any]) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": POLICY_KIND, "metadata": {"name": "x"},
            "spec": spec}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(body)
    assert not isinstance(AccessPolicy.from_body(body), AccessPolicy)


def execution(name: str) -> tuple[str, Spec]:
    [doc] = [d for d in docs(KIND) if d["metadata"]["name"] == name]
    spec = parse_spec(doc["spec"])
    assert isinstance(spec, Spec)
    return doc["metadata"]["namespace"], spec


def test_the_example_policies_grant_the_example_executions() -> None:
    policies = [AccessPolicy.from_body(p) for p in POLICIES]
    for doc in docs(KIND):
        namespace, spec = execution(doc["metadata"]["name"])
        verdict = decide(Request.of(namespace, spec), policies, {})
        if spec.arn.partition != "aws":
            # a GovCloud execution needs an operator (and policies) in GovCloud
            assert isinstance(verdict, Refused)
            continue
        assert isinstance(verdict, Granted), (doc["metadata"]["name"], verdict)
    namespace, spec = execution("partner-sync-cancel")
    verdict = decide(Request.of(namespace, spec), policies, {})
    assert verdict == Granted("data-platform-partner",
                              AssumedRole(str(spec.role_arn), "data-platform-6c1f0a"))


def test_the_trust_policy_example_requires_what_the_operator_sends() -> None:
    trust = json.loads((EXAMPLES / "iam" / "cross-account-trust-policy.json").read_text())
    [statement] = trust["Statement"]
    assert set(statement["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    equals = statement["Condition"]["StringEquals"]
    [grant] = [p for p in POLICIES if p["metadata"]["name"] == "data-platform-partner"]
    assert equals[f"aws:RequestTag/{NAMESPACE_TAG}"] == grant["spec"]["namespaces"][0]
    assert equals["sts:ExternalId"] == grant["spec"]["externalId"]
    assert statement["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"] == [NAMESPACE_TAG]
