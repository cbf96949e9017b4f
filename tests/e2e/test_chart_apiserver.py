"""The Helm chart against the real kube-apiserver: what a cluster accepts, and what it grants.

- the rendered manifests pass server-side dry run (schema, defaulting, admission);
- the operator's pod passes Pod Security admission at the ``restricted`` level;
- ``helm install`` works as the README says (minus the image pull: there are no nodes);
- the chart's RBAC, bound to the operator's ServiceAccount identity, grants what the operator
  needs and nothing more (no Secrets), checked with ``kubectl auth can-i`` as that identity;
- the real operator, configured by the chart's environment alone and running as that identity
  with two peered replicas, cancels an execution end to end: the chart's roles are sufficient.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
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

PEERING_CRDS = CHART_DIR / "crds" / "kopf-peering.yaml"
SYSTEM_NS = "chart-system"
TEAM_NS = "chart-team"
OTHER_NS = "chart-elsewhere"
PSA_NS = "chart-restricted"
NAMESPACED_RELEASE = "dso-ns"
CLUSTER_RELEASE = "dso-cluster"

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
    """The control plane with the chart's peering CRDs and this module's namespaces."""
    control_plane.apply_crd(PEERING_CRDS)
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
    """`helm install` as the README's install section does it (no --wait: no nodes here)."""
    helm.run(
        "install", release, str(CHART_DIR),
        "--namespace", SYSTEM_NS,
        "--kubeconfig", str(cp.kubeconfig),
        "--values", str(helm.values_file(values)),
        timeout=180,
    )


@pytest.fixture(scope="module")
def namespaced_release(helm: Helm, cluster: ControlPlane) -> Iterator[list[dict[str, Any]]]:
    install(helm, cluster, NAMESPACED_RELEASE, {
        "replicaCount": 2,
        "watch": {"allNamespaces": False, "namespaces": [TEAM_NS]},
        "operator": {"logFormat": "text"},
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
    peering = get_json(cluster, "kopfpeerings.kopf.dev", f"{NAMESPACED_RELEASE}-datasync-operator",
                       "-n", TEAM_NS)
    assert peering["kind"] == "KopfPeering"
    get_json(cluster, "crd", "clusterkopfpeerings.kopf.dev")
    get_json(cluster, "crd", "datasyncexecutions.datasync.operator.io")


NAMESPACED_GRANTED = [
    ("list", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("watch", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("patch", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
    ("patch", "datasyncexecutions.datasync.operator.io", "--subresource=status", "-n", TEAM_NS),
    ("create", "events", "-n", TEAM_NS),
    ("list", "kopfpeerings.kopf.dev", "-n", TEAM_NS),
    ("watch", "kopfpeerings.kopf.dev", "-n", TEAM_NS),
    ("patch", f"kopfpeerings.kopf.dev/{NAMESPACED_RELEASE}-datasync-operator", "-n", TEAM_NS),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
]
NAMESPACED_DENIED = [
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
    ("patch", "kopfpeerings.kopf.dev/someone-elses-peering", "-n", TEAM_NS),
    ("patch", "clusterkopfpeerings.kopf.dev"),
    ("delete", "events", "-n", TEAM_NS),
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
    peering = f"{CLUSTER_RELEASE}-datasync-operator"
    granted = [
        ("list", "datasyncexecutions.datasync.operator.io", "--all-namespaces"),
        ("watch", "datasyncexecutions.datasync.operator.io", "--all-namespaces"),
        ("patch", "datasyncexecutions.datasync.operator.io", "-n", OTHER_NS),
        ("patch", "datasyncexecutions.datasync.operator.io", "--subresource=status", "-n", "default"),
        ("create", "events", "-n", OTHER_NS),
        ("list", "clusterkopfpeerings.kopf.dev"),
        ("watch", "clusterkopfpeerings.kopf.dev"),
        ("patch", f"clusterkopfpeerings.kopf.dev/{peering}"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    denied = [
        ("get", "secrets", "-n", TEAM_NS),
        ("list", "secrets", "--all-namespaces"),
        ("list", "namespaces"),  # only operators limited to namespaces observe them
        ("patch", "clusterkopfpeerings.kopf.dev/someone-elses-peering"),
        ("patch", "kopfpeerings.kopf.dev", "-n", TEAM_NS),
        ("create", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
        ("delete", "datasyncexecutions.datasync.operator.io", "-n", TEAM_NS),
        ("get", "configmaps", "-n", SYSTEM_NS),
        ("*", "*", "--all-namespaces"),
    ]
    assert not [a for a in granted if not can_i(cluster, identity, *a)], "missing grants"
    assert not [a for a in denied if can_i(cluster, identity, *a)], "excess grants"
    assert one(cluster_release, "ClusterKopfPeering")["metadata"]["name"] == peering
    assert not of_kind(cluster_release, "Role")


# --- the operator running under only the chart's RBAC ----------------------------------------


def chart_environment(manifests: list[dict[str, Any]], pod_name: str) -> dict[str, str]:
    """The operator container's environment as the chart sets it, resolved for one 'pod'."""
    container = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}:
            env[item["name"]] = pod_name
        else:
            raise AssertionError(f"cannot resolve {item}")
    # The same endpoints, on free loopback ports (two 'pods' share this host).
    assert env["DATASYNC_OPERATOR_LIVENESS_ENDPOINT"].endswith("/healthz")
    env["DATASYNC_OPERATOR_LIVENESS_ENDPOINT"] = f"http://127.0.0.1:{free_port()}/healthz"
    if env.get("DATASYNC_OPERATOR_METRICS_ENABLED") == "true":
        env["DATASYNC_OPERATOR_METRICS_PORT"] = str(free_port())
    return env


def peering_state(operator: OperatorProcess) -> str:
    """'active' or 'paused', from kopf's last peering message (a replica starts paused)."""
    log = operator.log()
    resumed = log.rfind("Resuming operations after the pause")
    paused = log.rfind("Pausing operations in favour of")
    return "active" if resumed > paused else "paused"


@pytest.mark.timeout(240)
def test_two_peered_replicas_cancel_an_execution_with_only_the_chart_rbac(
    cluster: ControlPlane, namespaced_release: list[dict[str, Any]], tmp_path: Path
) -> None:
    identity = service_account_kubeconfig(cluster, namespaced_release)
    peering_name = f"{NAMESPACED_RELEASE}-datasync-operator"
    with MotoServer() as moto, FaultProxy(moto.url) as proxy:
        operators = [
            OperatorProcess(
                [],  # configured by the chart's environment alone, like the container
                env={
                    **chart_environment(namespaced_release, f"{NAMESPACED_RELEASE}-pod-{n}"),
                    **aws_env(proxy.url),
                    "KUBECONFIG": str(identity),
                },
                log_path=tmp_path / f"operator-{n}.log",
            )
            for n in range(2)
        ]
        try:
            for operator in operators:
                operator.start()

            def logs() -> str:
                return "\n".join(f"--- operator {n} ---\n{op.log()[-4000:]}"
                                 for n, op in enumerate(operators))

            def peers() -> dict[str, Any] | None:
                for operator in operators:
                    assert operator.running, f"an operator exited:\n{logs()}"
                status = get_json(cluster, "kopfpeerings.kopf.dev", peering_name, "-n", TEAM_NS).get("status") or {}
                return status if len(status) == 2 else None

            # Both replicas keep their keep-alive in the release's KopfPeering ...
            keepalives = wait_for(peers, timeout=60, message=lambda: f"no two peers:\n{logs()}")
            assert set(keepalives) == {f"{NAMESPACED_RELEASE}-pod-0", f"{NAMESPACED_RELEASE}-pod-1"}
            # ... and exactly one of them is active: the other starts paused (peering is
            # mandatory) or pauses once it sees the higher priority.
            wait_for(lambda: sorted(map(peering_state, operators)) == ["active", "paused"],
                     timeout=30, message=lambda: f"not one active and one paused:\n{logs()}")

            def cancel(name: str) -> tuple[str, Mapping[str, Any]]:
                arn = moto.create_execution()
                apply(cluster, {
                    "apiVersion": "datasync.operator.io/v1alpha1",
                    "kind": "DataSyncExecution",
                    "metadata": {"name": name, "namespace": TEAM_NS},
                    "spec": {"executionArn": arn, "desiredState": "Cancelled"},
                })

                def cancelled() -> Mapping[str, Any] | None:
                    obj = get_json(cluster, "datasyncexecution", name, "-n", TEAM_NS)
                    ready = condition(obj, "Ready")
                    return obj if ready.get("status") == "True" else None

                obj = wait_for(cancelled, timeout=60, message=lambda: f"{name} not cancelled:\n{logs()}")
                assert condition(obj, "Cancelled")["status"] == "True"
                assert moto.describe_status(arn) == "ERROR"
                return arn, obj

            # The first resource may meet a replica that is still starting: kopf processes what
            # an initial LIST already in flight returns even if the replica pauses meanwhile.
            cancel("chart-rbac-warmup")
            # In the steady state exactly one replica acts.
            arn, obj = cancel("chart-rbac-cancel")
            assert condition(obj, "Ready")["reason"] == "CancelAccepted"
            cancels = [r for r in proxy.requests("CancelTaskExecution")
                       if r.body.get("TaskExecutionArn") == arn]
            assert len(cancels) == 1, logs()
            acted = [n for n, op in enumerate(operators) if "[chart-team/chart-rbac-cancel]" in op.log()]
            assert len(acted) == 1, logs()
            # The Event was posted (kopf only logs a warning when it may not).
            events = get_json(cluster, "events", "-n", TEAM_NS,
                              "--field-selector", "involvedObject.name=chart-rbac-cancel")
            assert "CancelAccepted" in {event["reason"] for event in events["items"]}
            for operator in operators:
                log = operator.log()
                for symptom in ("Forbidden", "forbidden", " 403", "Not enough permissions",
                                "Failed to post an event"):
                    assert symptom not in log, f"{symptom!r} in the operator log:\n{log[-4000:]}"
        finally:
            for operator in operators:
                operator.stop()
            # No operator is left to remove kopf's finalizer: let the object go.
            for name in ("chart-rbac-warmup", "chart-rbac-cancel"):
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


def test_documented_helm_install_works_as_written(helm: Helm, cluster: ControlPlane) -> None:
    argv = documented_install_command()
    assert argv[:2] == ["helm", "install"]
    release, namespace = argv[2], argv[argv.index("--namespace") + 1]
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
    finally:
        helm.run("uninstall", release, "--namespace", namespace,
                 "--kubeconfig", str(cluster.kubeconfig), check=False)

