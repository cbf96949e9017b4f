"""kube-score (built from Go modules by tools/kube-score/build.sh) on the chart's default and HA
renders: every check passes except the deliberate choices the chart README justifies, each of
which the README's kube-score table names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gotools import go_tool
from tests.support.helm import CHART_DIR, REPO_ROOT, Helm

HA_VALUES = REPO_ROOT / "examples" / "values-ha.yaml"

#: (kind, check id, comment summary) -> renders where it is accepted. Justified in the chart
#: README's "kube-score" table.
EXCEPTIONS: dict[tuple[str, str, str], set[str]] = {
    ("Deployment", "container-resources", "CPU limit is not set"): {"default", "ha"},
    ("Deployment", "container-image-pull-policy", "ImagePullPolicy is not set to Always"): {"default", "ha"},
    ("Pod", "container-image-pull-policy", "ImagePullPolicy is not set to Always"): {"default", "ha"},
    ("Deployment", "pod-networkpolicy", "The pod does not have a matching NetworkPolicy"): {"default"},
    ("Pod", "pod-networkpolicy", "The pod does not have a matching NetworkPolicy"): {"default", "ha"},
    ("Deployment", "deployment-strategy", "Deployment update strategy"): {"default"},
    ("Deployment", "deployment-replicas", "Deployment few replicas"): {"default"},
}


@pytest.fixture(scope="module")
def kube_score() -> Path:
    return go_tool("kube-score")


def findings(kube_score: Path, manifests: str, tmp_path: Path) -> set[tuple[str, str, str]]:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(manifests)
    result = subprocess.run([str(kube_score), "score", "--output-format", "json", str(rendered)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout, result.stderr
    found: set[tuple[str, str, str]] = set()
    for obj in json.loads(result.stdout):
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] >= 10:
                continue
            for comment in check["comments"] or [{"summary": check["check"]["name"]}]:
                found.add((obj["type_meta"]["kind"], check["check"]["id"], comment["summary"]))
    return found


def render(helm: Helm, values_file: Path | None) -> str:
    extra = ["--values", str(values_file)] if values_file else []
    return helm.run("template", "datasync-operator", str(CHART_DIR), "--namespace",
                    "datasync-system", *extra).stdout


@pytest.mark.parametrize("name", ["default", "ha"])
def test_only_documented_exceptions(helm: Helm, kube_score: Path, tmp_path: Path, name: str) -> None:
    found = findings(kube_score, render(helm, HA_VALUES if name == "ha" else None), tmp_path)
    allowed = {key for key, renders in EXCEPTIONS.items() if name in renders}
    assert found <= allowed, f"kube-score findings not justified in the chart README: {sorted(found - allowed)}"
    # Every exception still happens (else drop it from the table and from the README).
    assert found == allowed, f"no longer found, drop them: {sorted(allowed - found)}"


def test_network_policy_on_clears_the_operator_pod(helm: Helm, kube_score: Path, tmp_path: Path) -> None:
    values = helm.values_file({"networkPolicy": {"enabled": True}})
    found = findings(kube_score, render(helm, values), tmp_path)
    assert ("Deployment", "pod-networkpolicy", "The pod does not have a matching NetworkPolicy") not in found


def test_readme_justifies_every_exception() -> None:
    readme = (CHART_DIR / "README.md").read_text()
    table = readme.split("## kube-score", 1)[1].split("\n## ", 1)[0]
    for _, check, _ in EXCEPTIONS:
        assert f"`{check}`" in table, f"the chart README's kube-score table does not justify {check}"


def test_ha_values_file_is_ha(helm: Helm) -> None:
    values: dict[str, Any] = yaml.safe_load(HA_VALUES.read_text())
    assert values["replicaCount"] >= 2
    docs = [d for d in yaml.safe_load_all(render(helm, HA_VALUES)) if d]
    kinds = {d["kind"] for d in docs}
    assert {"PodDisruptionBudget", "Role", "NetworkPolicy"} <= kinds
