"""Where a storm's CPU goes: the DataSync call against everything else, raw loop vs this operator.

``make bench`` shows this operator spending more CPU per cancelled object than the raw loop;
this splits the figure. The storm and idle phases of ``bench_operator.py`` run twice for each
contender, each time on a fresh control plane: as is (botocore calling the DataSync stand-in),
and with the contender's DataSync call replaced in-process by a sleep of the same RTT
(``benchmarks/peers/without_aws.py``). CPU per object without the call is everything else
(watching, deciding, the status PATCH); the difference is what the call costs, the hand-over
to and from the call's thread included.

On a machine the control plane shares, the API server's CPU counts as much as the contender's,
so each run also prints kube-apiserver + etcd CPU per object. Last, the status each contender
wrote (read back from its first storm object) is written again to fresh objects, one PATCH each
from 16 threads with nothing else running, to show what the API server spends on that status
alone::

    .venv/bin/python benchmarks/bench_cpu_split.py --storm 1000 --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from benchmarks.bench_operator import Bench, Figures, Kube, Options, cpu_seconds  # noqa: E402
from benchmarks.datasync_standin import StandIn  # noqa: E402
from tests.support.controlplane import ControlPlane, find_binaries  # noqa: E402
from tests.support.moto_server import free_port  # noqa: E402

SHIM = ROOT / "benchmarks" / "peers" / "without_aws.py"
CONTENDERS = ("raw", "operator")
STATUS_ARN = (
    "arn:aws:datasync:us-east-1:111122223333:task/task-00000000000000009/execution/exec-{:017x}"
)



@dataclass(frozen=True)
class StormCpu:
    """CPU ms per object of one storm: the contender's (start-up taken off), the control plane's."""

    contender: float
    control_plane: float
    #: The status the contender wrote on its first object (what a cancel leaves behind).
    status: dict[str, Any]


def storm_cpu(options: Options, who: str, *, without_aws: bool) -> StormCpu:
    """One storm on a control plane of its own."""
    with contextlib.ExitStack() as stack:
        plane = ControlPlane(bin_dir=find_binaries())
        plane.start()
        stack.callback(plane.stop)
        plane.apply_crd(ROOT / "crds" / "datasyncexecution.yaml")
        standin = stack.enter_context(StandIn(free_port(), options.rtt))
        bench = Bench(options, plane, standin)
        stack.callback(bench.stop_trackers)
        if without_aws:
            bench.wrapper = lambda name, args: [
                sys.executable, str(SHIM), str(options.rtt), name, *args
            ]
        figures = Figures()
        bench.storm(who, figures)
        bench.idle_and_memory(who, figures)
        if (
            figures.cpu_storm_total is None
            or figures.startup_cpu is None
            or figures.control_plane_cpu is None
        ):
            raise RuntimeError(f"{who}: the CPU of the storm was not measured")
        first = bench.kube.call("GET", bench.kube.collection(f"bench-{who}-storm") + "/storm-0")
        return StormCpu(
            contender=(figures.cpu_storm_total - figures.startup_cpu) / options.storm * 1000,
            control_plane=figures.control_plane_cpu,
            status=first.get("status") or {},
        )


def status_write_cpu(statuses: dict[str, dict[str, Any]], count: int) -> dict[str, float]:
    """kube-apiserver + etcd CPU ms per status PATCH, for each contender's status.

    On one fresh control plane: ``count`` new objects per contender, then one merge PATCH of
    that status each (16 threads), and nothing else running.
    """
    with contextlib.ExitStack() as stack:
        plane = ControlPlane(bin_dir=find_binaries())
        plane.start()
        stack.callback(plane.stop)
        plane.apply_crd(ROOT / "crds" / "datasyncexecution.yaml")
        kube = Kube(plane)
        results: dict[str, float] = {}
        for who, status in statuses.items():
            namespace = f"status-{who}"
            kube.create_namespace(namespace)
            arn = STATUS_ARN
            kube.create_many(
                namespace, [(f"o-{i}", arn.format(i), "Cancelled") for i in range(count)]
            )
            collection = kube.collection(namespace)

            def write(i: int, collection: str = collection, status: Any = status) -> None:
                kube.call(
                    "PATCH",
                    f"{collection}/o-{i}/status",
                    {"status": status},
                    content_type="application/merge-patch+json",
                )

            time.sleep(1.0)  # let the creations settle (the watch cache, etcd compaction)
            before = sum(cpu_seconds(pid) for pid in plane.process_ids.values())
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(write, range(count)))
            after = sum(cpu_seconds(pid) for pid in plane.process_ids.values())
            results[who] = (after - before) / count * 1000
        return results


def table(header: str, rows: dict[str, tuple[float, float]]) -> None:
    print(header)
    print()
    print("| | raw loop | this operator | this operator / raw |")
    print("|---|---|---|---|")
    for name, (raw, ours) in rows.items():
        ratio = f"{ours / raw:.2f}x" if raw > 0 else "-"
        print(f"| {name} | {raw:.2f} | {ours:.2f} | {ratio} |")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm", type=int, default=1000, metavar="N")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median shown)")
    parser.add_argument("--rtt", type=float, default=0.02)
    args = parser.parse_args(argv)
    options = Options(
        storm=args.storm, running=20, samples=1, only=list(CONTENDERS), rtt=args.rtt,
        storm_rate=1000.0, storm_burst=100.0, quiet_poll=600.0, loaded_poll=None,
        sample_timeout=120.0, phase_timeout=900.0, strict=False,
    )
    cells: dict[tuple[str, bool], float] = {}
    plane_cells: dict[tuple[str, bool], float] = {}
    statuses: dict[str, dict[str, Any]] = {}
    for who in CONTENDERS:
        for without_aws in (False, True):
            runs = [
                storm_cpu(options, who, without_aws=without_aws) for _ in range(args.repeat)
            ]
            cells[who, without_aws] = statistics.median(r.contender for r in runs)
            plane_cells[who, without_aws] = statistics.median(r.control_plane for r in runs)
            if not without_aws:
                statuses[who] = runs[0].status
            label = "without the DataSync call" if without_aws else "as is"
            shown = ", ".join(f"{r.contender:.2f}" for r in runs)
            plane = ", ".join(f"{r.control_plane:.2f}" for r in runs)
            print(
                f"  {who}, {label}: {shown} CPU ms per object; kube-apiserver + etcd {plane}",
                file=sys.stderr,
                flush=True,
            )
    writes = status_write_cpu(statuses, args.storm)
    print()
    table(
        f"CPU ms per cancelled object, storm of {args.storm}, DataSync RTT "
        f"{args.rtt * 1000:.0f} ms (median of {args.repeat})",
        {
            "the contender, in all": (cells["raw", False], cells["operator", False]),
            "the contender, everything but the DataSync call": (
                cells["raw", True],
                cells["operator", True],
            ),
            "the contender, the DataSync call (the difference)": (
                cells["raw", False] - cells["raw", True],
                cells["operator", False] - cells["operator", True],
            ),
            "kube-apiserver + etcd (contender start -> last cancel)": (
                plane_cells["raw", False],
                plane_cells["operator", False],
            ),
        },
    )
    conditions = {
        who: len(status.get("conditions") or []) for who, status in statuses.items()
    }
    table(
        f"kube-apiserver + etcd CPU ms per status PATCH, {args.storm} PATCHes of the status "
        f"each contender writes ({conditions['raw']} and {conditions['operator']} conditions)",
        {"one status PATCH": (writes["raw"], writes["operator"])},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
