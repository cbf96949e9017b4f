"""The CRD's OpenAPI schema: examples validate, bad resources are refused naming the field.

This is a fast, offline check of the structural schema with jsonschema; the real API server
(CEL rules, pruning, defaults) is exercised by tests/e2e.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from datasync_operator import GROUP, KIND, PLURAL, VERSION
from datasync_operator.arn import EXECUTION_ARN_PATTERN, MAX_LENGTH

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "datasyncexecution.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
EXAMPLES = sorted(
    path for path in (ROOT / "examples").glob("*.yaml")
    if any(doc and doc.get("kind") == KIND for doc in yaml.safe_load_all(path.read_text()))
)
VALID_ARN = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-0123456789abcdef1"


def validate(resource: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(resource)


def test_crd_identity_matches_the_package() -> None:
    assert CRD["spec"]["group"] == GROUP
    assert CRD["spec"]["names"]["kind"] == KIND
    assert CRD["spec"]["names"]["plural"] == PLURAL
    assert CRD["spec"]["names"]["shortNames"] == ["dse"]
    assert CRD["spec"]["names"]["categories"] == ["datasync", "aws"]
    version = CRD["spec"]["versions"][0]
    assert version["name"] == VERSION
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Desired", "Execution", "Ready", "Reason", "Execution ARN", "Attempts", "Message", "Age"]


def test_crd_pattern_is_the_api_pattern() -> None:
    arn_schema = SCHEMA["properties"]["spec"]["properties"]["executionArn"]
    assert arn_schema["pattern"] == EXECUTION_ARN_PATTERN
    assert arn_schema["maxLength"] == MAX_LENGTH
    assert arn_schema["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


def test_desired_state_enum_and_default() -> None:
    desired = SCHEMA["properties"]["spec"]["properties"]["desiredState"]
    assert desired["enum"] == ["Running", "Cancelled"]
    assert desired["default"] == "Running"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(path: Path) -> None:
    assert EXAMPLES, "no DataSyncExecution examples found"
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == KIND:
            assert doc["apiVersion"] == f"{GROUP}/{VERSION}"
            validate(doc)


def base() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": "x"},
        "spec": {"executionArn": VALID_ARN, "desiredState": "Cancelled"},
    }


def with_spec(**changes: Any) -> dict[str, Any]:
    resource = copy.deepcopy(base())
    for key, value in changes.items():
        if value is _DROP:
            resource["spec"].pop(key)
        else:
            resource["spec"][key] = value
    return resource


_DROP = object()

BAD = {
    "missing arn": (with_spec(executionArn=_DROP), "executionArn"),
    "wrong enum": (with_spec(desiredState="Paused"), "Paused"),
    "arn not a string": (with_spec(executionArn=7), "7"),
    "bad partition": (with_spec(executionArn=VALID_ARN.replace("arn:aws:", "arn:aws-x:")), "aws-x"),
    "too long": (with_spec(executionArn=VALID_ARN.replace("us-east-1", "u" * 60)), "long"),
    "uppercase hex": (with_spec(executionArn=VALID_ARN.upper()), "ARN"),
    "desiredState not a string": (with_spec(desiredState=True), "True"),
}


@pytest.mark.parametrize(("resource", "words"), BAD.values(), ids=BAD.keys())
def test_bad_resources_refused(resource: dict[str, Any], words: str) -> None:
    with pytest.raises(jsonschema.ValidationError) as caught:
        validate(resource)
    assert words in str(caught.value)


def test_missing_spec_refused() -> None:
    resource = base()
    del resource["spec"]
    with pytest.raises(jsonschema.ValidationError, match="spec"):
        validate(resource)
