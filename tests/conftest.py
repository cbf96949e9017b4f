"""Fixtures shared by the tiers that talk to DataSync: moto's server and the fault proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.ci import in_ci
from tests.support.fault_proxy import FaultProxy
from tests.support.moto_server import MotoServer


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """moto's DataSync (and STS) server: a real HTTP endpoint in its own process."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def _proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto.url) as proxy:
        yield proxy


@pytest.fixture
def proxy(_proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The session's fault proxy, with no queued faults and zeroed counters for each test."""
    _proxy.clear_faults()
    _proxy.reset_counts()
    yield _proxy
    _proxy.release(deliver=False)
    _proxy.clear_faults()


# --- in CI, a skipped test is a failure ------------------------------------------------------


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if in_ci() and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} test(s) skipped; every tier must run in CI", red=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if in_ci() and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
