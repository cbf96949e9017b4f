"""One-command local demo: a real control plane, moto's DataSync, the operator, a cancel.

Run with ``make demo`` (or ``.venv/bin/python tools/demo.py``). It builds or reuses etcd,
kube-apiserver and kubectl (tools/controlplane/build.sh), starts them, starts moto's DataSync
server and creates a real task and execution there, runs the operator, applies a
DataSyncExecution, flips it to Cancelled, shows ``kubectl get dse`` and the conditions before
and after, and shuts everything down, also on Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from tests.support.controlplane import ControlPlane, find_binaries  # noqa: E402
from tests.support.moto_server import MotoServer, free_port  # noqa: E402
from tests.support.objects import condition  # noqa: E402
from tests.support.operator_process import OperatorProcess, aws_env  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

NAMESPACE = "demo"
NAME = "nightly-backup"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(plane: ControlPlane) -> None:
    print(plane.kubectl("get", "dse", "-n", NAMESPACE).stdout, end="")
    obj = json.loads(plane.kubectl("get", "dse", NAME, "-n", NAMESPACE, "-o", "json").stdout)
    for found in obj.get("status", {}).get("conditions", []):
        print(f"  {found['type']:<12} {found['status']:<6} {found['reason']:<18} "
              f"{found['message']}")


def ready_reason(plane: ControlPlane, reason: str) -> bool:
    obj = json.loads(plane.kubectl("get", "dse", NAME, "-n", NAMESPACE, "-o", "json").stdout)
    return condition(obj, "Ready").get("reason") == reason


def execution_status(plane: ControlPlane) -> str | None:
    obj = json.loads(plane.kubectl("get", "dse", NAME, "-n", NAMESPACE, "-o", "json").stdout)
    status: str | None = obj.get("status", {}).get("executionStatus")
    return status


def manifest(arn: str, desired: str) -> str:
    body: dict[str, Any] = {
        "apiVersion": "datasync.operator.io/v1alpha1",
        "kind": "DataSyncExecution",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"executionArn": arn, "desiredState": desired},
    }
    return json.dumps(body)


def main() -> int:
    started = time.monotonic()
    say("Building or reusing etcd, kube-apiserver and kubectl (first run: several minutes)")
    binaries = find_binaries(progress=lambda line: print(f"  {line}", flush=True))
    plane = ControlPlane(bin_dir=binaries)
    moto = MotoServer()
    operator: OperatorProcess | None = None
    try:
        say("Starting the control plane")
        plane.start()
        print(plane.kubectl("version").stdout, end="")
        plane.apply_crd(ROOT / "crds" / "datasyncexecution.yaml")
        plane.kubectl("create", "namespace", NAMESPACE)

        say("Starting moto's DataSync server and a real task execution in it")
        moto.start()
        arn = moto.create_execution()
        print(f"  execution: {arn}")

        say("Starting the operator (datasync-operator run --namespace demo)")
        operator = OperatorProcess(
            ["--namespace", NAMESPACE, "--metrics-port", str(free_port()), "--poll-interval", "2"],
            env={"KUBECONFIG": str(plane.kubeconfig), **aws_env(moto.url)},
        ).start()

        say("kubectl apply: desiredState Running")
        plane.kubectl("apply", "-f", "-", input=manifest(arn, "Running"))
        wait_for(lambda: ready_reason(plane, "ExecutionActive"), 60,
                 message=lambda: operator.log() if operator else "")
        show(plane)

        say("kubectl apply: desiredState Cancelled")
        plane.kubectl("apply", "-f", "-", input=manifest(arn, "Cancelled"))
        wait_for(lambda: ready_reason(plane, "CancelAccepted"), 60,
                 message=lambda: operator.log() if operator else "")
        show(plane)
        say("The operator keeps polling DescribeTaskExecution until the execution is final")
        wait_for(lambda: execution_status(plane) == "ERROR", 60,
                 message=lambda: operator.log() if operator else "")
        show(plane)
        print(plane.kubectl("get", "events", "-n", NAMESPACE,
                            "--field-selector", f"involvedObject.name={NAME}").stdout, end="")
        final = moto.client().describe_task_execution(TaskExecutionArn=arn)["Status"]
        print(f"  DataSync now says: {final} (a cancelled execution ends in ERROR)")
        say(f"Done in {time.monotonic() - started:.0f}s; shutting down")
        return 0
    except KeyboardInterrupt:
        say("Interrupted; shutting down")
        return 130
    finally:
        if operator is not None:
            operator.stop()
        moto.stop()
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
