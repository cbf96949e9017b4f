"""The Argo CD health check as a ready-to-submit contribution to Argo CD's built-in checks.

Argo CD keeps built-in health checks in ``resource_customizations/<group>/<kind>/health.lua``,
each with a ``health_test.yaml`` (``tests: [{healthStatus: {status, message}, inputPath}]``) and
its inputs under ``testdata/``; its test runner (``util/lua``'s TestLuaHealthScript) walks that
tree, runs every script on every input and wants the status and the message exactly. This file
runs the same walk over ``gitops/argocd/resource_customizations`` with the Lua sandbox of
test_gitops_health.py. The test data are the recorded status fixtures (tests/chart/fixtures/
status); run this file as a script to regenerate the folder after changing health.lua or them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.test_gitops_health import (
    EXPECTED,
    HEALTH_LUA,
    REPO_ROOT,
    fixture_names,
    load_fixture,
    run_health_lua,
)

TREE = REPO_ROOT / "gitops" / "argocd" / "resource_customizations"
CHECK = TREE / "datasync.operator.io" / "DataSyncExecution"


def expected_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = []
    for name in fixture_names():
        result = run_health_lua(load_fixture(name))
        tests.append({"healthStatus": {"status": result["status"], "message": result["message"]},
                      "inputPath": f"testdata/{name}.yaml"})
    return tests


def regenerate() -> None:
    (CHECK / "testdata").mkdir(parents=True, exist_ok=True)
    (CHECK / "health.lua").write_text(HEALTH_LUA.read_text())
    for old in (CHECK / "testdata").glob("*.yaml"):
        old.unlink()
    for name in fixture_names():
        (CHECK / "testdata" / f"{name}.yaml").write_text(
            yaml.safe_dump(load_fixture(name), sort_keys=False, width=100))
    (CHECK / "health_test.yaml").write_text(
        yaml.safe_dump({"tests": expected_tests()}, sort_keys=False, width=100))


def argocd_cases() -> list[tuple[Path, dict[str, Any]]]:
    """Every (check folder, test) the way Argo CD's runner finds them."""
    cases: list[tuple[Path, dict[str, Any]]] = []
    for script in sorted(TREE.glob("*/*/health.lua")):
        spec = yaml.safe_load((script.parent / "health_test.yaml").read_text())
        cases.extend((script.parent, test) for test in spec["tests"])
    return cases


def test_layout_is_argo_cds() -> None:
    assert (CHECK / "health.lua").is_file() and (CHECK / "health_test.yaml").is_file()
    assert (CHECK / "health.lua").read_text() == HEALTH_LUA.read_text(), (
        "the contribution's health.lua differs from gitops/argocd/health.lua: run "
        "`python -m tests.chart.test_argocd_contribution`")
    referenced = {test["inputPath"] for _, test in argocd_cases()}
    present = {f"testdata/{p.name}" for p in (CHECK / "testdata").glob("*.yaml")}
    assert referenced == present  # no test without data, no data without a test


@pytest.mark.parametrize(("folder", "test"), argocd_cases(),
                         ids=lambda v: v["inputPath"] if isinstance(v, dict) else "")
def test_argocd_runner(folder: Path, test: dict[str, Any]) -> None:
    obj = yaml.safe_load((folder / test["inputPath"]).read_text())
    result = run_health_lua(obj, (folder / "health.lua").read_text())
    assert {"status": result["status"], "message": result.get("message", "")} == test["healthStatus"]


def test_tests_match_the_recorded_expectations() -> None:
    statuses = {Path(test["inputPath"]).stem: test["healthStatus"]["status"] for _, test in argocd_cases()}
    assert statuses == {name: EXPECTED[name]["argocd"] for name in fixture_names()}
    assert {"Healthy", "Progressing", "Degraded"} <= set(statuses.values())


if __name__ == "__main__":
    regenerate()
    print(f"wrote {CHECK.relative_to(REPO_ROOT)}", file=sys.stderr)
