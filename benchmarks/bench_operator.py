"""Benchmark of the whole operator: N resources cancelled on a real kube-apiserver.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_operator.py [N]``). Starts the real
control plane (tools/controlplane), moto's DataSync server behind the fault proxy and the real
operator process, applies N ``Cancelled`` resources at once, and prints how long until all are
Cancelled, the AWS calls they cost and the operator's memory. It measures; it asserts nothing.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from tests.support.controlplane import ControlPlane, find_binaries  # noqa: E402
from tests.support.fault_proxy import FaultProxy  # noqa: E402
from tests.support.moto_server import MotoServer, free_port  # noqa: E402
from tests.support.operator_process import OperatorProcess, aws_env  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

NAMESPACE = "bench"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cancelled(plane: ControlPlane) -> int:
    listed = json.loads(plane.kubectl("get", "dse", "-n", NAMESPACE, "-o", "json").stdout)
    return sum(
        1
        for obj in listed["items"]
        for c in obj.get("status", {}).get("conditions", [])
        if c["type"] == "Cancelled" and c["status"] == "True"
    )


def main(count: int) -> None:
    plane = ControlPlane(bin_dir=find_binaries())
    plane.start()
    try:
        plane.apply_crd(ROOT / "crds" / "datasyncexecution.yaml")
        plane.kubectl("create", "namespace", NAMESPACE)
        with MotoServer() as moto, FaultProxy(moto.url) as proxy:
            arns = [moto.create_execution() for _ in range(count)]
            items = [
                {
                    "apiVersion": "datasync.operator.io/v1alpha1",
                    "kind": "DataSyncExecution",
                    "metadata": {"name": f"transfer-{i}", "namespace": NAMESPACE},
                    "spec": {"executionArn": arn, "desiredState": "Cancelled"},
                }
                for i, arn in enumerate(arns)
            ]
            operator = OperatorProcess(
                [
                    "--namespace",
                    NAMESPACE,
                    "--metrics-port",
                    str(free_port()),
                    "--aws-rate-limit",
                    "100",
                    "--aws-rate-burst",
                    "20",
                    "--log-level",
                    "WARNING",
                ],
                env={"KUBECONFIG": str(plane.kubeconfig), **aws_env(proxy.url)},
                log_path=Path(tempfile.mkstemp(prefix="bench-operator-", suffix=".log")[1]),
            ).start()
            try:
                pid = operator.pid
                wait_for(lambda: rss_kib(pid) > 40_000, 30)  # imported and running
                time.sleep(2.0)  # settle: the idle figure is taken with the watch established
                idle = rss_kib(pid)
                started = time.perf_counter()
                plane.kubectl(
                    "apply",
                    "-f",
                    "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                )
                wait_for(
                    lambda: cancelled(plane) == count,
                    900,
                    interval=0.5,
                    message=lambda: operator.log()[-2000:],
                )
                elapsed = time.perf_counter() - started
                busy = rss_kib(pid)
            finally:
                operator.stop()
            calls = proxy.calls("CancelTaskExecution")
    finally:
        plane.stop()
    print(
        f"operator: {count} resources applied at once, all Cancelled in {elapsed:.1f}s "
        f"({count / elapsed:.1f}/s with --aws-rate-limit 100)"
    )
    print(f"operator: {calls} CancelTaskExecution calls ({calls / count:.2f} per resource)")
    print(
        f"operator: RSS {idle / 1024:.1f} MiB idle, {busy / 1024:.1f} MiB after {count} resources "
        f"({max(0, busy - idle) / count:.1f} KiB per resource)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
