"""The release path, run here as far as it can be: actionlint on the workflows (built from Go
modules), every workflow `run:` step a make target of this Makefile, one version everywhere, and
`make chart-package` pinning the image digest into a chart that renders and shows its README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.release import version as versions

from tests.support.gotools import go_tool
from tests.support.helm import REPO_ROOT, Helm, one, parse_manifests

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
DIGEST = "sha256:" + "c" * 64


def test_actionlint_passes() -> None:
    actionlint = go_tool("actionlint")
    assert WORKFLOWS, "no workflows"
    result = subprocess.run([str(actionlint), *map(str, WORKFLOWS)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"(?m)^([a-z][a-z-]*):", text))


def run_steps() -> list[tuple[str, str]]:
    steps: list[tuple[str, str]] = []
    for path in WORKFLOWS:
        workflow: dict[str, Any] = yaml.safe_load(path.read_text())
        for job in workflow["jobs"].values():
            steps.extend((path.name, step["run"]) for step in job["steps"] if "run" in step)
    return steps


def test_every_run_step_is_a_make_target_or_ci_run() -> None:
    targets = make_targets()
    steps = run_steps()
    assert any("chart-push" in run for _, run in steps)
    for name, run in steps:
        command = run.strip()
        if command == ".ci/run":
            continue
        match = re.match(r"make ([a-z-]+)", command)
        assert match and "\n" not in command, f"{name}: `{command}` is not one make target"
        assert match.group(1) in targets, f"{name}: no target {match.group(1)} in the Makefile"


def test_release_builds_multi_arch_image_with_sbom_and_provenance() -> None:
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"]  # `on:` parses as True in YAML 1.1
    [build] = [s for s in workflow["jobs"]["image"]["steps"] if s.get("id") == "build"]
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["sbom"] is True and build["with"]["provenance"] == "mode=max"
    chart_steps = " ".join(s.get("run", "") for s in workflow["jobs"]["chart"]["steps"])
    assert "IMAGE_DIGEST=" in chart_steps and "needs.image.outputs.digest" in str(workflow["jobs"]["chart"])


def test_one_version_everywhere() -> None:
    assert versions.problems() == []
    current = versions.version()
    assert versions.problems(tag=f"v{current}") == []
    assert versions.problems(tag="v0.0.0-wrong") != []
    notes = versions.changelog_section((REPO_ROOT / "CHANGELOG.md").read_text(), current)
    assert notes and "### Added" in notes
    result = subprocess.run([sys.executable, "tools/release/version.py"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == current


def test_license_is_the_declared_one() -> None:
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()[:200]
    assert 'license = "Apache-2.0"' in (REPO_ROOT / "pyproject.toml").read_text()
    chart = yaml.safe_load((REPO_ROOT / "charts" / "datasync-operator" / "Chart.yaml").read_text())
    assert chart["annotations"]["artifacthub.io/license"] == "Apache-2.0"
    for field in ("home", "sources", "icon", "maintainers"):
        assert chart.get(field), field
    for annotation in ("images", "links", "crds", "crdsExamples", "operator"):
        assert f"artifacthub.io/{annotation}" in chart["annotations"], annotation


def test_make_chart_package_pins_the_image_digest(helm: Helm, helm_bin_dir: Path, tmp_path: Path) -> None:
    source = (REPO_ROOT / "charts" / "datasync-operator" / "values.yaml").read_text()
    env = {**os.environ, "DATASYNC_OPERATOR_HELM_DIR": str(helm_bin_dir)}
    subprocess.run([sys.executable, "tools/release/package_chart.py", "--helm",
                    str(helm_bin_dir / "helm"), "--version", versions.version(), "--dest",
                    str(tmp_path), "--image-repository", "ghcr.io/example/datasync-operator",
                    "--image-digest", DIGEST], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True)
    package = tmp_path / f"datasync-operator-{versions.version()}.tgz"
    docs = parse_manifests(helm.run("template", "r", str(package)).stdout)
    image = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/example/datasync-operator@{DIGEST}"
    with tarfile.open(package) as archive:
        chart = yaml.safe_load(archive.extractfile("datasync-operator/Chart.yaml").read())  # type: ignore[union-attr]
        names = archive.getnames()
    assert f"ghcr.io/example/datasync-operator@{DIGEST}" in chart["annotations"]["artifacthub.io/images"]
    assert chart["version"] == chart["appVersion"] == versions.version()
    assert "datasync-operator/README.md" in names
    assert "datasync-operator/files/crds/datasyncexecution.yaml" in names
    assert helm.run("show", "readme", str(package)).stdout.startswith("# datasync-operator Helm chart")
    # The source chart is untouched.
    assert (REPO_ROOT / "charts" / "datasync-operator" / "values.yaml").read_text() == source


def test_package_refuses_a_bad_digest(helm_bin_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "tools/release/package_chart.py", "--helm",
                             str(helm_bin_dir / "helm"), "--version", "0.1.0", "--dest",
                             str(tmp_path), "--image-repository", "r", "--image-digest", "latest"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "sha256" in result.stderr


@pytest.mark.parametrize("target", ["version-check", "chart-package", "chart-push", "release-notes",
                                    "actionlint", "kube-score", "chart-readme"])
def test_documented_make_targets_exist(target: str) -> None:
    assert target in make_targets()


def test_make_chart_push_pushes_the_packaged_chart_to_an_oci_registry(
    helm: Helm, tmp_path: Path
) -> None:
    """The release's push step, run for real against a registry on loopback (plain HTTP)."""
    from tests.support.oci_registry import OciRegistry

    env = {**os.environ, "HOME": str(tmp_path)}  # helm's registry config stays in the test
    version = versions.version()
    with OciRegistry() as registry:
        subprocess.run(["make", "chart-package", "IMAGE_REPOSITORY=ghcr.io/example/datasync-operator",
                        f"IMAGE_DIGEST={DIGEST}"], cwd=REPO_ROOT, env=env, check=True,
                       capture_output=True)
        pushed = subprocess.run(["make", "chart-push", f"CHART_REGISTRY=oci://{registry.url}/charts",
                                 "CHART_PUSH_FLAGS=--plain-http"], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, check=False)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert ("charts/datasync-operator", version) in registry.manifests
        shown = helm.run("show", "chart", f"oci://{registry.url}/charts/datasync-operator",
                         "--version", version, "--plain-http").stdout
    chart = yaml.safe_load(shown)
    assert chart["version"] == version
    assert f"ghcr.io/example/datasync-operator@{DIGEST}" in chart["annotations"]["artifacthub.io/images"]
