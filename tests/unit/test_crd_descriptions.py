"""kubectl explain explains every field: each node of every CRD's schema, status included, has a
description; and `kubectl get -o wide` adds the ARN, the attempts and the message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml"))


def undocumented(node: dict[str, Any], path: str) -> Iterator[str]:
    if path == ".metadata":
        assert set(node) <= {"type"}, "the API server refuses more than `type` under metadata"
        return
    if not str(node.get("description") or "").strip():
        yield path or "."
    for name, child in (node.get("properties") or {}).items():
        yield from undocumented(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from undocumented(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from undocumented(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_every_field_has_a_description(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        missing = list(undocumented(schema, ""))
        assert missing == [], f"{path.name} {version['name']}: no description for {missing}"


def test_the_walk_finds_a_missing_description() -> None:
    schema = {"description": "x", "properties": {"a": {"description": "y", "items": {
        "properties": {"b": {"type": "string"}}, "description": "z"}}}}
    assert list(undocumented(schema, "")) == [".a[].b"]


def test_wide_output_adds_arn_attempts_and_message() -> None:
    crd = yaml.safe_load((CRDS[0].parent / "datasyncexecution.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    wide = {c["name"]: c["jsonPath"] for c in columns if c.get("priority") == 1}
    assert wide == {
        "Execution ARN": ".spec.executionArn",
        "Attempts": ".status.retry.attempts",
        "Message": '.status.conditions[?(@.type=="Ready")].message',
    }
    assert all("description" in c for c in columns if c["name"] != "Age")
