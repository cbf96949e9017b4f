"""Proves the e2e control-plane fixture: real version, real RBAC, CRDs reach Established.

These tests exercise tests/support/controlplane.py itself, not the operator.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane, KubectlError, expected_kubernetes_version

MINIMAL_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.fixture.datasync.test
spec:
  group: fixture.datasync.test
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
"""


def _whoami(plane: ControlPlane, kubeconfig: Path | None = None) -> dict[str, Any]:
    """The user info the API server authenticated (a SelfSubjectReview)."""
    result = plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)
    user: dict[str, Any] = json.loads(result.stdout)["status"]["userInfo"]
    return user


def test_version_is_the_pinned_kubernetes(bare_control_plane: ControlPlane) -> None:
    expected = expected_kubernetes_version()
    info = bare_control_plane.api_get("/version")
    assert info["gitVersion"] == expected
    assert expected.startswith("v1.34.")
    assert (info["major"], info["minor"]) == ("1", "34")

    versions = json.loads(bare_control_plane.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == expected
    assert versions["clientVersion"]["gitVersion"] == expected


def test_admin_kubeconfig_is_system_masters(bare_control_plane: ControlPlane) -> None:
    user = _whoami(bare_control_plane)
    assert user["username"] == "e2e-admin"
    assert "system:masters" in user["groups"]
    can = bare_control_plane.kubectl("auth", "can-i", "list", "secrets", "--all-namespaces")
    assert can.stdout.strip() == "yes"


def test_rbac_forbids_an_unprivileged_identity(bare_control_plane: ControlPlane) -> None:
    kubeconfig = bare_control_plane.kubeconfig_for("e2e-nobody", ["e2e:testers"])
    user = _whoami(bare_control_plane, kubeconfig)
    assert user["username"] == "e2e-nobody"
    assert set(user["groups"]) >= {"e2e:testers", "system:authenticated"}

    can = bare_control_plane.kubectl(
        "auth", "can-i", "list", "secrets", "-n", "default", kubeconfig=kubeconfig, check=False
    )
    assert (can.returncode, can.stdout.strip()) == (1, "no")

    denied = bare_control_plane.kubectl(
        "get", "secrets", "-n", "default", kubeconfig=kubeconfig, check=False
    )
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert 'User "e2e-nobody" cannot list resource "secrets"' in denied.stderr


def test_rbac_grants_take_effect(bare_control_plane: ControlPlane) -> None:
    namespace = f"rbac-{uuid.uuid4().hex[:8]}"
    kubeconfig = bare_control_plane.kubeconfig_for("e2e-reader", ["e2e:readers"])
    bare_control_plane.kubectl("create", "namespace", namespace)
    bare_control_plane.kubectl(
        "create", "role", "read-secrets", "--verb=get,list", "--resource=secrets", "-n", namespace
    )
    bare_control_plane.kubectl(
        "create", "rolebinding", "read-secrets", "--role=read-secrets",
        "--group=e2e:readers", "-n", namespace,
    )  # fmt: skip

    allowed = bare_control_plane.kubectl(
        "auth", "can-i", "list", "secrets", "-n", namespace, kubeconfig=kubeconfig
    )
    assert allowed.stdout.strip() == "yes"
    elsewhere = bare_control_plane.kubectl(
        "auth", "can-i", "list", "secrets", "-n", "default", kubeconfig=kubeconfig, check=False
    )
    assert elsewhere.stdout.strip() == "no"


def test_apply_crd_waits_for_established(bare_control_plane: ControlPlane, tmp_path: Path) -> None:
    crd_file = tmp_path / "widgets.yaml"
    crd_file.write_text(MINIMAL_CRD, encoding="utf-8")
    applied = bare_control_plane.apply_crd(crd_file)
    assert applied == [
        "customresourcedefinition.apiextensions.k8s.io/widgets.fixture.datasync.test"
    ]

    established = bare_control_plane.kubectl(
        "get", "crd", "widgets.fixture.datasync.test",
        "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    )  # fmt: skip
    assert established.stdout == "True"

    widget = '{"apiVersion": "fixture.datasync.test/v1", "kind": "Widget",'
    widget += ' "metadata": {"name": "w1", "namespace": "default"}, "spec": {"size": 3}}'
    bare_control_plane.kubectl("apply", "-f", "-", input=widget)
    got = bare_control_plane.kubectl("get", "widgets", "w1", "-n", "default", "-o", "json")
    assert json.loads(got.stdout)["spec"] == {"size": 3}


def test_kubectl_error_carries_stderr(bare_control_plane: ControlPlane) -> None:
    with pytest.raises(KubectlError) as caught:
        bare_control_plane.kubectl("get", "nosuchkinds")
    assert caught.value.returncode != 0
    assert "nosuchkinds" in str(caught.value)


def test_datasyncexecution_crd_is_established(control_plane: ControlPlane) -> None:
    established = control_plane.kubectl(
        "get", "crd", "datasyncexecutions.datasync.operator.io",
        "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    )  # fmt: skip
    assert established.stdout == "True"
    listed = control_plane.kubectl("get", "dse", "-A")
    assert listed.returncode == 0


def test_stop_leaves_no_process_or_file(bare_control_plane: ControlPlane) -> None:
    """A second, private control plane: stop() must kill both process groups and clean up."""
    with ControlPlane(bin_dir=bare_control_plane.bin_dir, keep_workdir=False) as plane:
        workdir = plane.workdir
        pids = plane.process_ids
        assert set(pids) == {"etcd", "kube-apiserver"}
        assert plane.api_get("/version")["gitVersion"] == expected_kubernetes_version()
    assert not workdir.exists()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
