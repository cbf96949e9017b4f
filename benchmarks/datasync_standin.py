"""A fast AWS DataSync stand-in for the benchmarks: the JSON protocol, a fixed RTT, call counts.

Speaks the DataSync JSON 1.1 protocol as botocore sends it (``POST /`` with
``X-Amz-Target: FmrsService.<Operation>``; botocore picks ``json`` from the model's
``protocols``) for the two operations the operators use:

* ``DescribeTaskExecution``: ``{"TaskExecutionArn", "Status", "StartTime"}``; ``TRANSFERRING``
  until cancelled, ``ERROR`` (with ``Result.ErrorCode`` ``OpCancelled``) after.
* ``CancelTaskExecution``: ``{}`` the first time; afterwards HTTP 400
  ``InvalidRequestException`` "Sync task cannot be cancelled in its current status: ERROR"
  (what moto and DataSync answer).

Any well-formed execution ARN exists. Every answer is sent after a fixed round-trip time
(``--rtt``, default 20 ms) of ``asyncio.sleep``, so thousands of requests can be in flight at
once and the stand-in never becomes the bottleneck. Signatures are not checked.

``GET /_counts`` returns the calls so far: totals per operation, per HTTP status, the number
of distinct ARNs per operation and the largest number of calls one ARN got
(``?detail=1`` adds the per-ARN counts). It runs in its own process (``StandIn`` starts it)
so that its CPU is never attributed to an operator::

    .venv/bin/python benchmarks/datasync_standin.py --port 8123 --rtt 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Self

from aiohttp import web

TARGET_PREFIX = "FmrsService."
CANCEL = "CancelTaskExecution"
DESCRIBE = "DescribeTaskExecution"
OPERATIONS = (CANCEL, DESCRIBE)
CONTENT_TYPE = "application/x-amz-json-1.1"
ARN_PATTERN = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov|aws-eusc|aws-iso|aws-iso-b):datasync:[a-z\-0-9]+:[0-9]{12}:"
    r"task/task-[0-9a-f]{17}/execution/exec-[0-9a-f]{17}$"
)
RUNNING_STATUS = "TRANSFERRING"
CANCELLED_STATUS = "ERROR"


class DataSyncStandIn:
    """In-memory executions and call counts; ``app()`` is the aiohttp application."""

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.started = time.time()
        self.status: dict[str, str] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.http_status: collections.Counter[int] = collections.Counter()
        self.per_arn: dict[str, collections.Counter[str]] = {
            op: collections.Counter() for op in OPERATIONS
        }

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post("/", self.handle)
        application.router.add_get("/_counts", self.counts)
        return application

    async def handle(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.rtt)
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        self.calls[operation or "<none>"] += 1
        if not target.startswith(TARGET_PREFIX) or operation not in OPERATIONS:
            return self._error(400, "UnknownOperationException", f"unknown operation {target!r}")
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return self._error(400, "SerializationException", "the body is not JSON")
        arn = body.get("TaskExecutionArn") if isinstance(body, dict) else None
        if not isinstance(arn, str) or not ARN_PATTERN.match(arn):
            return self._error(400, "InvalidRequestException", f"invalid TaskExecutionArn {arn!r}")
        self.per_arn[operation][arn] += 1
        current = self.status.get(arn, RUNNING_STATUS)
        if operation == CANCEL:
            if current != RUNNING_STATUS:
                return self._error(
                    400,
                    "InvalidRequestException",
                    f"Sync task cannot be cancelled in its current status: {current}",
                )
            self.status[arn] = CANCELLED_STATUS
            return self._ok({})
        described: dict[str, Any] = {
            "TaskExecutionArn": arn,
            "Status": current,
            "StartTime": self.started,
        }
        if current == CANCELLED_STATUS:
            described["Result"] = {"ErrorCode": "OpCancelled", "ErrorDetail": "Cancelled by user"}
        return self._ok(described)

    def _ok(self, payload: dict[str, Any]) -> web.Response:
        self.http_status[200] += 1
        return web.Response(
            body=json.dumps(payload).encode(),
            content_type=CONTENT_TYPE,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _error(self, status: int, code: str, message: str) -> web.Response:
        self.http_status[status] += 1
        return web.Response(
            status=status,
            body=json.dumps({"__type": code, "message": message}).encode(),
            content_type=CONTENT_TYPE,
            headers={"x-amzn-RequestId": str(uuid.uuid4()), "x-amzn-ErrorType": code},
        )

    async def counts(self, request: web.Request) -> web.Response:
        payload: dict[str, Any] = {
            "calls": dict(self.calls),
            "http_status": {str(k): v for k, v in self.http_status.items()},
            "arns": {op: len(self.per_arn[op]) for op in OPERATIONS},
            "max_per_arn": {op: max(self.per_arn[op].values(), default=0) for op in OPERATIONS},
        }
        if request.query.get("detail"):
            payload["per_arn"] = {op: dict(self.per_arn[op]) for op in OPERATIONS}
        return web.json_response(payload)


def serve(port: int, rtt: float) -> None:
    """Serve until SIGTERM/SIGINT."""

    async def run() -> None:
        runner = web.AppRunner(DataSyncStandIn(rtt).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"datasync stand-in on http://127.0.0.1:{port} (rtt {rtt * 1000:.0f} ms)", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


class StandIn:
    """The stand-in as a child process (its own CPU), with its counts read over HTTP."""

    def __init__(self, port: int, rtt: float = 0.02) -> None:
        self.port = port
        self.rtt = rtt
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(tempfile.mkstemp(prefix="bench-standin-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Self:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, __file__, "--port", str(self.port), "--rtt", str(self.rtt)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.counts()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the DataSync stand-in did not start:\n{self.log_path.read_text()}"
                    ) from None
                time.sleep(0.05)

    def counts(self, detail: bool = False) -> dict[str, Any]:
        url = f"{self.url}/_counts" + ("?detail=1" if detail else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            payload: dict[str, Any] = json.loads(response.read())
        return payload

    def calls(self, operation: str) -> int:
        return int(self.counts()["calls"].get(operation, 0))

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rtt", type=float, default=0.02, help="seconds before each answer")
    args = parser.parse_args()
    serve(args.port, args.rtt)


if __name__ == "__main__":
    main()
