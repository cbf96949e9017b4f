"""Fixtures of the e2e tier: a real etcd + kube-apiserver + kubectl (tests/support/controlplane.py).

- ``bare_control_plane`` (session): the running control plane, no CRDs installed by the fixture.
- ``control_plane`` (session): the same control plane with the canonical CRDs
  (``crds/datasyncexecution.yaml``, ``crds/datasyncaccesspolicy.yaml``) applied and
  ``Established`` (no policy object: the operator runs under the rules without policies).

The binaries come from ``KUBEBUILDER_ASSETS`` or ``tools/controlplane/build.sh``. The build
(minutes when cold) runs once after collection, outside any test's timeout, and only when a
selected test uses one of these fixtures. With ``CI=true`` a control plane that cannot be built
or started fails the tests; elsewhere they are skipped only when no Go toolchain exists.
Set ``DATASYNC_E2E_KEEP_WORKDIR=1`` to keep certificates, kubeconfigs and logs after the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ci import in_ci
from tests.support.controlplane import (
    REPO_ROOT,
    BinariesUnavailableError,
    ControlPlane,
    ControlPlaneError,
    KubectlError,
    find_binaries,
)

CRD_PATH = REPO_ROOT / "crds" / "datasyncexecution.yaml"
POLICY_CRD_PATH = REPO_ROOT / "crds" / "datasyncaccesspolicy.yaml"
E2E_DIR = Path(__file__).resolve().parent
CONTROL_PLANE_FIXTURES = frozenset({"control_plane", "bare_control_plane"})

_binaries_key = pytest.StashKey[Path | ControlPlaneError]()



@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e with ``e2e`` (so ``-m "not e2e"`` deselects them)."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the binaries before the first test, so the build has no test timeout."""
    if session.config.option.collectonly:
        return
    if not any(CONTROL_PLANE_FIXTURES & set(getattr(i, "fixturenames", ())) for i in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("e2e: finding or building etcd/kube-apiserver/kubectl ...")

    def progress(line: str) -> None:
        if reporter is not None and not line.startswith("go: downloading"):
            reporter.write_line(f"  {line}")

    started = time.monotonic()
    try:
        found: Path | ControlPlaneError = find_binaries(progress=progress)
    except ControlPlaneError as exc:
        found = exc
    session.config.stash[_binaries_key] = found
    if reporter is not None:
        what = f"binaries in {found}" if isinstance(found, Path) else "no binaries"
        reporter.write_line(f"e2e: {what} ({time.monotonic() - started:.0f}s)")


def _unavailable(exc: ControlPlaneError) -> None:
    """Fail (always in CI) or skip (only when Go is missing) for a control plane we lack."""
    if isinstance(exc, BinariesUnavailableError) and not in_ci():
        pytest.skip(f"no real control plane: {exc}")
    pytest.fail(f"cannot build or start the e2e control plane:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def bare_control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A started control plane; stopped (process groups killed, files removed) at session end."""
    prebuilt = request.config.stash.get(_binaries_key, None)
    if isinstance(prebuilt, ControlPlaneError):
        _unavailable(prebuilt)
    plane = ControlPlane(bin_dir=prebuilt if isinstance(prebuilt, Path) else None)
    try:
        plane.start()
    except ControlPlaneError as exc:
        _unavailable(exc)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def control_plane(bare_control_plane: ControlPlane) -> ControlPlane:
    """The control plane with the canonical DataSyncExecution CRD installed and Established."""
    for path in (CRD_PATH, POLICY_CRD_PATH):
        if not path.is_file():
            pytest.fail(f"the canonical CRD {path} does not exist", pytrace=False)
        try:
            bare_control_plane.apply_crd(path)
        except (ControlPlaneError, KubectlError) as exc:
            pytest.fail(f"cannot install {path.name}:\n{exc}", pytrace=False)
    return bare_control_plane
