"""Run a contender with its DataSync calls replaced by a sleep of the stand-in's RTT.

For ``benchmarks/bench_cpu_split.py`` only: the difference between a contender's CPU with its
real DataSync calls (botocore to the stand-in) and with this in-process sleep is what its calls
cost. Each contender is patched where it makes the call, nothing else changes::

    python benchmarks/peers/without_aws.py RTT raw ARGS...       # benchmarks/peers/raw_loop.py
    python benchmarks/peers/without_aws.py RTT operator ARGS...  # datasync-operator run ARGS
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class SleepingClient:
    """Stands for a boto3 DataSync client: answers after ``rtt`` seconds, as the stand-in."""

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt

    def cancel_task_execution(self, **_: Any) -> dict[str, Any]:
        time.sleep(self.rtt)
        return {}

    def describe_task_execution(self, **_: Any) -> dict[str, Any]:
        time.sleep(self.rtt)
        return {"Status": "TRANSFERRING"}


def run_raw(rtt: float, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.peers import raw_loop

    client = SleepingClient(rtt)
    setattr(raw_loop.RawLoop, "datasync", lambda self, arn: client)  # noqa: B010
    sys.argv = ["raw_loop.py", *args]
    raw_loop.main()


def run_operator(rtt: float, args: list[str]) -> None:
    from datasync_operator import cli, datasync
    from datasync_operator.execution import Description

    async def cancel(self: object, target: object) -> None:
        await asyncio.sleep(rtt)

    async def describe(self: object, target: object) -> Description:
        await asyncio.sleep(rtt)
        return datasync.describe_answer({"Status": "TRANSFERRING"})

    setattr(datasync.DataSyncGateway, "cancel", cancel)  # noqa: B010 - patched on purpose
    setattr(datasync.DataSyncGateway, "describe", describe)  # noqa: B010
    sys.argv = ["datasync-operator", "run", *args]
    cli.main()


def main() -> None:
    rtt, who, args = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
    {"raw": run_raw, "operator": run_operator}[who](rtt, args)


if __name__ == "__main__":
    main()
