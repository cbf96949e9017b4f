"""The CRD on the real kube-apiserver: schema, CEL rules, pruning, status subresource, columns.

Everything here is the API server's own behaviour (nothing of the operator runs): an emulator
can only imitate it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane, KubectlError

VALID = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-0123456789abcdef1"
PARTITIONS = {
    "aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1",
    "aws-eusc": "eusc-de-east-1", "aws-iso": "us-iso-east-1", "aws-iso-b": "us-isob-east-1",
}


@pytest.fixture(scope="module")
def ns(control_plane: ControlPlane) -> str:
    name = f"validation-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    return name


def manifest(name: str, spec: Any, **extra: Any) -> str:
    return json.dumps({
        "apiVersion": "datasync.operator.io/v1alpha1",
        "kind": "DataSyncExecution",
        "metadata": {"name": name},
        "spec": spec,
        **extra,
    })


def apply(plane: ControlPlane, ns: str, body: str, *args: str, check: bool = True) -> Any:
    return plane.kubectl("apply", "-n", ns, "-f", "-", *args, input=body, check=check)


def get(plane: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        plane.kubectl("get", "dse", name, "-n", ns, "-o", "json").stdout
    )
    return found


@pytest.mark.parametrize("partition", PARTITIONS)
def test_valid_arns_in_every_partition_are_accepted(
    control_plane: ControlPlane, ns: str, partition: str
) -> None:
    arn = VALID.replace("arn:aws:", f"arn:{partition}:").replace("us-east-1", PARTITIONS[partition])
    done = apply(control_plane, ns, manifest(f"p-{partition}", {"executionArn": arn}), "--dry-run=server")
    assert "created (server dry run)" in done.stdout


INVALID: dict[str, tuple[Any, str]] = {
    "bad partition": ({"executionArn": VALID.replace("arn:aws:", "arn:aws-moon:")}, "spec.executionArn"),
    "uppercase partition": ({"executionArn": VALID.replace("arn:aws:", "arn:AWS:")}, "spec.executionArn"),
    "wrong service": ({"executionArn": VALID.replace(":datasync:", ":s3:")}, "spec.executionArn"),
    "empty region": ({"executionArn": VALID.replace("us-east-1", "")}, "spec.executionArn"),
    "short account": ({"executionArn": VALID.replace("111122223333", "1111")}, "spec.executionArn"),
    "short task hex": ({"executionArn": VALID.replace("task-0123456789abcdef0", "task-0123")}, "spec.executionArn"),
    "uppercase task hex": ({"executionArn": VALID.replace("abcdef0", "ABCDEF0")}, "spec.executionArn"),
    "short exec hex": ({"executionArn": VALID.replace("exec-0123456789abcdef1", "exec-01")}, "spec.executionArn"),
    "uppercase exec hex": ({"executionArn": VALID.replace("abcdef1", "ABCDEF1")}, "spec.executionArn"),
    "task arn only": ({"executionArn": VALID.split("/execution/")[0]}, "spec.executionArn"),
    "too long": ({"executionArn": VALID.replace("us-east-1", "us-" + "e" * 120)}, "spec.executionArn"),
    "missing arn": ({"desiredState": "Cancelled"}, "spec.executionArn"),
    "arn wrong type": ({"executionArn": 12345}, "spec.executionArn"),
    "wrong enum": ({"executionArn": VALID, "desiredState": "Paused"}, "spec.desiredState"),
    "desiredState wrong type": ({"executionArn": VALID, "desiredState": 1}, "spec.desiredState"),
    "bad deletionPolicy": ({"executionArn": VALID, "deletionPolicy": "Delete"}, "spec.deletionPolicy"),
    "bad roleArn": ({"executionArn": VALID, "roleArn": "arn:aws:iam::1:user/x"}, "spec.roleArn"),
    "spec wrong type": ("not-an-object", "spec"),
}


@pytest.mark.parametrize(("spec", "field"), INVALID.values(), ids=INVALID.keys())
def test_invalid_resources_are_refused_naming_the_field(
    control_plane: ControlPlane, ns: str, spec: Any, field: str
) -> None:
    done = apply(control_plane, ns, manifest("bad", spec), "--dry-run=server", check=False)
    assert done.returncode != 0
    assert "is invalid" in done.stderr or "Invalid value" in done.stderr, done.stderr
    assert field in done.stderr, done.stderr


def test_missing_spec_is_refused(control_plane: ControlPlane, ns: str) -> None:
    body = json.dumps({"apiVersion": "datasync.operator.io/v1alpha1", "kind": "DataSyncExecution",
                       "metadata": {"name": "nospec"}})
    done = apply(control_plane, ns, body, "--dry-run=server", check=False)
    assert done.returncode != 0
    assert "spec" in done.stderr


def test_defaults_immutability_and_one_way_cancel(control_plane: ControlPlane, ns: str) -> None:
    apply(control_plane, ns, manifest("rules", {"executionArn": VALID}))
    obj = get(control_plane, ns, "rules")
    assert obj["spec"]["desiredState"] == "Running"  # defaulted by the API server
    assert obj["spec"]["deletionPolicy"] == "Orphan"

    other = VALID.replace("exec-0123456789abcdef1", "exec-0123456789abcdef2")
    with pytest.raises(KubectlError) as caught:
        control_plane.kubectl("patch", "dse", "rules", "-n", ns, "--type=merge",
                              "-p", json.dumps({"spec": {"executionArn": other}}))
    assert "executionArn is immutable" in str(caught.value)

    control_plane.kubectl("patch", "dse", "rules", "-n", ns, "--type=merge",
                          "-p", '{"spec": {"desiredState": "Cancelled"}}')
    with pytest.raises(KubectlError) as caught:
        control_plane.kubectl("patch", "dse", "rules", "-n", ns, "--type=merge",
                              "-p", '{"spec": {"desiredState": "Running"}}')
    message = str(caught.value)
    assert "spec.desiredState" in message
    assert "cannot change from Cancelled back to Running" in message


def test_unknown_fields_are_pruned(control_plane: ControlPlane, ns: str) -> None:
    body = manifest("pruned", {"executionArn": VALID, "surprise": True}, status={"bogus": 1})
    apply(control_plane, ns, body, "--validate=false")
    obj = get(control_plane, ns, "pruned")
    assert "surprise" not in obj["spec"]
    assert "status" not in obj or "bogus" not in obj["status"]
    strict = apply(control_plane, ns, manifest("strict", {"executionArn": VALID, "surprise": 1}),
                   "--validate=strict", check=False)
    assert strict.returncode != 0 and 'unknown field "spec.surprise"' in strict.stderr


def test_status_subresource_and_generation(control_plane: ControlPlane, ns: str) -> None:
    apply(control_plane, ns, manifest("gen", {"executionArn": VALID}))
    assert get(control_plane, ns, "gen")["metadata"]["generation"] == 1
    status = {"status": {"executionStatus": "TRANSFERRING", "observedGeneration": 1}}
    control_plane.kubectl("patch", "dse", "gen", "-n", ns, "--subresource=status",
                          "--type=merge", "-p", json.dumps(status))
    obj = get(control_plane, ns, "gen")
    assert obj["metadata"]["generation"] == 1  # status writes never bump generation
    assert obj["status"]["executionStatus"] == "TRANSFERRING"
    # status is ignored on the main resource, spec on the status subresource
    control_plane.kubectl("patch", "dse", "gen", "-n", ns, "--type=merge",
                          "-p", '{"status": {"executionStatus": "SUCCESS"}}')
    assert get(control_plane, ns, "gen")["status"]["executionStatus"] == "TRANSFERRING"
    control_plane.kubectl("patch", "dse", "gen", "-n", ns, "--type=merge",
                          "-p", '{"spec": {"desiredState": "Cancelled"}}')
    assert get(control_plane, ns, "gen")["metadata"]["generation"] == 2


def test_printer_columns_short_name_and_categories(control_plane: ControlPlane, ns: str) -> None:
    apply(control_plane, ns, manifest("cols", {"executionArn": VALID, "desiredState": "Cancelled"}))
    status = {"status": {"executionStatus": "ERROR", "conditions": [{
        "type": "Ready", "status": "True", "reason": "CancelAccepted", "message": "m",
        "lastTransitionTime": "2026-11-29T12:00:00Z", "observedGeneration": 1,
    }]}}
    control_plane.kubectl("patch", "dse", "cols", "-n", ns, "--subresource=status",
                          "--type=merge", "-p", json.dumps(status))
    for kind in ("dse", "datasyncexecutions", "datasync", "aws"):
        table = control_plane.kubectl("get", kind, "cols", "-n", ns).stdout.splitlines()
        header = table[0].split()
        row = table[1].split()
        assert header == ["NAME", "DESIRED", "EXECUTION", "READY", "REASON", "AGE"], kind
        assert row[:5] == ["cols", "Cancelled", "ERROR", "True", "CancelAccepted"], kind
