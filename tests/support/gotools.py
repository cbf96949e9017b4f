"""Linters built from Go modules into the tool cache (tools/<name>/build.sh), for the chart tier.

``go_tool("kube-score")`` runs ``tools/kube-score/build.sh`` (cached after the first build) and
returns the binary. Without a Go toolchain the script exits 127: the caller skips, except in CI
(``CI=true``), where a missing tool fails the run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ci import in_ci

REPO_ROOT = Path(__file__).resolve().parents[2]


def go_tool(name: str, *, timeout: float = 900.0) -> Path:
    script = REPO_ROOT / "tools" / name / "build.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                            timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    if result.returncode == 127 and not in_ci():
        pytest.skip(f"no Go toolchain to build {name}: {result.stderr.strip()}")
    if result.returncode != 0:
        pytest.fail(f"{script} failed ({result.returncode}):\n{result.stderr}", pytrace=False)
    binary = Path(result.stdout.strip().splitlines()[-1]) / name
    if not binary.is_file():
        pytest.fail(f"{script} printed no folder holding {name}", pytrace=False)
    return binary
