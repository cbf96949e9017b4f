"""What the chart promises besides its templates: its CRDs, its values schema, its versions.

- the chart's CRDs (``files/crds/``, rendered by ``templates/crds.yaml``) are byte-identical
  copies of the canonical ``crds/`` files, one for each, and the chart has no Helm ``crds/``
  folder (Helm would install from it once and never upgrade; it would also clash with the
  templates); no kopf peering CRDs (replicas elect a leader through a Lease);
- its Lease Role grants exactly the calls that leader election (``leadership.py``) makes on the
  Lease the chart configures, and nothing more;
- ``values.schema.json`` accepts the defaults and makes helm refuse wrong types, unknown keys
  and bad values with a message naming the field;
- the chart's appVersion is the package version.
"""

from __future__ import annotations

import asyncio
import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.helm import CHART_DIR, NAMESPACE, REPO_ROOT, Helm, of_kind, one

CANONICAL_CRDS = REPO_ROOT / "crds"
CHART_CRDS = CHART_DIR / "files" / "crds"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- CRDs ------------------------------------------------------------------------------------


def test_chart_crds_are_byte_identical_to_the_canonical_crds() -> None:
    canonical = sorted(p.name for p in CANONICAL_CRDS.glob("*.yaml"))
    assert "datasyncexecution.yaml" in canonical
    assert sorted(p.name for p in CHART_CRDS.iterdir()) == canonical, (
        "charts/datasync-operator/files/crds/ must hold a copy of every crds/*.yaml and nothing "
        "else: `make chart-crd`"
    )
    for name in canonical:
        assert (CHART_CRDS / name).read_bytes() == (CANONICAL_CRDS / name).read_bytes(), (
            f"charts/datasync-operator/files/crds/{name} differs from crds/{name}: `make chart-crd`"
        )


def test_chart_has_no_helm_crds_folder() -> None:
    # CRDs are templates (crds.enabled/crds.keep): a crds/ folder would be installed by Helm
    # besides them (a clash on install) and never upgraded.
    assert not (CHART_DIR / "crds").exists()


def _crds(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "CustomResourceDefinition"]


def _dse_crd(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in _crds(docs) if d["metadata"]["name"] == "datasyncexecutions.datasync.operator.io"]


def test_crds_are_rendered_kept_and_labelled(helm: Helm) -> None:
    docs = helm.template({"commonLabels": {"team": "data"}})
    assert len(_crds(docs)) == len(list(CANONICAL_CRDS.glob("*.yaml")))  # every CRD
    [crd] = _dse_crd(docs)
    canonical = load_yaml(CANONICAL_CRDS / "datasyncexecution.yaml")
    assert crd["spec"] == canonical["spec"]  # the same CRD, whatever the YAML formatting
    assert crd["metadata"]["name"] == canonical["metadata"]["name"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    labels = crd["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "crd" and labels["team"] == "data"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_crds_without_keep_or_not_managed(helm: Helm) -> None:
    [crd] = _dse_crd(helm.template({"crds": {"keep": False}}))
    assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})
    assert _crds(helm.template({"crds": {"enabled": False}})) == []


# --- leader election: the Lease RBAC is what leadership.py calls -----------------------------


#: How each KubeClient method reaches the API server, as an RBAC verb.
RBAC_VERB = {"get": "get", "list": "list", "create": "create", "replace": "update", "patch": "patch"}


class RecordingLeases:
    """An in-memory Lease API (stale PUTs are 409s) that records every call as RBAC sees it:
    (apiGroup, resource, verb, namespace, name in the URL or None)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str | None, str], dict[str, Any]] = {}
        self.calls: set[tuple[str, str, str, str | None, str | None]] = set()
        self.version = 0

    def _record(self, method: str, ref: Any, namespace: str | None, name: str | None) -> None:
        self.calls.add((ref.group, ref.plural, RBAC_VERB[method], namespace, name))

    def _store(self, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(namespace, obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    async def get(self, ref: Any, namespace: str | None, name: str) -> dict[str, Any]:
        from datasync_operator.kube import NotFound

        self._record("get", ref, namespace, name)
        if (namespace, name) not in self.objects:
            raise NotFound(404, "NotFound", "not found")
        return copy.deepcopy(self.objects[(namespace, name)])

    async def create(self, ref: Any, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        from datasync_operator.kube import Conflict

        self._record("create", ref, namespace, None)  # POST to the collection: no name in the URL
        if (namespace, body["metadata"]["name"]) in self.objects:
            raise Conflict(409, "AlreadyExists", "already exists")
        return self._store(namespace, body)

    async def replace(
        self, ref: Any, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        from datasync_operator.kube import Conflict

        self._record("replace", ref, namespace, name)
        current = self.objects[(namespace, name)]["metadata"]["resourceVersion"]
        if body["metadata"].get("resourceVersion") != current:
            raise Conflict(409, "Conflict", "the object has been modified")
        return self._store(namespace, body)


async def _drive_leader_election(api: RecordingLeases, namespace: str, name: str) -> None:
    """Every path of the elector: create a new Lease, renew it, release it on stop; stand by
    while another replica holds it; take an expired one over."""
    from datasync_operator.leadership import LeaderElector, LeaseSettings

    async def until(condition: Any) -> None:
        async with asyncio.timeout(10):
            while not condition():
                await asyncio.sleep(0.01)

    def settings(identity: str) -> LeaseSettings:
        return LeaseSettings(namespace, name, identity, duration=0.6, renew_deadline=0.4,
                             retry_period=0.05)

    # A first replica creates the Lease, renews it, and releases it when stopped.
    first = LeaderElector(api, settings("pod-a_1"))
    task = asyncio.create_task(first.run())
    await until(first.leading.is_set)
    renewed = api.version
    await until(lambda: api.version >= renewed + 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not api.objects[(namespace, name)]["spec"].get("holderIdentity")  # released
    # Another replica holds it (and stops renewing): a second one stands by, then takes over.
    lease = api.objects[(namespace, name)]
    api._store(namespace, {**lease, "spec": {**lease["spec"], "holderIdentity": "pod-b_2",
                                              "leaseDurationSeconds": 1}})
    second = LeaderElector(api, settings("pod-c_3"))
    task = asyncio.create_task(second.run())
    try:
        await until(second.leading.is_set)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert api.objects[(namespace, name)]["spec"]["leaseTransitions"] >= 1


def test_lease_rbac_is_exactly_what_leader_election_calls(helm: Helm) -> None:
    from datasync_operator.leadership import LEASES

    docs = helm.template({"replicaCount": 2})
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}
    # The Lease the chart configures: its name, in the pod's namespace (the release namespace).
    name = env["DATASYNC_OPERATOR_LEASE_NAME"]
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    namespace = one(docs, "Deployment")["metadata"]["namespace"]
    assert namespace == NAMESPACE

    api = RecordingLeases()
    asyncio.run(_drive_leader_election(api, namespace, name))
    assert {(group, resource) for group, resource, *_ in api.calls} == {(LEASES.group, LEASES.plural)}
    assert {ns for *_, ns, _ in api.calls} == {namespace}
    assert {n for *_, n in api.calls} <= {name, None}
    # RBAC terms: (apiGroup, resource, verb, resourceNames); a call with no name in its URL
    # (create) cannot be restricted by name.
    needed = {(g, r, verb, (n,) if n else ()) for g, r, verb, _, n in api.calls}
    assert needed == {
        ("coordination.k8s.io", "leases", "get", (name,)),
        ("coordination.k8s.io", "leases", "update", (name,)),
        ("coordination.k8s.io", "leases", "create", ()),
    }

    granted = set()
    lease_roles = [
        role for role in of_kind(docs, "Role") + of_kind(docs, "ClusterRole")
        if any("leases" in rule["resources"] for rule in role["rules"])
    ]
    assert len(lease_roles) == 1
    role = lease_roles[0]
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == namespace
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb, tuple(rule.get("resourceNames") or ())))
    assert granted == needed
    # Bound to the operator's ServiceAccount, in the same namespace.
    binding = one(
        [b for b in of_kind(docs, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]],
        "RoleBinding",
    )
    assert binding["metadata"]["namespace"] == namespace
    assert binding["subjects"] == [{
        "kind": "ServiceAccount",
        "name": one(docs, "ServiceAccount")["metadata"]["name"],
        "namespace": namespace,
    }]


# --- values schema ---------------------------------------------------------------------------


def test_default_values_satisfy_the_schema() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(load_yaml(CHART_DIR / "values.yaml"), schema)


def test_schema_covers_every_default_value() -> None:
    """Every key of values.yaml (two levels down) is declared, so none is silently untyped."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = load_yaml(CHART_DIR / "values.yaml")
    assert schema["additionalProperties"] is False
    for key, value in values.items():
        assert key in schema["properties"], key
        declared = schema["properties"][key]
        if isinstance(value, dict) and "properties" in declared:
            assert declared.get("additionalProperties") is False, key
            for sub in value:
                assert sub in declared["properties"], f"{key}.{sub}"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"nonsense": True}, "nonsense"),
        ({"watch": {"allNamespaces": "yes"}}, "allNamespaces"),
        ({"watch": {"allNamespaces": False, "namespaces": ["team-*"]}}, "namespaces"),
        ({"watch": {"namespaces": "team-a"}}, "namespaces"),
        ({"operator": {"logFormat": "xml"}}, "logFormat"),
        ({"operator": {"retryBaseDelay": "fast"}}, "retryBaseDelay"),
        ({"operator": {"awsConcurrency": 0}}, "awsConcurrency"),
        ({"operator": {"unknownSetting": 1}}, "unknownSetting"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"metrics": {"enabled": "true"}}, "enabled"),
        ({"metrics": {"port": 70000}}, "port"),
        ({"healthPort": "8080"}, "healthPort"),
        ({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": 5}}}, "role-arn"),
        ({"aws": {"region": "Europe"}}, "region"),
        ({"aws": {"datasyncEndpointUrl": "datasync.local"}}, "datasyncEndpointUrl"),
        ({"networkPolicy": {"aws": {"ports": ["https"]}}}, "ports"),
        ({"operator": {"accountId": "12345"}}, "accountId"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "minAvailable"),
        ({"peering": {"enabled": True}}, "peering"),
        ({"leaderElection": {"leaseDuration": "15s"}}, "leaseDuration"),
        ({"leaderElection": {"retryPeriod": 0}}, "retryPeriod"),
        ({"leaderElection": {"enabled": "yes"}}, "enabled"),
        ({"leaderElection": {"name": "other"}}, "name"),
        ({"operator": {"workers": 0}}, "workers"),
        ({"operator": {"pollShare": 1.5}}, "pollShare"),
        ({"operator": {"resyncInterval": -1}}, "resyncInterval"),
    ],
)
def test_schema_rejects_bad_values_naming_the_field(
    helm: Helm, values: dict[str, Any], field: str
) -> None:
    result = helm.template_raw(values, check=False)
    assert result.returncode != 0, f"helm accepted {values}"
    assert "schema" in result.stderr, result.stderr
    assert field in result.stderr, result.stderr


@pytest.mark.parametrize(
    "values",
    [
        {"podDisruptionBudget": {"minAvailable": "50%"}},
        {"aws": {"region": "us-gov-west-1"}},
        {"operator": {"retryBaseDelay": 0.25, "stalledRecheckInterval": 0}},
        {"operator": {"pollShare": 1, "workers": 256, "resyncInterval": 0}},
        {"replicaCount": 2, "leaderElection": {"leaseDuration": 4, "renewDeadline": 3,
                                               "retryPeriod": 0.5}},
        {"global": {"imageRegistry": "x"}},
    ],
)
def test_schema_accepts_valid_variants(helm: Helm, values: dict[str, Any]) -> None:
    result = helm.template_raw(values, check=False)
    assert result.returncode == 0, result.stderr


# --- versions --------------------------------------------------------------------------------


def test_chart_app_version_is_the_package_version() -> None:
    chart = load_yaml(CHART_DIR / "Chart.yaml")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]

