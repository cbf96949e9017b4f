"""The Helm chart rendered by the real helm: lint, value combinations and their manifests.

Each scenario is rendered with ``helm template`` and the parsed manifests are checked for the
properties that matter in production: the restricted security context, least-privilege RBAC,
Lease leader election only with HA (and its Role only for the release's Lease), one Role per
watched namespace, metrics and network policy wiring.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import CHART_DIR, NAMESPACE, RELEASE, Helm, of_kind, one

FULLNAME = f"{RELEASE}-datasync-operator"

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}},
    "namespaced-release-namespace": {"watch": {"allNamespaces": False}},
    "ha": {"replicaCount": 3},
    "leader-election-single": {"leaderElection": {"enabled": True}},
    "ha-namespaced": {
        "replicaCount": 2,
        "watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]},
    },
    "metrics-off": {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
    "metrics-servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "network-policy": {"networkPolicy": {"enabled": True}},
    "everything": {
        "replicaCount": 2,
        "watch": {"allNamespaces": False, "namespaces": ["team-a"]},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "networkPolicy": {"enabled": True},
        "rbac": {"aggregateToDefaultRoles": True},
        "serviceAccount": {
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/dso"}
        },
        "aws": {"region": "eu-west-1", "datasyncEndpointUrl": "https://datasync.example:8443"},
    },
}

STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)

#: What the operator does on the resources it serves (kopf's watch, the controller's reads and
#: writes, its Events), wherever it watches them: a ClusterRole or a Role per namespace.
OPERATOR_PERMISSIONS = {
    ("datasync.operator.io", "datasyncexecutions", "get"),
    ("datasync.operator.io", "datasyncexecutions", "list"),
    ("datasync.operator.io", "datasyncexecutions", "watch"),
    ("datasync.operator.io", "datasyncexecutions", "patch"),
    ("datasync.operator.io", "datasyncexecutions/status", "patch"),
    ("", "events", "create"),
    ("", "events", "patch"),
}
#: Leader election on the release's Lease (get/update only by name; see test_chart_contract).
LEASE_PERMISSIONS = {
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "update"),
    ("coordination.k8s.io", "leases", "create"),
}
#: The access decision (access.py): DataSyncAccessPolicies and namespace labels, read-only,
#: always cluster-wide (its own ClusterRole, <fullname>-access).
ACCESS_PERMISSIONS = {
    ("datasync.operator.io", "datasyncaccesspolicies", "list"),
    ("datasync.operator.io", "datasyncaccesspolicies", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
}
ACCESS_ROLE = f"{FULLNAME}-access"
#: Every (apiGroup, resource, verb) the operator may ever be granted, with why (see rbac.yaml).
ALLOWED_PERMISSIONS = OPERATOR_PERMISSIONS | LEASE_PERMISSIONS | ACCESS_PERMISSIONS | {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
}
LEASE_ROLE = f"{FULLNAME}-leader-election"


# --- helpers ---------------------------------------------------------------------------------


_rendered: dict[str, list[dict[str, Any]]] = {}


def render(helm: Helm, scenario: str) -> list[dict[str, Any]]:
    """The scenario's manifests, rendered once per session (the tests only read them)."""
    if scenario not in _rendered:
        _rendered[scenario] = helm.template(SCENARIOS[scenario])
    return _rendered[scenario]


def deployment(docs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    return one(docs, "Deployment")


def container(docs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    only: Mapping[str, Any] = containers[0]
    return only


def env_of(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(docs)["env"]}


def permissions(role: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """Flatten a (Cluster)Role's rules into (apiGroup, resource, verb) triples."""
    found = set()
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    found.add((group, resource, verb))
    return found


def lease_role(docs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    found = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == LEASE_ROLE]
    assert len(found) <= 1
    return found[0] if found else None


def roles(docs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return of_kind(docs, "Role") + of_kind(docs, "ClusterRole")


def operator_roles(docs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The roles bound to the operator's ServiceAccount (not the aggregated user roles)."""
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace"))
        for b in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding")
    }
    return [
        r
        for r in roles(docs)
        if (r["kind"], r["metadata"]["name"], r["metadata"].get("namespace")) in bound
    ]


# --- lint ------------------------------------------------------------------------------------


def test_helm_lint_is_clean(helm: Helm) -> None:
    """`helm lint --strict` passes with no message at all (not even INFO, e.g. a missing icon)."""
    result = helm.run("lint", "--strict", str(CHART_DIR), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    messages = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert messages == [], result.stdout


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_each_scenario(helm: Helm, scenario: str) -> None:
    values = helm.values_file(SCENARIOS[scenario])
    result = helm.run("lint", "--strict", str(CHART_DIR), "--values", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- every scenario --------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_manifest_has_standard_labels_and_valid_names(helm: Helm, scenario: str) -> None:
    for doc in render(helm, scenario):
        meta = doc["metadata"]
        for label in STANDARD_LABELS:
            assert label in meta.get("labels", {}), f"{doc['kind']}/{meta['name']} lacks {label}"
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert len(meta["name"]) <= 63, meta["name"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pod_security_context_is_restricted(helm: Helm, scenario: str) -> None:
    docs = render(helm, scenario)
    pod = deployment(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    ctx = container(docs)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["runAsNonRoot"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert not ctx["capabilities"].get("add")
    assert not ctx.get("privileged")
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_probes_liveness_on_kopf_readiness_on_the_operator(helm: Helm, scenario: str) -> None:
    """Startup and liveness ask kopf's /healthz (alive); readiness asks /readyz (watching,
    listable, Lease known): never the same probe (kube-score's pod-probes-identical)."""
    docs = render(helm, scenario)
    main = container(docs)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    for probe in ("startupProbe", "livenessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    assert ports["health"] != ports["ready"]
    env = env_of(docs)
    assert env["DATASYNC_OPERATOR_LIVENESS_ENDPOINT"] == f"http://0.0.0.0:{ports['health']}/healthz"
    assert env["DATASYNC_OPERATOR_READINESS_ENDPOINT"] == f"http://0.0.0.0:{ports['ready']}/readyz"
    # The startup probe covers slow starts, so liveness needs no initial delay.
    assert "initialDelaySeconds" not in main["livenessProbe"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_grants_nothing_beyond_what_the_operator_uses(helm: Helm, scenario: str) -> None:
    docs = render(helm, scenario)
    assert operator_roles(docs), "no role is bound to the operator"
    for role in roles(docs):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), f"wildcard in {role['metadata']['name']}"
            assert "secrets" not in rule.get("resources", [])
            assert "configmaps" not in rule.get("resources", [])
            assert not rule.get("nonResourceURLs")
    granted = set().union(*(permissions(r) for r in operator_roles(docs)))
    assert granted <= ALLOWED_PERMISSIONS, granted - ALLOWED_PERMISSIONS
    assert granted >= OPERATOR_PERMISSIONS | ACCESS_PERMISSIONS, (
        OPERATOR_PERMISSIONS | ACCESS_PERMISSIONS
    ) - granted
    # The access role is read-only and about policies and namespaces only, whatever the mode.
    [access] = [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"] == ACCESS_ROLE]
    assert permissions(access) == ACCESS_PERMISSIONS
    # Nothing of kopf's peering (group kopf.dev) is left, in RBAC or as objects.
    assert not [doc for doc in docs if doc["apiVersion"].startswith("kopf.dev/")]
    # Leases only in the release namespace, and reading or renewing only the release's Lease.
    for role in operator_roles(docs):
        for rule in role["rules"]:
            if "leases" not in rule["resources"]:
                continue
            assert role["kind"] == "Role" and role["metadata"]["namespace"] == NAMESPACE
            if set(rule["verbs"]) != {"create"}:
                assert rule.get("resourceNames") == [FULLNAME], rule


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_bindings_name_the_operator_service_account(helm: Helm, scenario: str) -> None:
    docs = render(helm, scenario)
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["namespace"] == NAMESPACE
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == (
        account["metadata"]["name"]
    )
    bindings = of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding")
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
        ]
        kind, name = binding["roleRef"]["kind"], binding["roleRef"]["name"]
        namespace = binding["metadata"].get("namespace")
        assert [
            r for r in roles(docs)
            if r["kind"] == kind and r["metadata"]["name"] == name
            and r["metadata"].get("namespace") == namespace
        ], f"{binding['metadata']['name']} refers to a missing {kind} {name}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_selector_matches_pod_labels(helm: Helm, scenario: str) -> None:
    docs = render(helm, scenario)
    dep = deployment(docs)
    selector = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    for doc in of_kind(docs, "Service"):
        assert doc["spec"]["selector"].items() <= labels.items()
    for doc in of_kind(docs, "PodDisruptionBudget") + of_kind(docs, "NetworkPolicy"):
        key = "selector" if doc["kind"] == "PodDisruptionBudget" else "podSelector"
        assert doc["spec"][key]["matchLabels"].items() <= labels.items()


# --- defaults --------------------------------------------------------------------------------


def test_defaults_watch_all_namespaces_standalone(helm: Helm) -> None:
    docs = render(helm, "defaults")
    env = env_of(docs)
    assert env["DATASYNC_OPERATOR_ALL_NAMESPACES"] == "true"
    assert "DATASYNC_OPERATOR_NAMESPACES" not in env
    assert env["DATASYNC_OPERATOR_STANDALONE"] == "true"
    assert not {name for name in env if name.startswith("DATASYNC_OPERATOR_LEASE_")}
    # The pod name is the reportingInstance of the Events, also without leader election.
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "POD_ID" not in env  # kopf's peering identity: unused since kopf runs standalone
    assert deployment(docs)["spec"]["replicas"] == 1
    # Two standalone operators must never overlap during a rollout.
    assert deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    assert not of_kind(docs, "PodDisruptionBudget")
    assert not of_kind(docs, "NetworkPolicy")
    assert not of_kind(docs, "ServiceMonitor")
    granted = set().union(*(permissions(r) for r in operator_roles(docs)))
    assert not granted & LEASE_PERMISSIONS
    # The namespace observer only runs for operators limited to namespaces; namespace labels
    # (for the access policies' namespaceSelector) are read through the access role only.
    discovery = [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-discovery")]
    assert all(("", "namespaces", "list") not in permissions(r) for r in discovery)
    cluster_role = next(r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"] == FULLNAME)
    assert permissions(cluster_role) == OPERATOR_PERMISSIONS


def test_default_image_is_app_version(helm: Helm) -> None:
    chart = helm.run("show", "chart", str(CHART_DIR)).stdout
    app_version = next(
        line.split(":", 1)[1].strip().strip('"')
        for line in chart.splitlines()
        if line.startswith("appVersion:")
    )
    assert container(render(helm, "defaults"))["image"] == f"datasync-operator:{app_version}"
    digest = "sha256:" + "a" * 64
    docs = helm.template({"image": {"repository": "registry.example/dso", "digest": digest}})
    assert container(docs)["image"] == f"registry.example/dso@{digest}"


# --- namespaced ------------------------------------------------------------------------------


def test_namespaced_mode_has_a_role_per_namespace_and_no_cluster_operator_role(helm: Helm) -> None:
    docs = render(helm, "namespaced")
    assert env_of(docs)["DATASYNC_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert "DATASYNC_OPERATOR_ALL_NAMESPACES" not in env_of(docs)
    by_namespace = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role")}
    assert set(by_namespace) == {"team-a", "team-b"}
    for role in by_namespace.values():
        assert permissions(role) == OPERATOR_PERMISSIONS
    assert {b["metadata"]["namespace"] for b in of_kind(docs, "RoleBinding")} == {"team-a", "team-b"}
    # Cluster-scoped grants are read-only discovery and access policies, never the
    # DataSyncExecutions themselves.
    for cluster_role in of_kind(docs, "ClusterRole"):
        assert permissions(cluster_role) <= ACCESS_PERMISSIONS | {
            ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
            ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        }


def test_namespaced_mode_without_namespaces_watches_the_release_namespace(helm: Helm) -> None:
    docs = render(helm, "namespaced-release-namespace")
    assert env_of(docs)["DATASYNC_OPERATOR_NAMESPACES"] == NAMESPACE
    assert [r["metadata"]["namespace"] for r in of_kind(docs, "Role")] == [NAMESPACE]


def test_namespaced_mode_without_discovery_has_only_the_access_cluster_role(helm: Helm) -> None:
    values = {**SCENARIOS["namespaced"], "rbac": {"discovery": False}}
    docs = helm.template(values)
    # DataSyncAccessPolicies are cluster-scoped: reading them needs a ClusterRole in any mode.
    assert [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")] == [ACCESS_ROLE]
    assert [b["roleRef"]["name"] for b in of_kind(docs, "ClusterRoleBinding")] == [ACCESS_ROLE]
    assert len(of_kind(docs, "Role")) == 2


def test_namespaces_with_all_namespaces_is_refused(helm: Helm) -> None:
    result = helm.template_raw({"watch": {"namespaces": ["team-a"]}}, check=False)
    assert result.returncode != 0
    assert "watch.allNamespaces" in result.stderr


def test_rbac_create_false_renders_no_rbac(helm: Helm) -> None:
    docs = helm.template({"rbac": {"create": False}})
    assert not roles(docs)
    assert not of_kind(docs, "RoleBinding") and not of_kind(docs, "ClusterRoleBinding")


# --- high availability -----------------------------------------------------------------------


def test_ha_elects_a_leader_through_the_release_lease(helm: Helm) -> None:
    docs = render(helm, "ha")
    env = env_of(docs)
    assert deployment(docs)["spec"]["replicas"] == 3
    assert env["DATASYNC_OPERATOR_STANDALONE"] == "false"
    assert env["DATASYNC_OPERATOR_LEASE_NAME"] == FULLNAME
    # The Lease lives in the pod's namespace (POD_NAMESPACE), which is the release namespace.
    assert "DATASYNC_OPERATOR_LEASE_NAMESPACE" not in env
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert deployment(docs)["metadata"]["namespace"] == NAMESPACE
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # client-go's defaults, the operator's too.
    assert (
        env["DATASYNC_OPERATOR_LEASE_DURATION"],
        env["DATASYNC_OPERATOR_LEASE_RENEW_DEADLINE"],
        env["DATASYNC_OPERATOR_LEASE_RETRY_PERIOD"],
    ) == ("15", "10", "2")
    role = lease_role(docs)
    assert role is not None and role["metadata"]["namespace"] == NAMESPACE
    assert permissions(role) == LEASE_PERMISSIONS
    binding = next(b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"] == LEASE_ROLE)
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LEASE_ROLE
    }
    # The cluster-wide role stays exactly the operator's: no Leases in any other namespace.
    cluster_role = next(r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"] == FULLNAME)
    assert permissions(cluster_role) == OPERATOR_PERMISSIONS
    assert not of_kind(docs, "ClusterKopfPeering") and not of_kind(docs, "KopfPeering")
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    strategy = deployment(docs)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    anti = deployment(docs)["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"][
        "topologyKey"
    ] == "kubernetes.io/hostname"


def test_ha_namespaced_keeps_the_lease_in_the_release_namespace(helm: Helm) -> None:
    docs = render(helm, "ha-namespaced")
    by_namespace = {
        r["metadata"]["namespace"]: r for r in of_kind(docs, "Role") if r["metadata"]["name"] == FULLNAME
    }
    assert set(by_namespace) == {"team-a", "team-b"}
    for role in by_namespace.values():
        assert permissions(role) == OPERATOR_PERMISSIONS  # no Leases in watched namespaces
    lease = lease_role(docs)
    assert lease is not None and lease["metadata"]["namespace"] == NAMESPACE
    assert permissions(lease) == LEASE_PERMISSIONS
    assert env_of(docs)["DATASYNC_OPERATOR_LEASE_NAME"] == FULLNAME


def test_leader_election_can_be_enabled_with_one_replica(helm: Helm) -> None:
    docs = render(helm, "leader-election-single")
    assert deployment(docs)["spec"]["replicas"] == 1
    assert env_of(docs)["DATASYNC_OPERATOR_STANDALONE"] == "false"
    assert lease_role(docs) is not None
    # The new pod of an upgrade starts as a standby, so the update can roll ...
    strategy = deployment(docs)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert not of_kind(docs, "PodDisruptionBudget")  # ... and one replica never blocks a drain


def test_lease_timings_reach_the_environment_and_must_be_ordered(helm: Helm) -> None:
    timings = {"leaseDuration": 30, "renewDeadline": 20.5, "retryPeriod": 0.5}
    env = env_of(helm.template({"replicaCount": 2, "leaderElection": timings}))
    assert env["DATASYNC_OPERATOR_LEASE_DURATION"] == "30"
    assert env["DATASYNC_OPERATOR_LEASE_RENEW_DEADLINE"] == "20.5"
    assert env["DATASYNC_OPERATOR_LEASE_RETRY_PERIOD"] == "0.5"
    # The operator refuses to start unless retryPeriod < renewDeadline < leaseDuration: so does
    # the chart, at install time, whether or not leader election is on.
    for bad in ({"renewDeadline": 15}, {"retryPeriod": 10}, {"leaseDuration": 5}):
        result = helm.template_raw({"leaderElection": bad}, check=False)
        assert result.returncode != 0, bad
        assert "retryPeriod < renewDeadline < leaseDuration" in result.stderr, result.stderr


def test_rbac_create_false_renders_no_lease_role(helm: Helm) -> None:
    docs = helm.template({"replicaCount": 2, "rbac": {"create": False}})
    assert not roles(docs) and not of_kind(docs, "RoleBinding")
    assert env_of(docs)["DATASYNC_OPERATOR_LEASE_NAME"] == FULLNAME


def test_pdb_can_be_disabled(helm: Helm) -> None:
    docs = helm.template({"replicaCount": 2, "podDisruptionBudget": {"enabled": False}})
    assert not of_kind(docs, "PodDisruptionBudget")


def test_explicit_affinity_replaces_the_default_anti_affinity(helm: Helm) -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["system"]}]}]}}}
    docs = helm.template({"replicaCount": 2, "affinity": affinity})
    assert deployment(docs)["spec"]["template"]["spec"]["affinity"] == affinity


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_service_targets_the_metrics_port(helm: Helm) -> None:
    docs = render(helm, "defaults")
    env = env_of(docs)
    assert env["DATASYNC_OPERATOR_METRICS_ENABLED"] == "true"
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert env["DATASYNC_OPERATOR_METRICS_PORT"] == str(ports["metrics"]) == "9090"
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not of_kind(docs, "ServiceMonitor")


def test_metrics_off_removes_port_service_and_service_monitor(helm: Helm) -> None:
    docs = render(helm, "metrics-off")
    assert env_of(docs)["DATASYNC_OPERATOR_METRICS_ENABLED"] == "false"
    assert "DATASYNC_OPERATOR_METRICS_PORT" not in env_of(docs)
    assert "metrics" not in {p["name"] for p in container(docs)["ports"]}
    assert not of_kind(docs, "Service")
    assert not of_kind(docs, "ServiceMonitor")


def test_service_monitor_scrapes_the_metrics_service(helm: Helm) -> None:
    docs = render(helm, "everything")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prom"


# --- network policy, AWS and service account -------------------------------------------------


def test_network_policy_allows_only_metrics_in_and_dns_https_out(helm: Helm) -> None:
    docs = render(helm, "network-policy")
    policy = one(docs, "NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ingress_ports == ["metrics"]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}


def test_network_policy_without_metrics_allows_no_ingress(helm: Helm) -> None:
    docs = helm.template({"networkPolicy": {"enabled": True}, "metrics": {"enabled": False}})
    assert one(docs, "NetworkPolicy")["spec"]["ingress"] == []


def test_irsa_annotation_aws_settings_and_extra_env(helm: Helm) -> None:
    values = {
        **SCENARIOS["everything"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    }
    docs = helm.template(values)
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/dso"
    }
    env = env_of(docs)
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_ENDPOINT_URL_DATASYNC"] == "https://datasync.example:8443"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert "AWS_REGION" not in env_of(render(helm, "defaults"))


def test_operator_settings_reach_the_environment(helm: Helm) -> None:
    docs = helm.template({"operator": {
        "logLevel": "DEBUG", "logFormat": "text", "retryBaseDelay": 0.5, "retryMaxDelay": 60,
        "stalledRecheckInterval": 0, "awsConnectTimeout": 3, "awsReadTimeout": 7,
        "awsConcurrency": 4, "pollInterval": 15, "awsRateLimit": 2.5, "awsRateBurst": 4,
        "pollShare": 0.25, "workers": 4, "resyncInterval": 120,
    }})
    env = env_of(docs)
    assert env["DATASYNC_OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert env["DATASYNC_OPERATOR_LOG_FORMAT"] == "text"
    assert env["DATASYNC_OPERATOR_RETRY_BASE_DELAY"] == "0.5"
    assert env["DATASYNC_OPERATOR_RETRY_MAX_DELAY"] == "60"
    assert env["DATASYNC_OPERATOR_STALLED_RECHECK_INTERVAL"] == "0"
    assert env["DATASYNC_OPERATOR_AWS_CONNECT_TIMEOUT"] == "3"
    assert env["DATASYNC_OPERATOR_AWS_READ_TIMEOUT"] == "7"
    assert env["DATASYNC_OPERATOR_AWS_CONCURRENCY"] == "4"
    assert env["DATASYNC_OPERATOR_POLL_INTERVAL"] == "15"
    assert env["DATASYNC_OPERATOR_AWS_RATE_LIMIT"] == "2.5"
    assert env["DATASYNC_OPERATOR_AWS_RATE_BURST"] == "4"
    assert env["DATASYNC_OPERATOR_POLL_SHARE"] == "0.25"
    assert env["DATASYNC_OPERATOR_WORKERS"] == "4"
    assert env["DATASYNC_OPERATOR_RESYNC_INTERVAL"] == "120"
    defaults = env_of(render(helm, "defaults"))
    assert (
        defaults["DATASYNC_OPERATOR_POLL_SHARE"],
        defaults["DATASYNC_OPERATOR_WORKERS"],
        defaults["DATASYNC_OPERATOR_RESYNC_INTERVAL"],
    ) == ("0.5", "16", "600")


def test_chart_environment_matches_the_cli_options(helm: Helm) -> None:
    """Every DATASYNC_OPERATOR_* variable the chart sets is an option of `datasync-operator run`,
    and every option is set by the chart, except the Lease namespace: the operator takes the
    pod's namespace (POD_NAMESPACE, from the downward API), where the chart's Role grants it;
    and the metrics bind address (the pod's port is reached through its Service)."""
    from datasync_operator.cli import run

    cli_vars = {param.envvar for param in run.params if isinstance(param.envvar, str)}
    chart_vars = {
        name
        for scenario in SCENARIOS
        for name in env_of(render(helm, scenario))
        if name.startswith("DATASYNC_OPERATOR_")
    }
    access = helm.template({"operator": {"accountId": "111122223333", "extraRegions": ["xx-new-1"]}})
    chart_vars |= {name for name in env_of(access) if name.startswith("DATASYNC_OPERATOR_")}
    assert chart_vars <= cli_vars, f"not options of the CLI: {sorted(chart_vars - cli_vars)}"
    assert cli_vars - chart_vars == {
        "DATASYNC_OPERATOR_LEASE_NAMESPACE",
        "DATASYNC_OPERATOR_METRICS_ADDRESS",
    }, sorted(cli_vars - chart_vars)


def test_existing_service_account_is_used_and_not_created(helm: Helm) -> None:
    docs = helm.template({"serviceAccount": {"create": False, "name": "platform-dso"}})
    assert not of_kind(docs, "ServiceAccount")
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "platform-dso"
    for binding in of_kind(docs, "ClusterRoleBinding"):
        assert binding["subjects"][0]["name"] == "platform-dso"
    result = helm.template_raw({"serviceAccount": {"create": False}}, check=False)
    assert result.returncode != 0 and "serviceAccount.name" in result.stderr


def test_aggregated_user_roles_only_when_asked(helm: Helm) -> None:
    assert not [r for r in of_kind(render(helm, "defaults"), "ClusterRole")
                if r["metadata"]["name"].endswith(("-view", "-edit"))]
    docs = render(helm, "everything")
    view = next(r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-view"))
    edit = next(r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-edit"))
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {v for _, _, v in permissions(view)} == {"get", "list", "watch"}
    assert ("datasync.operator.io", "datasyncexecutions/status", "patch") not in permissions(edit)


def test_notes_tell_how_to_check_the_install(helm: Helm, tmp_path: Path) -> None:
    # helm template leaves NOTES.txt out (and helm 3's dry-run install needs a cluster): render
    # a copy of the chart in which NOTES.txt becomes the data of a ConfigMap.
    chart = tmp_path / "chart"
    shutil.copytree(CHART_DIR, chart)
    notes_txt = chart / "templates" / "NOTES.txt"
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes_txt.read_text() + "{{- end }}\n"
    )
    notes_txt.unlink()
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "test.notes" . | toJson }}\n'
    )
    def notes(values: dict[str, Any]) -> str:
        rendered = helm.run(
            "template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "--values", str(helm.values_file(values)),
            "--show-only", "templates/notes.yaml",
        ).stdout
        text: str = yaml.safe_load(rendered)["data"]["notes"]
        return text

    text = notes(SCENARIOS["namespaced"])
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{FULLNAME}" in text
    assert "team-a, team-b" in text
    assert "kubectl -n team-a apply" in text
    assert "kubectl get datasyncexecutions" in text
    assert "datasync:CancelTaskExecution" in text
    assert "Lease" not in text
    text = notes(SCENARIOS["ha-namespaced"])
    assert f"elect a leader through the Lease {NAMESPACE}/{FULLNAME}" in text
    assert f"kubectl -n {NAMESPACE} get lease {FULLNAME} -o jsonpath='{{.spec.holderIdentity}}'" in text


def test_network_policy_narrows_the_api_server_and_aws_separately(helm: Helm) -> None:
    docs = helm.template({"networkPolicy": {
        "enabled": True,
        "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
        "aws": {"cidrs": ["52.94.0.0/22", "3.5.0.0/19"], "ports": [443]},
    }})
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    peers = {
        tuple(p["port"] for p in rule["ports"]): [b["ipBlock"]["cidr"] for b in rule["to"]]
        for rule in egress
        if "to" in rule
    }
    assert peers == {(6443,): ["10.0.0.1/32"], (443,): ["52.94.0.0/22", "3.5.0.0/19"]}
    env = env_of(helm.template({"operator": {"accountId": "111122223333",
                                             "extraRegions": ["xx-new-1", "yy-new-2"]}}))
    assert env["DATASYNC_OPERATOR_ACCOUNT_ID"] == "111122223333"
    assert env["DATASYNC_OPERATOR_EXTRA_REGIONS"] == "xx-new-1,yy-new-2"
