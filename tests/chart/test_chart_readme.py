"""The chart README: its values table is generated from values.yaml's comments and fresh, every
value is documented, and `helm show readme` prints it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import chart_readme

from tests.support.helm import CHART_DIR, Helm


def test_readme_is_fresh() -> None:
    current = (CHART_DIR / "README.md").read_text()
    assert chart_readme.render(current, CHART_DIR / "values.yaml") == current, (
        "charts/datasync-operator/README.md is stale: run `make chart-readme`"
    )
    assert chart_readme.main(["--check"]) == 0


def test_every_value_is_documented_and_in_the_table() -> None:
    rows = chart_readme.rows(CHART_DIR / "values.yaml")  # raises on an undocumented value
    readme = (CHART_DIR / "README.md").read_text()
    for row in rows:
        assert row.description, row.key
        assert f"| `{row.key}` |" in readme


def test_an_undocumented_value_fails_and_a_change_makes_it_stale(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.yaml").write_text("# -- documented\na: 1\nb:\n  # -- nested\n  c: x\n")
    (chart / "README.md").write_text(f"# t\n{chart_readme.BEGIN}\n{chart_readme.END}\n")
    assert chart_readme.main(["--chart", str(chart), "--check"]) == 1  # stale
    assert chart_readme.main(["--chart", str(chart)]) == 0  # rewritten
    assert chart_readme.main(["--chart", str(chart), "--check"]) == 0
    assert "| `b.c` | string | `\"x\"` | nested |" in (chart / "README.md").read_text()
    (chart / "values.yaml").write_text("# -- documented\na: 1\nundocumented: true\n")
    with pytest.raises(chart_readme.UndocumentedValueError, match="undocumented"):
        chart_readme.rows(chart / "values.yaml")


def test_helm_show_readme_prints_it(helm: Helm) -> None:
    shown = helm.run("show", "readme", str(CHART_DIR)).stdout
    assert shown.strip() == (CHART_DIR / "README.md").read_text().strip()
    assert "| `crds.enabled` |" in shown
