"""Where a storm's CPU goes: the DataSync call against everything else, raw loop vs this operator.

``make bench`` shows this operator spending more CPU per cancelled object than the raw loop;
this splits the figure. The storm and idle phases of ``bench_operator.py`` run twice for each
contender, each time on a fresh control plane: as is (botocore calling the DataSync stand-in),
and with the contender's DataSync call replaced in-process by a sleep of the same RTT
(``benchmarks/peers/without_aws.py``). CPU per object without the call is everything else
(watching, deciding, the status PATCH); the difference is what the call costs, the hand-over
to and from the call's thread included::

    .venv/bin/python benchmarks/bench_cpu_split.py --storm 1000 --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from benchmarks.bench_operator import Bench, Figures, Options  # noqa: E402
from benchmarks.datasync_standin import StandIn  # noqa: E402
from tests.support.controlplane import ControlPlane, find_binaries  # noqa: E402
from tests.support.moto_server import free_port  # noqa: E402

SHIM = ROOT / "benchmarks" / "peers" / "without_aws.py"
CONTENDERS = ("raw", "operator")


def cpu_ms_per_object(options: Options, who: str, *, without_aws: bool) -> float:
    """CPU ms per object of one storm (start-up CPU taken off), on a control plane of its own."""
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
        if figures.cpu_storm_total is None or figures.startup_cpu is None:
            raise RuntimeError(f"{who}: the CPU of the storm was not measured")
        return (figures.cpu_storm_total - figures.startup_cpu) / options.storm * 1000


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
    for who in CONTENDERS:
        for without_aws in (False, True):
            runs = [
                cpu_ms_per_object(options, who, without_aws=without_aws)
                for _ in range(args.repeat)
            ]
            cells[who, without_aws] = statistics.median(runs)
            label = "without the DataSync call" if without_aws else "as is"
            shown = ", ".join(f"{r:.2f}" for r in runs)
            print(f"  {who}, {label}: {shown} CPU ms per object", file=sys.stderr, flush=True)
    print()
    print(f"CPU ms per cancelled object, storm of {args.storm}, DataSync RTT "
          f"{args.rtt * 1000:.0f} ms (median of {args.repeat})")
    print()
    print("| | raw loop | this operator | this operator / raw |")
    print("|---|---|---|---|")
    rows = {
        "in all": (cells["raw", False], cells["operator", False]),
        "everything but the DataSync call": (cells["raw", True], cells["operator", True]),
        "the DataSync call (the difference)": (
            cells["raw", False] - cells["raw", True],
            cells["operator", False] - cells["operator", True],
        ),
    }
    for name, (raw, ours) in rows.items():
        ratio = f"{ours / raw:.2f}x" if raw > 0 else "-"
        print(f"| {name} | {raw:.2f} | {ours:.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
