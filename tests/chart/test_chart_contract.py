"""What the chart promises besides its templates: its CRDs, its values schema, its versions.

- the chart's DataSyncExecution CRD is byte-identical to the canonical ``crds/`` file;
- its kopf peering CRDs declare exactly the resources kopf looks up for peering;
- ``values.schema.json`` accepts the defaults and makes helm refuse wrong types, unknown keys
  and bad values with a message naming the field;
- the chart's appVersion is the package version.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.helm import CHART_DIR, REPO_ROOT, Helm

CANONICAL_CRD = REPO_ROOT / "crds" / "datasyncexecution.yaml"
CHART_CRD = CHART_DIR / "crds" / "datasyncexecution.yaml"
PEERING_CRDS = CHART_DIR / "crds" / "kopf-peering.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- CRDs ------------------------------------------------------------------------------------


def test_chart_crd_is_byte_identical_to_the_canonical_crd() -> None:
    assert CHART_CRD.read_bytes() == CANONICAL_CRD.read_bytes(), (
        f"{CHART_CRD.relative_to(REPO_ROOT)} differs from {CANONICAL_CRD.relative_to(REPO_ROOT)}; "
        "copy it with `make chart-crd` (cp crds/datasyncexecution.yaml "
        "charts/datasync-operator/crds/)"
    )


def test_chart_crds_folder_holds_only_known_files() -> None:
    # Helm installs every file in crds/: nothing else may slip in.
    assert sorted(p.name for p in (CHART_DIR / "crds").iterdir()) == [
        "datasyncexecution.yaml",
        "kopf-peering.yaml",
    ]


def test_peering_crds_match_what_kopf_looks_up() -> None:
    from kopf._cogs.structs import references  # the selectors kopf's peering engine uses

    crds = list(yaml.safe_load_all(PEERING_CRDS.read_text()))
    assert len(crds) == 2
    for selector, scope in (
        (references.CLUSTER_PEERINGS_K, "Cluster"),
        (references.NAMESPACED_PEERINGS_K, "Namespaced"),
    ):
        matching = []
        for crd in crds:
            spec = crd["spec"]
            for version in spec["versions"]:
                resource = references.Resource(
                    group=spec["group"],
                    version=version["name"],
                    plural=spec["names"]["plural"],
                    kind=spec["names"]["kind"],
                    singular=spec["names"]["singular"],
                    namespaced=spec["scope"] == "Namespaced",
                    subresources=frozenset(version.get("subresources", {})),
                )
                if selector.check(resource):
                    matching.append((crd, version))
        assert len(matching) == 1, f"{selector} matches {len(matching)} peering CRD versions"
        crd, version = matching[0]
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
        assert crd["spec"]["scope"] == scope
        assert version["served"] and version["storage"]
        # kopf merge-patches .status of the object itself: a status subresource would make it
        # patch /status instead, which the chart's RBAC does not grant.
        assert "subresources" not in version
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True


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
        ({"networkPolicy": {"egressPorts": ["https"]}}, "egressPorts"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "minAvailable"),
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

