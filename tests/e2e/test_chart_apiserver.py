"""The Helm chart against the real kube-apiserver: what a cluster accepts, and what it grants.

- the rendered manifests pass server-side dry run (schema, defaulting, admission);
- the operator's pod passes Pod Security admission at the ``restricted`` level;
- ``helm install`` works as the README says (minus the image pull: there are no nodes);
- the chart's RBAC, bound to the operator's ServiceAccount identity, grants what the operator
  needs and nothing more (no Secrets; only the release's Lease), checked with
  ``kubectl auth can-i`` as that identity;
- two replicas of the real operator, configured by the chart's environment alone and running as
  that identity, elect one leader through the Lease: only the leader calls AWS and writes, the
  standby takes over when the leader is killed (after about the lease duration) or stops
  gracefully (at once), and cancels executions end to end: the chart's roles are sufficient.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ci import in_ci
from tests.support.controlplane import ControlPlane
from tests.support.fault_proxy import FaultProxy
from tests.support.helm import CHART_DIR, Helm, HelmUnavailableError, find_helm, of_kind, one
from tests.support.moto_server import MotoServer
from tests.support.objects import condition
from tests.support.operator_process import OperatorProcess, aws_env
from tests.support.waiting import wait_for

SYSTEM_NS = "chart-system"
TEAM_NS = "chart-team"
OTHER_NS = "chart-elsewhere"
PSA_NS = "chart-restricted"
NAMESPACED_RELEASE = "dso-ns"
CLUSTER_RELEASE = "dso-cluster"
NAMESPACED_FULLNAME = f"{NAMESPACED_RELEASE}-datasync-operator"  # also the name of its Lease
#: Short lease timings for the HA test (the chart's defaults are client-go's 15 / 10 / 2 s).
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 6, 4, 0.5
CANCEL = "CancelTaskExecution"

DRY_RUN_SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-ha": {
        "replicaCount": 2,
        "watch": {"allNamespaces": False, "namespaces": [TEAM_NS, OTHER_NS]},
    },
    "cluster-ha-everything": {
        "replicaCount": 3,
        "networkPolicy": {"enabled": True},
        "rbac": {"aggregateToDefaultRoles": True},
        "serviceAccount": {
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/dso"}
        },
        "aws": {"region": "us-east-1"},
    },
}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        folder = find_helm()
    except HelmUnavailableError as exc:
        if in_ci():
            pytest.fail(f"cannot fetch helm: {exc}", pytrace=False)
        pytest.skip(f"no helm: {exc}")
    return Helm(folder, home=tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    """The control plane (with the DataSyncExecution CRD) and this module's namespaces."""
    for namespace in (SYSTEM_NS, TEAM_NS, OTHER_NS):
        apply(control_plane, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    apply(control_plane, {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": PSA_NS,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    })
    # A Secret the operator must never be able to read.
    apply(control_plane, {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "not-for-the-operator", "namespace": TEAM_NS},
        "stringData": {"password": "hunter2"},
    })
    return control_plane


def apply(cp: ControlPlane, *docs: Mapping[str, Any], extra: Sequence[str] = ()) -> Any:
    return cp.kubectl("apply", *extra, "-f", "-", input=yaml.safe_dump_all(list(docs)))


def get_json(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed_manifests(
    helm: Helm, cp: ControlPlane, release: str, namespace: str = SYSTEM_NS
) -> list[dict[str, Any]]:
    text = helm.run("get", "manifest", release, "--namespace", namespace,
                    "--kubeconfig", str(cp.kubeconfig)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def install(helm: Helm, cp: ControlPlane, release: str, values: Mapping[str, Any]) -> None:
    """`helm install` as the README's install section does it (no --wait: no nodes here).

    The session's CRD was applied by the e2e fixture, outside any release: these releases
    leave it alone (crds.enabled=false), as several installs in one cluster would.
    """
    helm.run(
        "install", release, str(CHART_DIR),
        "--namespace", SYSTEM_NS,
        "--kubeconfig", str(cp.kubeconfig),
        "--values", str(helm.values_file({"crds": {"enabled": False}, **values})),
        timeout=180,
    )


@pytest.fixture(scope="module")
def namespaced_release(helm: Helm, cluster: ControlPlane) -> Iterator[list[dict[str, Any]]]:
    install(helm, cluster, NAMESPACED_RELEASE, {
        "replicaCount": 2,
        "watch": {"allNamespaces": False, "namespaces": [TEAM_NS]},
        "operator": {"logFormat": "text", "retryBaseDelay": 0.05, "retryMaxDelay": 0.2},
        "leaderElection": {"leaseDuration": LEASE_DURATION, "renewDeadline": RENEW_DEADLINE,
                           "retryPeriod": RETRY_PERIOD},
    })
    yield installed_manifests(helm, cluster, NAMESPACED_RELEASE)
    helm.run("uninstall", NAMESPACED_RELEASE, "--namespace", SYSTEM_NS,
             "--kubeconfig", str(cluster.kubeconfig), check=False)


@pytest.fixture(scope="module")
def cluster_release(helm: Helm, cluster: ControlPlane) -> Iterator[list[dict[str, Any]]]:
    install(helm, cluster, CLUSTER_RELEASE, {"replicaCount": 2})
    yield installed_manifests(helm, cluster, CLUSTER_RELEASE)
    helm.run("uninstall", CLUSTER_RELEASE, "--namespace", SYSTEM_NS,
             "--kubeconfig", str(cluster.kubeconfig), check=False)


def service_account_kubeconfig(cp: ControlPlane, manifests: list[dict[str, Any]]) -> Path:
    """A kubeconfig that authenticates exactly as the chart's ServiceAccount would in a pod."""
    account = one(manifests, "ServiceAccount")["metadata"]
    namespace, name = account["namespace"], account["name"]
    return cp.kubeconfig_for(
        f"system:serviceaccount:{namespace}:{name}",
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
    )


def can_i(cp: ControlPlane, kubeconfig: Path, *args: str) -> bool:
    result = cp.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    answer = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return answer == "yes"


# --- server-side dry run ---------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(DRY_RUN_SCENARIOS))
def test_rendered_manifests_pass_server_side_dry_run(
    helm: Helm, cluster: ControlPlane, scenario: str
) -> None:
    rendered = helm.template_raw(DRY_RUN_SCENARIOS[scenario], release=f"dry-{scenario}",
                                 namespace=SYSTEM_NS).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    result = cluster.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-",
                             input=rendered, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert len(result.stdout.split()) == len(docs), result.stdout


def test_dry_run_is_real_it_rejects_a_broken_manifest(helm: Helm, cluster: ControlPlane) -> None:
    """Control: the same dry run refuses a Deployment the API server cannot accept."""
    docs = helm.template({}, namespace=SYSTEM_NS)
    deployment = one(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = "root"
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-",
                             input=yaml.safe_dump(deployment), check=False)
    assert result.returncode != 0


# --- Pod Security "restricted" ---------------------------------------------------------------


def pod_from_template(helm: Helm, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    docs = helm.template(values or {}, namespace=PSA_NS)
    template = one(docs, "Deployment")["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "datasync-operator-psa", "namespace": PSA_NS,
                     "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


@pytest.mark.parametrize("values", [{}, {"replicaCount": 2, "networkPolicy": {"enabled": True}}])
def test_pod_is_admitted_at_pod_security_restricted(
    helm: Helm, cluster: ControlPlane, values: dict[str, Any]
) -> None:
    pod = pod_from_template(helm, values)
    result = cluster.kubectl("create", "--dry-run=server", "-f", "-",
                             input=yaml.safe_dump(pod), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "violates PodSecurity" not in result.stderr


def test_pod_security_is_enforced_in_that_namespace(helm: Helm, cluster: ControlPlane) -> None:
    """Control: without the chart's security context the same pod is refused."""
    pod = pod_from_template(helm)
    del pod["spec"]["securityContext"]
    del pod["spec"]["containers"][0]["securityContext"]
    result = cluster.kubectl("create", "--dry-run=server", "-f", "-",
                             input=yaml.safe_dump(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr


# --- helm install and the RBAC it grants -----------------------------------------------------


def test_helm_install_creates_the_release(
    helm: Helm, cluster: ControlPlane, namespaced_release: list[dict[str, Any]]
) -> None:
    status = json.loads(helm.run("status", NAMESPACED_RELEASE, "--namespace", SYSTEM_NS,
                                 "--kubeconfig", str(cluster.kubeconfig), "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "rollout status deployment/" in status["info"]["notes"]
    deployment = get_json(cluster, "deployment", f"{NAMESPACED_RELEASE}-datasync-operator",
                          "-n", SYSTEM_NS)
    assert deployment["spec"]["replicas"] == 2
    role = get_json(cluster, "role", f"{NAMESPACED_FULLNAME}-leader-election", "-n", SYSTEM_NS)
    assert {tuple(rule.get("resourceNames") or ()) for rule in role["rules"]} == {
        (NAMESPACED_FULLNAME,), ()
    }
    get_json(cluster, "crd", "datasyncexecutions.datasync.operator.io")
    # No kopf peering CRDs any more; the Lease is created by the first replica, not by helm.
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        assert cluster.kubectl("get", "crd", crd, check=False).returncode != 0


LEASES = "leases.coordination.k8s.io"
NAMESPACED_GRANTED = [
    ("get", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("list", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("watch", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("patch", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("patch", "datasyncexecutions.datasync.operator.io", "--subresource=status", "-n", TEAM_NS),
    ("create", "events", "-n", TEAM_NS),
    ("patch", "events", "-n", TEAM_NS),
    ("get", f"{LEASES}/{NAMESPACED_FULLNAME}", "-n", SYSTEM_NS),
    ("update", f"{LEASES}/{NAMESPACED_FULLNAME}", "-n", SYSTEM_NS),
    ("create", LEASES, "-n", SYSTEM_NS),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
    ("list", "datasyncaccesspolicies.datasync.operator.io"),
    ("watch", "datasyncaccesspolicies.datasync.operator.io"),
]
NAMESPACED_DENIED = [
    # Access policies are the administrator's: read, never written, by the operator.
    ("create", "datasyncaccesspolicies.datasync.operator.io"),
    ("patch", "datasyncaccesspolicies.datasync.operator.io"),
    ("delete", "datasyncaccesspolicies.datasync.operator.io"),
    ("get", "namespaces"),
    ("patch", "namespaces"),
    ("get", "secrets", "-n", TEAM_NS),
    ("list", "secrets", "-n", TEAM_NS),
    ("watch", "secrets", "-n", TEAM_NS),
    ("list", "secrets", "-n", SYSTEM_NS),
    ("list", "secrets", "--all-namespaces"),
    ("get", "configmaps", "-n", TEAM_NS),
    ("create", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("delete", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("update", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("list", "datasyncexecutions.datasync.operator.io", "-n", OTHER_NS),
    ("list", "datasyncexecutions.datasync.operator.io", "--all-namespaces"),
    ("patch", "datasyncexecutions.datasync.operator.io", "-n", "default"),
    ("delete", "events", "-n", TEAM_NS),
    ("list", "events", "-n", TEAM_NS),
    ("update", "events", "-n", TEAM_NS),
    # Only the release's Lease, only in the release namespace, only read, renewed or created.
    ("get", f"{LEASES}/someone-elses-lease", "-n", SYSTEM_NS),
    ("update", f"{LEASES}/someone-elses-lease", "-n", SYSTEM_NS),
    ("patch", f"{LEASES}/{NAMESPACED_FULLNAME}", "-n", SYSTEM_NS),
    ("delete", f"{LEASES}/{NAMESPACED_FULLNAME}", "-n", SYSTEM_NS),
    ("list", LEASES, "-n", SYSTEM_NS),
    ("watch", LEASES, "-n", SYSTEM_NS),
    ("create", LEASES, "-n", TEAM_NS),
    ("get", f"{LEASES}/{NAMESPACED_FULLNAME}", "-n", TEAM_NS),
    ("update", f"{LEASES}/{NAMESPACED_FULLNAME}", "-n", "kube-system"),
    ("create", "pods", "-n", TEAM_NS),
    ("*", "*", "--all-namespaces"),
]


def test_namespaced_rbac_grants_exactly_what_the_operator_uses(
    cluster: ControlPlane, namespaced_release: list[dict[str, Any]]
) -> None:
    identity = service_account_kubeconfig(cluster, namespaced_release)
    missing = [args for args in NAMESPACED_GRANTED if not can_i(cluster, identity, *args)]
    extra = [args for args in NAMESPACED_DENIED if can_i(cluster, identity, *args)]
    assert not missing, f"the chart does not grant: {missing}"
    assert not extra, f"the chart grants too much: {extra}"


def test_operator_identity_cannot_read_secrets(
    cluster: ControlPlane, namespaced_release: list[dict[str, Any]]
) -> None:
    identity = service_account_kubeconfig(cluster, namespaced_release)
    for args in (("secret", "not-for-the-operator", "-n", TEAM_NS), ("secrets", "-A")):
        result = cluster.kubectl("get", *args, kubeconfig=identity, check=False)
        assert result.returncode != 0
        assert "forbidden" in result.stderr.lower(), result.stderr
        assert "hunter2" not in result.stdout


def test_cluster_wide_rbac_grants_exactly_what_the_operator_uses(
    cluster: ControlPlane, cluster_release: list[dict[str, Any]]
) -> None:
    identity = service_account_kubeconfig(cluster, cluster_release)
    lease = f"{CLUSTER_RELEASE}-datasync-operator"
    granted = [
        ("get", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
        ("list", "datasyncexecutions.datasync.operator.io", "--all-namespaces"),
        ("watch", "datasyncexecutions.datasync.operator.io", "--all-namespaces"),
        ("patch", "datasyncexecutions.datasync.operator.io", "-n", OTHER_NS),
        ("patch", "datasyncexecutions.datasync.operator.io", "--subresource=status", "-n", "default"),
        ("create", "events", "-n", OTHER_NS),
        ("patch", "events", "-n", OTHER_NS),
        ("get", f"{LEASES}/{lease}", "-n", SYSTEM_NS),
        ("update", f"{LEASES}/{lease}", "-n", SYSTEM_NS),
        ("create", LEASES, "-n", SYSTEM_NS),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        # The access decision: policies and namespace labels (namespaceSelector), read-only.
        ("list", "datasyncaccesspolicies.datasync.operator.io"),
        ("watch", "datasyncaccesspolicies.datasync.operator.io"),
        ("list", "namespaces"),
        ("watch", "namespaces"),
    ]
    denied = [
        ("get", "secrets", "-n", TEAM_NS),
        ("list", "secrets", "--all-namespaces"),
        ("create", "datasyncaccesspolicies.datasync.operator.io"),
        ("update", "datasyncaccesspolicies.datasync.operator.io"),
        ("delete", "datasyncaccesspolicies.datasync.operator.io"),
        ("update", "namespaces"),
        # A cluster-wide operator still has Lease rights only in its own namespace.
        ("create", LEASES, "-n", TEAM_NS),
        ("create", LEASES, "--all-namespaces"),
        ("get", f"{LEASES}/{lease}", "-n", OTHER_NS),
        ("update", f"{LEASES}/someone-elses-lease", "-n", SYSTEM_NS),
        ("list", LEASES, "--all-namespaces"),
        ("create", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
        ("delete", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
        ("get", "configmaps", "-n", SYSTEM_NS),
        ("*", "*", "--all-namespaces"),
    ]
    assert not [a for a in granted if not can_i(cluster, identity, *a)], "missing grants"
    assert not [a for a in denied if can_i(cluster, identity, *a)], "excess grants"
    # The one namespaced Role is the Lease's, in the release namespace.
    lease_roles = [(r["metadata"]["name"], r["metadata"]["namespace"])
                   for r in of_kind(cluster_release, "Role")]
    assert lease_roles == [(f"{lease}-leader-election", SYSTEM_NS)]


# --- two replicas under only the chart's RBAC: one leader through the Lease ------------------


def chart_environment(manifests: list[dict[str, Any]], pod_name: str) -> dict[str, str]:
    """The operator container's environment as the chart sets it, resolved for one 'pod'."""
    deployment = one(manifests, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    downward = {"metadata.name": pod_name, "metadata.namespace": deployment["metadata"]["namespace"]}
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif (field := item["valueFrom"].get("fieldRef", {}).get("fieldPath")) in downward:
            env[item["name"]] = downward[field]
        else:
            raise AssertionError(f"cannot resolve {item}")
    # The same endpoints, on free loopback ports (the 'pods' share this host).
    assert env["DATASYNC_OPERATOR_LIVENESS_ENDPOINT"].endswith("/healthz")
    env["DATASYNC_OPERATOR_LIVENESS_ENDPOINT"] = f"http://127.0.0.1:{free_port()}/healthz"
    assert env["DATASYNC_OPERATOR_METRICS_ENABLED"] == "true"
    env["DATASYNC_OPERATOR_METRICS_PORT"] = str(free_port())
    return env


class Replica:
    """One 'pod' of the release: the operator process with the chart's environment, running as
    the chart's ServiceAccount, with its own fault proxy in front of moto (so the AWS calls of
    each replica are counted apart)."""

    def __init__(self, n: int, manifests: list[dict[str, Any]], identity: Path, moto: MotoServer,
                 tmp_path: Path) -> None:
        self.pod = f"{NAMESPACED_RELEASE}-pod-{n}"
        self.proxy = FaultProxy(moto.url).start()
        self.env = chart_environment(manifests, self.pod)
        self.process = OperatorProcess(
            [],  # configured by the chart's environment alone, like the container
            env={**self.env, **aws_env(self.proxy.url), "KUBECONFIG": str(identity)},
            log_path=tmp_path / f"{self.pod}.log",
        )

    def start(self) -> Replica:
        self.process.start()
        return self

    def close(self) -> None:
        self.process.stop()
        self.proxy.stop()

    def log(self) -> str:
        return self.process.log()

    def leads(self) -> bool:
        return "leader election: became leader of lease" in self.log()

    def stands_by(self) -> bool:
        return "leader election: standing by; lease" in self.log()

    def logged_at(self, text: str) -> datetime.datetime:
        """When the replica first logged a line containing ``text`` (text log format)."""
        for line in self.log().splitlines():
            if text in line:
                stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", line)
                assert stamp, line
                return datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
        raise AssertionError(f"{text!r} not in {self.pod}'s log:\n{self.log()[-3000:]}")

    def identity(self) -> str:
        """Its identity in the Lease (the pod name and a random suffix), from its log."""
        found = re.search(rf"as ({re.escape(self.pod)}_[0-9a-f]+)", self.log())
        assert found, self.log()[-3000:]
        return found.group(1)

    def metric(self, name: str) -> float:
        """The sum of a counter over its labels, scraped from the replica's /metrics."""
        url = f"http://127.0.0.1:{self.env['DATASYNC_OPERATOR_METRICS_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((f"{name}{{", f"{name} "))
        )

    def cancels(self, arn: str) -> int:
        return len([r for r in self.proxy.requests(CANCEL) if r.body.get("TaskExecutionArn") == arn])


def holder(cp: ControlPlane) -> str:
    lease = get_json(cp, "lease", NAMESPACED_FULLNAME, "-n", SYSTEM_NS)
    return str(lease["spec"].get("holderIdentity") or "")


def events_of(cp: ControlPlane, name: str) -> list[dict[str, Any]]:
    listed = get_json(cp, "events", "-n", TEAM_NS, "--field-selector", f"involvedObject.name={name}")
    return list(listed["items"])


@pytest.mark.timeout(300)
def test_two_replicas_elect_one_leader_through_the_lease_with_only_the_chart_rbac(
    cluster: ControlPlane, namespaced_release: list[dict[str, Any]], moto: MotoServer,
    tmp_path: Path,
) -> None:
    identity = service_account_kubeconfig(cluster, namespaced_release)
    env = chart_environment(namespaced_release, "any")
    assert env["DATASYNC_OPERATOR_STANDALONE"] == "false"
    assert env["DATASYNC_OPERATOR_LEASE_NAME"] == NAMESPACED_FULLNAME
    assert float(env["DATASYNC_OPERATOR_LEASE_DURATION"]) == LEASE_DURATION
    names = ("chart-ha-leader", "chart-ha-failover")
    replicas: list[Replica] = []
    ended: list[Replica] = []  # killed or stopped on purpose
    try:
        replicas = [Replica(n, namespaced_release, identity, moto, tmp_path).start()
                    for n in range(2)]

        def logs() -> str:
            return "\n".join(f"--- {r.pod} ---\n{r.log()[-4000:]}" for r in replicas)

        def alive() -> None:
            for replica in replicas:
                assert replica.process.running or replica in ended, (
                    f"{replica.pod} exited:\n{logs()}"
                )

        def one_leader() -> tuple[Replica, Replica] | None:
            alive()
            leaders = [r for r in replicas if r.leads()]
            standbys = [r for r in replicas if r.stands_by() and not r.leads()]
            if len(leaders) == 1 and len(standbys) == 1:
                return leaders[0], standbys[0]
            return None

        # Exactly one replica leads; the other stands by, naming the leader.
        leader, standby = wait_for(one_leader, timeout=60,
                                   message=lambda: f"not one leader and one standby:\n{logs()}")
        assert holder(cluster) == leader.identity()
        assert f"is held by {leader.identity()}" in standby.log()

        def cancel(name: str, spec: Mapping[str, Any] | None = None) -> str:
            arn = moto.create_execution()
            apply(cluster, {
                "apiVersion": "datasync.operator.io/v1alpha1",
                "kind": "DataSyncExecution",
                "metadata": {"name": name, "namespace": TEAM_NS},
                "spec": {"executionArn": arn, "desiredState": "Cancelled", **(spec or {})},
            })
            return arn

        def ready(name: str) -> Mapping[str, Any]:
            def check() -> Mapping[str, Any] | None:
                alive()
                obj = get_json(cluster, "datasyncexecution", name, "-n", TEAM_NS)
                return obj if condition(obj, "Ready").get("status") == "True" else None

            result: Mapping[str, Any] = wait_for(
                check, timeout=60, message=lambda: f"{name} not Ready:\n{logs()}"
            )
            return result

        # While the leader is active, it alone acts: one cancel, from its own proxy ...
        first = cancel(names[0])
        obj = ready(names[0])
        assert condition(obj, "Cancelled")["reason"] == "CancelAccepted"
        assert moto.describe_status(first) == "ERROR"
        assert leader.cancels(first) == 1
        time.sleep(2 * RETRY_PERIOD)  # what a standby would do, it would have done by now
        # ... and the standby, whose cache holds the same object, does nothing at all: no
        # AWS call, no reconcile (so no status or finalizer write), no Event.
        assert standby.proxy.total_calls() == 0, logs()
        assert standby.metric("datasync_operator_reconciles_total") == 0
        assert standby.metric("datasync_operator_aws_calls_total") == 0
        assert leader.metric("datasync_operator_reconciles_total") >= 1
        # (a first-attempt cancel posts no Event at all: its status says it all)
        reporters = {e.get("reportingInstance") for e in events_of(cluster, names[0])}
        assert reporters <= {leader.pod}, reporters

        # The leader crashes: the Lease still names it, so the standby waits for it to
        # expire (about the lease duration), then takes over.
        ended.append(leader)
        leader.process.kill()
        killed = time.monotonic()
        wait_for(standby.leads, timeout=LEASE_DURATION + 2 * RETRY_PERIOD + 10, interval=0.1,
                 message=lambda: f"the standby never took over:\n{logs()}")
        failover = time.monotonic() - killed
        assert LEASE_DURATION - 2 * RETRY_PERIOD <= failover <= LEASE_DURATION + 2 * RETRY_PERIOD + 5, (
            failover
        )
        assert holder(cluster) == standby.identity()
        lease = get_json(cluster, "lease", NAMESPACED_FULLNAME, "-n", SYSTEM_NS)
        assert lease["spec"]["leaseTransitions"] >= 1

        # The new leader cancels a new object, through transient AWS failures (its Events
        # are coalesced: a PATCH of the Event), with a finalizer (deletionPolicy: Cancel) ...
        standby.proxy.fail(CANCEL, times=None, status=500, code="InternalException",
                           message="boom")
        second = cancel(names[1], {"deletionPolicy": "Cancel"})
        wait_for(lambda: standby.cancels(second) >= 3, timeout=60,
                 message=lambda: f"no retries:\n{logs()}")
        standby.proxy.clear_faults(CANCEL)
        obj = ready(names[1])
        assert condition(obj, "Cancelled")["reason"] == "CancelAccepted"
        assert obj["metadata"]["finalizers"] == ["datasync.operator.io/finalizer"]
        assert moto.describe_status(second) == "ERROR"
        retries = [e for e in events_of(cluster, names[1]) if e["reason"] == "RetryingServerError"]
        assert len(retries) == 1 and retries[0]["count"] >= 2, retries
        assert {e.get("reportingInstance") for e in events_of(cluster, names[1])} == {standby.pod}
        # ... and leaves the one its predecessor cancelled alone (cancelled once in all).
        assert standby.cancels(first) == 0
        assert leader.proxy.total_calls() == leader.cancels(first) == 1
        # Deleting releases the finalizer without a second cancel.
        attempts = standby.cancels(second)
        cluster.kubectl("delete", "datasyncexecution", names[1], "-n", TEAM_NS,
                        "--wait=true", "--timeout=60s")
        assert standby.cancels(second) == attempts

        # A new replica joins as a standby; the leader stops gracefully (SIGTERM, as in a
        # rolling update): it releases the Lease and the new replica takes over at once,
        # long before the lease would have expired.
        newcomer = Replica(2, namespaced_release, identity, moto, tmp_path).start()
        replicas.append(newcomer)
        wait_for(newcomer.stands_by, timeout=60,
                 message=lambda: f"the new replica does not stand by:\n{logs()}")
        ended.append(standby)
        assert standby.process.stop() == 0, logs()
        wait_for(newcomer.leads, timeout=LEASE_DURATION + 10, interval=0.1,
                 message=lambda: f"the new replica never took over:\n{logs()}")
        # From the signal to the new leader, by the replicas' own log timestamps (the process
        # itself takes a few more seconds to exit after it released the Lease).
        signalled = standby.logged_at("Signal SIGTERM is received")
        released = standby.logged_at("leader election: released lease")
        handover = (newcomer.logged_at("leader election: became leader") - signalled).total_seconds()
        assert signalled <= released
        assert handover < LEASE_DURATION / 2, handover
        assert holder(cluster) == newcomer.identity()

        for replica in replicas:
            log = replica.log()
            for symptom in ("Forbidden", "forbidden", " 403", "Not enough permissions"):
                assert symptom not in log, f"{symptom!r} in {replica.pod}'s log:\n{log[-4000:]}"
    finally:
        for replica in replicas:
            replica.close()
        for name in names:
            # No operator is left to remove the finalizer: let the object go.
            cluster.kubectl("patch", "datasyncexecution", name, "-n", TEAM_NS, "--type=merge",
                            "-p", '{"metadata":{"finalizers":null}}', check=False)
            cluster.kubectl("delete", "datasyncexecution", name, "-n", TEAM_NS,
                            "--ignore-not-found", "--wait=false", check=False)


# --- the documented install command, as written ----------------------------------------------


def documented_install_command() -> list[str]:
    """The first `helm install datasync-operator charts/...` shell block of the README/docs."""
    for doc in (CHART_DIR.parents[1] / "README.md", CHART_DIR.parents[1] / "docs" / "install.md"):
        if not doc.is_file():
            continue
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.S):
            command = block.replace("\\\n", " ")
            for line in command.splitlines():
                if line.strip().startswith("helm install datasync-operator charts/datasync-operator"):
                    return shlex.split(line)
    raise AssertionError("no `helm install datasync-operator charts/datasync-operator` in the docs")


def adopt_crd_as_the_chart_readme_says(cluster: ControlPlane) -> None:
    """The chart README's adoption commands for a CRD applied outside the release, as written."""
    readme = (CHART_DIR / "README.md").read_text()
    section = readme.split("## CRDs", 1)[1].split("\n## ", 1)[0]
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", section, flags=re.S) if "kubectl label crd" in b]
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line)
        assert argv[0] == "kubectl", line
        cluster.kubectl(*argv[1:])


def test_documented_helm_install_works_as_written(helm: Helm, cluster: ControlPlane) -> None:
    argv = documented_install_command()
    assert argv[:2] == ["helm", "install"]
    release, namespace = argv[2], argv[argv.index("--namespace") + 1]
    # The session's CRD exists already (applied by the e2e fixture): adopt it first.
    adopt_crd_as_the_chart_readme_says(cluster)
    result = helm.run(*argv[1:], "--kubeconfig", str(cluster.kubeconfig), timeout=180, check=False)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "rollout status deployment/" in result.stdout  # the NOTES
        manifests = installed_manifests(helm, cluster, release, namespace)
        account = one(manifests, "ServiceAccount")
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
        deployment = get_json(cluster, "deployment", one(manifests, "Deployment")["metadata"]["name"],
                              "-n", namespace)
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith("registry.example.com/platform/datasync-operator:")
        # The release manages the CRD now (crds.enabled), and keeps it (crds.keep).
        crd = get_json(cluster, "crd", "datasyncexecutions.datasync.operator.io")
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    finally:
        helm.run("uninstall", release, "--namespace", namespace,
                 "--kubeconfig", str(cluster.kubeconfig), check=False)
    # Uninstalling kept the CRD (and so every DataSyncExecution).
    assert get_json(cluster, "crd", "datasyncexecutions.datasync.operator.io")["metadata"]["name"]


# --- datasync-operator doctor (the helm test hook's command) with the chart's identity -------


def doctor(
    cluster: ControlPlane, kubeconfig: Path, moto: MotoServer, *args: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATASYNC_OPERATOR_"))}
    env = {**base, "KUBECONFIG": str(kubeconfig), **aws_env(moto.url),
           "AWS_ENDPOINT_URL_STS": moto.url, "POD_NAMESPACE": SYSTEM_NS}
    return subprocess.run([sys.executable, "-m", "datasync_operator", "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_doctor_passes_with_the_chart_identity_and_names_what_is_missing_without(
    cluster: ControlPlane, namespaced_release: list[dict[str, Any]], moto: MotoServer
) -> None:
    identity = service_account_kubeconfig(cluster, namespaced_release)
    scope = ("--namespace", TEAM_NS, "--leader-elect", "--lease-name", NAMESPACED_FULLNAME)
    result = doctor(cluster, identity, moto, *scope)
    assert result.returncode == 0, result.stdout + result.stderr
    account = one(namespaced_release, "ServiceAccount")["metadata"]["name"]
    assert f"authenticated as system:serviceaccount:{SYSTEM_NS}:{account}" in result.stdout
    assert f"[ ok ] RBAC in namespace {TEAM_NS}" in result.stdout
    assert f"[ ok ] RBAC in Lease {SYSTEM_NS}/{NAMESPACED_FULLNAME}" in result.stdout
    assert "[ ok ] AWS identity: arn:aws:" in result.stdout
    assert "datasyncexecutions.datasync.operator.io" in result.stdout
    # The same checks as an identity the chart did not bind: every missing grant is named.
    stranger = cluster.kubeconfig_for("system:serviceaccount:chart-system:stranger",
                                      groups=("system:serviceaccounts",))
    failed = doctor(cluster, stranger, moto, *scope)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"[FAIL] RBAC in namespace {TEAM_NS}: denied: list datasyncexecutions" in failed.stdout
    assert "update leases.coordination.k8s.io" in failed.stdout

