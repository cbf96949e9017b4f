"""HA failover, measured: two replicas with the default Lease settings; the leader is killed.

Run: ``.venv/bin/python benchmarks/bench_failover.py [--rounds N]`` (part of ``make bench``).
On the real control plane with the DataSync stand-in, two replicas elect a leader; the leader
is SIGKILLed (a crash: no release) and, separately, stopped with SIGTERM (a graceful stop
releases the Lease). For each it prints how long until the standby became leader and until a
``Cancelled`` object created right after the kill was cancelled. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from benchmarks.datasync_standin import StandIn  # noqa: E402
from tests.support.controlplane import ControlPlane, find_binaries  # noqa: E402
from tests.support.moto_server import free_port  # noqa: E402
from tests.support.operator_process import OperatorProcess, aws_env  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

NAMESPACE = "failover"
EXEC = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0/execution/exec-{:017x}"


def leading(process: OperatorProcess) -> bool:
    return "became leader" in process.log()


def cancelled(plane: ControlPlane, name: str) -> bool:
    result = plane.kubectl("get", "dse", name, "-n", NAMESPACE, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    found = json.loads(result.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Cancelled" and c["status"] == "True" for c in found)


def any_leader(processes: list[OperatorProcess]) -> Callable[[], bool]:
    return lambda: any(leading(p) for p in processes)


def done(plane: ControlPlane, name: str) -> Callable[[], bool]:
    return lambda: cancelled(plane, name)


def create(plane: ControlPlane, name: str, n: int) -> None:
    body = {"apiVersion": "datasync.operator.io/v1alpha1", "kind": "DataSyncExecution",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"executionArn": EXEC.format(n), "desiredState": "Cancelled"}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    plane = ControlPlane(bin_dir=find_binaries())
    plane.start()
    results: dict[str, list[tuple[float, float]]] = {"SIGKILL": [], "SIGTERM": []}
    try:
        plane.apply_crd(ROOT / "crds" / "datasyncexecution.yaml")
        plane.kubectl("create", "namespace", NAMESPACE)
        with StandIn(free_port()) as standin:
            started = 0

            def replica() -> OperatorProcess:
                nonlocal started
                started += 1
                return OperatorProcess(
                    ["--namespace", NAMESPACE, "--leader-elect", "--lease-namespace", NAMESPACE,
                     "--metrics-port", str(free_port()), "--log-level", "INFO"],
                    env={"KUBECONFIG": str(plane.kubeconfig), **aws_env(standin.url),
                         "POD_NAME": f"replica-{started}"},
                    log_path=logs / f"replica-{started}.log",
                ).start()

            replicas = [replica(), replica()]
            for n, how in enumerate([k for _ in range(args.rounds) for k in results], 1):
                wait_for(any_leader(list(replicas)), 60, interval=0.1)
                leader = next(p for p in replicas if leading(p))
                standby = next(p for p in replicas if p is not leader)
                time.sleep(3)  # the standby has seen the Lease renewed a few times
                killed = time.monotonic()
                if how == "SIGKILL":
                    leader.kill()
                else:
                    leader.stop()
                name = f"after-{n}"
                create(plane, name, n)
                wait_for(any_leader([standby]), 120, interval=0.05)
                took_over = time.monotonic() - killed
                wait_for(done(plane, name), 120, interval=0.05)
                acted = time.monotonic() - killed
                results[how].append((took_over, acted))
                print(f"{how}: standby leader after {took_over:.1f}s, cancelled after {acted:.1f}s",
                      flush=True)
                replicas = [standby, replica()]
            for process in replicas:
                process.stop()
    finally:
        plane.stop()
    print("\n| leader stopped by | standby leads after (median) | new cancel done after (median) |")
    print("|---|---|---|")
    for how, rows in results.items():
        print(f"| {how} | {statistics.median(r[0] for r in rows):.1f} s "
              f"| {statistics.median(r[1] for r in rows):.1f} s |")
    print("defaults: --lease-duration 15, --lease-renew-deadline 10, --lease-retry-period 2")


if __name__ == "__main__":
    main()
