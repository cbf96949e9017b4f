"""The chart's `policies` value on the real kube-apiserver with the real helm.

The DataSyncAccessPolicy CRD is a template of the chart, so the policies it creates are
post-install/post-upgrade hooks: Helm maps every resource of a release before it creates any,
and a policy in the release itself would make a first install fail ("no matches for kind"). This
installs the chart with its CRDs into a cluster that has never seen the policy CRD, with a policy,
in one `helm install`; upgrades it with another grant; and uninstalls it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.ci import in_ci
from tests.support.controlplane import REPO_ROOT, ControlPlane
from tests.support.helm import CHART_DIR, Helm, HelmUnavailableError, find_helm

POLICY_CRD = "datasyncaccesspolicies.datasync.operator.io"
EXECUTION_CRD = "datasyncexecutions.datasync.operator.io"
ACCOUNT = "111122223333"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        folder = find_helm()
    except HelmUnavailableError as exc:
        if in_ci():
            pytest.fail(f"cannot fetch helm: {exc}", pytrace=False)
        pytest.skip(f"no helm: {exc}")
    return Helm(folder, home=tmp_path_factory.mktemp("helm-home"))


@pytest.fixture
def release(control_plane: ControlPlane) -> Iterator[tuple[str, str]]:
    """A release name and namespace; the CRDs it will own are prepared for it, then kept."""
    name, namespace = f"pol-{uuid.uuid4().hex[:5]}", f"pol-system-{uuid.uuid4().hex[:5]}"
    control_plane.kubectl("create", "namespace", namespace)
    # The session's DataSyncExecution CRD was applied outside any release: let this one adopt it
    # (what the chart README says for such a CRD). The policy CRD must not exist yet: the point
    # is a first install that creates the CRD and a policy of it at once.
    control_plane.kubectl("delete", "crd", POLICY_CRD, "--ignore-not-found", "--wait=true")
    control_plane.kubectl("label", "crd", EXECUTION_CRD, "--overwrite",
                          "app.kubernetes.io/managed-by=Helm")
    control_plane.kubectl("annotate", "crd", EXECUTION_CRD, "--overwrite",
                          f"meta.helm.sh/release-name={name}",
                          f"meta.helm.sh/release-namespace={namespace}")
    yield name, namespace
    # Leave the session's CRDs as the e2e fixture made them (applied with kubectl, no release).
    control_plane.kubectl("delete", "dsap", "--all", check=False)
    for crd in (EXECUTION_CRD, POLICY_CRD):
        control_plane.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by-", check=False)
        control_plane.kubectl("annotate", "crd", crd, "meta.helm.sh/release-name-",
                              "meta.helm.sh/release-namespace-", "helm.sh/resource-policy-",
                              check=False)
    control_plane.apply_crd(REPO_ROOT / "crds" / "datasyncaccesspolicy.yaml")


def policy(plane: ControlPlane, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(plane.kubectl("get", "dsap", name, "-o", "json").stdout)
    return found


def test_one_helm_install_creates_the_policy_crd_and_the_policies_then_upgrades_them(
    helm: Helm, control_plane: ControlPlane, release: tuple[str, str]
) -> None:
    name, namespace = release
    simple = {"name": "all-namespaces", "namespaceSelector": {}, "accounts": [ACCOUNT]}
    values = {"policies": [simple], "rbac": {"discovery": False}}
    helm.run("install", name, str(CHART_DIR), "--namespace", namespace,
             "--kubeconfig", str(control_plane.kubeconfig),
             "--values", str(helm.values_file(values)), timeout=180)
    created = policy(control_plane, "all-namespaces")
    assert created["spec"] == {"namespaceSelector": {}, "accounts": [ACCOUNT]}
    assert created["metadata"]["labels"]["app.kubernetes.io/instance"] == name
    columns = control_plane.kubectl("get", "dsap", "all-namespaces").stdout.split("\n")[0].split()
    assert columns == ["NAME", "NAMESPACES", "ACCOUNTS", "REGIONS", "ROLE", "AGE"]

    tenant = {"name": "tenant-a", "namespaces": ["tenant-a"], "accounts": [ACCOUNT],
              "regions": ["eu-west-1"], "roleArn": f"arn:aws:iam::{ACCOUNT}:role/tenant-a/datasync",
              "externalId": "tenant-a-1"}
    values["policies"] = [{**simple, "regions": ["us-east-1"]}, tenant]
    helm.run("upgrade", name, str(CHART_DIR), "--namespace", namespace,
             "--kubeconfig", str(control_plane.kubeconfig),
             "--values", str(helm.values_file(values)), timeout=180)
    assert policy(control_plane, "all-namespaces")["spec"]["regions"] == ["us-east-1"]
    assert policy(control_plane, "tenant-a")["spec"]["externalId"] == "tenant-a-1"

    helm.run("uninstall", name, "--namespace", namespace,
             "--kubeconfig", str(control_plane.kubeconfig), timeout=180)
    # the grants are the administrator's: uninstalling the operator leaves them (and the CRDs)
    assert policy(control_plane, "tenant-a")["spec"]["accounts"] == [ACCOUNT]
    control_plane.kubectl("get", "crd", POLICY_CRD, EXECUTION_CRD)


def test_a_bad_policy_value_is_refused_before_anything_is_installed(
    helm: Helm, control_plane: ControlPlane
) -> None:
    values = {"policies": [{"name": "too-broad", "namespaceSelector": {}, "accounts": [ACCOUNT],
                            "allowedRoleArnPrefixes": [f"arn:aws:iam::{ACCOUNT}:role/"]}]}
    done = helm.run("template", "x", str(CHART_DIR), "--values", str(helm.values_file(values)),
                    check=False)
    assert done.returncode != 0
    assert "allowedRoleArnPrefixes" in done.stderr, done.stderr
