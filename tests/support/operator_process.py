"""The real operator as a subprocess (``python -m datasync_operator run``), for tests.

Runs exactly what users run, with the environment a test gives it (kubeconfig, DataSync
endpoint, fake credentials), its output captured to a file that tests can read (and check for
secrets). ``kill()`` is a SIGKILL, for crash/restart scenarios; ``stop()`` is a graceful SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from tests.support.service import Service

#: Fake credentials, recognisable so tests can assert they never reach the logs.
FAKE_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

#: Fast backoff for tests; the defaults (2 s .. 300 s) are for production.
FAST_RETRIES = ("--retry-base-delay", "0.05", "--retry-max-delay", "0.2")


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_DATASYNC": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


class OperatorProcess(Service):
    """One ``datasync-operator run`` process; start it, read its log, stop or kill it."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path | None = None,
    ) -> None:
        self.args = [sys.executable, "-m", "datasync_operator", "run", *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.env.pop("AWS_PROFILE", None)
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="operator-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None
        #: Where the operator serves Prometheus metrics, when the test chose the port.
        self.metrics_url: str | None = None

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the operator has not been started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything (a crash)."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (kopf stops gracefully); SIGKILL if it does not."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        return process.returncode

