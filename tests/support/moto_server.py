"""moto's DataSync emulation as a real HTTP server in a subprocess, for the integration tier.

``MotoServer`` runs ``python -m moto.server -H 127.0.0.1 -p <free port>`` with the test
interpreter, polls until it answers, and stops it (terminate, then kill) on ``stop()`` or on
leaving the ``with`` block. Clients reach it over real HTTP through ``.url`` (or through a
``FaultProxy`` in front of it, see ``fault_proxy.py``); nothing in boto3 is patched.

The helper methods talk to moto directly (not through any proxy), so they never show up in a
proxy's call counts. They use fake credentials (moto does not check signatures).

How moto 5.2.5 models a task execution (checked against its source and server):

- ``start_task_execution`` creates it in ``INITIALIZING`` (moto's own word; real DataSync says
  ``QUEUED``/``LAUNCHING``). A task runs one execution at a time, so every
  ``create_execution()`` makes its own two locations and task.
- **Every** ``describe_task_execution`` returns the current status and *then* advances it one
  step: INITIALIZING -> PREPARING -> TRANSFERRING -> VERIFYING -> SUCCESS (then stays). So
  describing is not read-only here: a test (or operator) that describes an execution moves it
  forward, and ``describe_status()`` is itself such a describe.
- ``cancel_task_execution`` on a running execution answers 200 and the execution then
  describes as ``ERROR`` (there is no CANCELLED status). Cancelling an execution in SUCCESS or
  ERROR answers ``InvalidRequestException`` "Sync task cannot be cancelled in its current
  status: <STATUS>"; an unknown ARN on cancel answers ``InvalidRequestException`` "Sync task
  <arn> is not found.", and on describe an ``InvalidRequestException`` "The request is not
  valid.".
- moto answers no ``Result`` (no ErrorCode/ErrorDetail) and does not implement
  ``ListTaskExecutions``.
- ARNs look like ``arn:aws:datasync:us-east-1:111222333444:task/task-00000000000000003/
  execution/exec-00000000000000004``: decimal counters zero-filled to 17 digits, which the
  DataSync ARN pattern (``EXECUTION_ARN_PATTERN``) accepts. The counter restarts at
  ``reset()`` and is per region, so the same ARN can come back after a reset.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from typing import IO, Any, Self

import boto3
from botocore.config import Config

from tests.support.service import Service
from tests.support.waiting import wait_for

__all__ = [
    "EXECUTION_ARN_PATTERN",
    "FAKE_CREDENTIALS",
    "MotoServer",
    "MotoServerError",
    "datasync_client",
    "free_port",
]

EXECUTION_ARN_PATTERN = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov|aws-eusc|aws-iso|aws-iso-b):datasync:[a-z\-0-9]+:[0-9]{12}"
    r":task/task-[0-9a-f]{17}/execution/exec-[0-9a-f]{17}$"
)
"""The ``TaskExecutionArn`` pattern of the DataSync API model."""

FAKE_CREDENTIALS: dict[str, str] = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
"""Credentials for talking to moto: it accepts any."""

TERMINAL_STATUSES = frozenset({"SUCCESS", "ERROR"})


class MotoServerError(RuntimeError):
    """The moto server could not be started or did not answer in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; bind it soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def datasync_client(
    endpoint_url: str,
    region: str = "us-east-1",
    config: Config | None = None,
) -> Any:
    """A boto3 DataSync client with fake credentials for ``endpoint_url`` (moto or a proxy).

    Returns ``Any`` because boto3's clients are generated at run time (with
    ``mypy-boto3-datasync`` installed the type would be ``DataSyncClient``).
    """
    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
        aws_session_token=FAKE_CREDENTIALS["aws_session_token"],
        region_name=region,
    )
    return session.client("datasync", endpoint_url=endpoint_url, config=config)


#: ``python -m moto.server -H HOST -p PORT``, optionally with executions that do not advance.
_SERVE = """
import runpy, sys
host, port, advance = sys.argv[1:4]
if advance == "0":
    from moto.datasync.models import TaskExecution
    TaskExecution.iterate_status = lambda self: None
sys.argv = ["moto.server", "-H", host, "-p", port]
runpy.run_module("moto.server", run_name="__main__")
"""


class MotoServer(Service):
    """A ``moto.server`` subprocess on a free loopback port; use it as a context manager.

    ``start()`` waits until the server answers HTTP (at most ``startup_timeout`` seconds) and
    raises ``MotoServerError`` with the server's log if it exits or never answers. The log goes
    to a temporary file (never a pipe, which could fill up and block moto).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        *,
        executions_advance: bool = True,
    ) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        #: moto moves an execution one step per DescribeTaskExecution (real DataSync does not);
        #: False keeps every execution where it is until it is cancelled.
        self.executions_advance = executions_advance
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._clients: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self.port is None or self._process is None:
            raise MotoServerError("the moto server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self._process is not None:
            raise MotoServerError("the moto server is already started")
        self.port = free_port(self.host)
        self._log = tempfile.TemporaryFile(prefix="moto-server-", suffix=".log")  # noqa: SIM115
        env = dict(os.environ)
        env.pop("AWS_PROFILE", None)  # moto does not need one, and a bad one breaks boto3
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, self.host, str(self.port),
             "1" if self.executions_advance else "0"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: nothing of it outlives stop()
        )
        try:
            wait_for(
                self._answers,
                timeout=self.startup_timeout,
                interval=0.05,
                message=lambda: f"moto server did not answer on {self.url}:\n{self.log()}",
            )
        except (AssertionError, MotoServerError) as exc:
            self.stop()
            raise MotoServerError(str(exc)) from exc
        return self

    def _answers(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise MotoServerError(
                f"moto server exited with code {self._process.returncode}:\n{self.log()}"
            )
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1) as rsp:
                return bool(rsp.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log(self) -> str:
        """What the server printed so far (for failure messages)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.seek(0, os.SEEK_END)
        return text

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM to its process group), kill it if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._clients.clear()


    def reset(self) -> None:
        """Forget every location, task and execution in every region (``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as rsp:
            if rsp.status != 200:
                raise MotoServerError(f"moto reset answered HTTP {rsp.status}")

    # -- DataSync helpers (straight to moto, never through a proxy) ------------------------

    def client(self, region: str = "us-east-1") -> Any:
        """A cached boto3 DataSync client for this server (default retries)."""
        if region not in self._clients:
            self._clients[region] = datasync_client(self.url, region)
        return self._clients[region]

    def create_execution(self, region: str = "us-east-1") -> str:
        """Start a new task execution (new S3 + SMB locations and a task); return its ARN.

        The execution starts in ``INITIALIZING`` and has not been described yet.
        """
        client = self.client(region)
        suffix = uuid.uuid4().hex[:8]
        source = client.create_location_s3(
            S3BucketArn=f"arn:aws:s3:::source-{suffix}",
            Subdirectory="/data",
            S3Config={"BucketAccessRoleArn": "arn:aws:iam::111222333444:role/datasync"},
        )["LocationArn"]
        destination = client.create_location_smb(
            ServerHostname="files.example.com",
            Subdirectory="/share",
            User="datasync",
            Password="not-a-secret",
            AgentArns=["arn:aws:datasync:us-east-1:111222333444:agent/agent-0123456789abcdef0"],
        )["LocationArn"]
        task = client.create_task(
            SourceLocationArn=source,
            DestinationLocationArn=destination,
            Name=f"task-{suffix}",
        )["TaskArn"]
        arn: str = client.start_task_execution(TaskArn=task)["TaskExecutionArn"]
        return arn

    def describe_status(self, arn: str) -> str:
        """The execution's status; NB: in moto this also advances a running one by one step."""
        response = self.client(_region_of(arn)).describe_task_execution(TaskExecutionArn=arn)
        status: str = response["Status"]
        return status

    def finish_execution(self, arn: str, max_steps: int = 10) -> str:
        """Describe until the execution is terminal; return the terminal status.

        A running execution ends in ``SUCCESS``; a cancelled one is already ``ERROR`` (returned
        as is, so the caller can tell).
        """
        for _ in range(max_steps):
            status = self.describe_status(arn)
            if status in TERMINAL_STATUSES:
                return status
        raise MotoServerError(f"{arn} did not finish in {max_steps} describes")

    def cancel_execution(self, arn: str) -> None:
        """Cancel the execution directly in moto ("someone else cancelled it")."""
        self.client(_region_of(arn)).cancel_task_execution(TaskExecutionArn=arn)


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 4 or not parts[3]:
        raise ValueError(f"not a regional ARN: {arn!r}")
    return parts[3]
