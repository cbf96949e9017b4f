"""The chaos suite: the real operator under kills, API server restarts and DataSync faults.

``make chaos`` (full: 1000 resources) or ``python -m tests.chaos.harness --resources 200``.
One run, from a printed seed: a real control plane, moto's DataSync behind the fault proxy,
the operator with leader election. Resources arrive in waves (about 70% ``Cancelled``, 20%
``Running``, 10% ``Running`` with ``deletionPolicy: Cancel`` that are deleted later) while,
at random times from the seed, the operator is SIGKILLed and restarted, kube-apiserver is
stopped and started again (same etcd), a second replica joins and the active one is killed, and
a share of DataSync calls fail (500, 503, throttling, connection resets, and read timeouts
whose request still reaches DataSync). Then the faults stop, the run waits for quiet and checks
the invariants, printing a table; the exit status is non-zero if any fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.controlplane import REPO_ROOT, ControlPlane, find_binaries
from tests.support.fault_proxy import Fault, FaultKind, FaultProxy
from tests.support.moto_server import MotoServer, free_port
from tests.support.operator_process import OperatorProcess, aws_env

CANCEL = "CancelTaskExecution"
NAMESPACE = "chaos"
READ_TIMEOUT = 1.5
OPERATOR_FLAGS = (
    "--namespace", NAMESPACE, "--leader-elect", "--lease-namespace", NAMESPACE,
    "--lease-duration", "4", "--lease-renew-deadline", "3", "--lease-retry-period", "0.5",
    "--retry-base-delay", "0.5", "--retry-max-delay", "5", "--poll-interval", "300",
    "--stalled-recheck-interval", "30", "--aws-read-timeout", str(READ_TIMEOUT),
    "--aws-rate-limit", "100", "--aws-rate-burst", "50", "--resync-interval", "30",
)


@dataclass(frozen=True)
class Plan:
    resources: int = 1000
    kills: int = 10
    apiserver_restarts: int = 3
    fault_rate: float = 0.2
    duration: float = 240.0  # seconds of faults
    seed: int = 0
    quiet_timeout: float = 600.0


@dataclass
class Item:
    name: str
    arn: str
    kind: str  # "cancel" | "run" | "delete"
    deleted: bool = False
    gone_at: float | None = None


@dataclass
class Report:
    rows: list[tuple[str, str, bool]] = field(default_factory=list)

    def check(self, what: str, figure: str, ok: bool) -> None:
        self.rows.append((what, figure, ok))

    @property
    def passed(self) -> bool:
        return all(ok for _, _, ok in self.rows)

    def table(self) -> str:
        lines = ["| invariant / figure | measured | |", "|---|---|---|"]
        lines += [f"| {what} | {figure} | {'PASS' if ok else 'FAIL'} |" for what, figure, ok in self.rows]
        return "\n".join(lines)


def random_faults() -> list[Fault]:
    return [
        Fault(FaultKind.ERROR, status=500, code="InternalException"),
        Fault(FaultKind.ERROR, status=503, code="ServiceUnavailable", message="try later"),
        Fault(FaultKind.ERROR, status=400, code="ThrottlingException", message="Rate exceeded"),
        Fault(FaultKind.RESET),
        # a read timeout whose request still reaches DataSync (after the client gave up)
        Fault(FaultKind.DELAY, seconds=READ_TIMEOUT + 1.0),
        Fault(FaultKind.FORWARD_THEN_RESET),
    ]


class Replicas:
    """The operator's replicas: started, SIGKILLed, counted; peak RSS of each remembered."""

    def __init__(self, plane: ControlPlane, proxy: FaultProxy, logs: Path) -> None:
        self.plane, self.proxy, self.logs = plane, proxy, logs
        self.running: list[OperatorProcess] = []
        self.started = 0
        self.peak_rss_kib = 0

    def start(self) -> OperatorProcess:
        self.started += 1
        process = OperatorProcess(
            [*OPERATOR_FLAGS, "--metrics-port", str(free_port())],
            env={"KUBECONFIG": str(self.plane.kubeconfig), **aws_env(self.proxy.url),
                 "POD_NAME": f"replica-{self.started}"},
            log_path=self.logs / f"operator-{self.started}.log",
        ).start()
        self.running.append(process)
        return process

    def _note_peak(self, process: OperatorProcess) -> None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))

    def leader(self) -> OperatorProcess | None:
        for process in self.running:
            if "became leader" in process.log().rsplit("lost lease", 1)[-1]:
                return process
        return None

    def kill(self, process: OperatorProcess) -> None:
        self._note_peak(process)
        process.kill()
        self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self._note_peak(process)
            process.stop()
            self.running.remove(process)

    def kill_all(self) -> None:
        """SIGKILL whatever still runs (a run that failed or was interrupted midway)."""
        for process in list(self.running):
            process.kill()
            self.running.remove(process)

    def sample(self) -> None:
        for process in self.running:
            self._note_peak(process)


def kube(plane: ControlPlane, *args: str, input: str | None = None, timeout: float = 120.0) -> str:
    """kubectl, retried while the API server is away."""
    deadline = time.monotonic() + timeout
    while True:
        result = plane.kubectl(*args, input=input, check=False)
        if result.returncode == 0:
            return str(result.stdout)
        if time.monotonic() > deadline:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        time.sleep(0.5)


def objects(plane: ControlPlane) -> dict[str, dict[str, Any]]:
    listed = json.loads(kube(plane, "get", "dse", "-n", NAMESPACE, "-o", "json"))
    return {o["metadata"]["name"]: o for o in listed["items"]}


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    found = obj.get("status", {}).get("conditions", [])
    return {c["type"]: (c["status"], c["reason"]) for c in found}


def manifest(item: Item) -> dict[str, Any]:
    spec: dict[str, Any] = {"executionArn": item.arn,
                            "desiredState": "Cancelled" if item.kind == "cancel" else "Running"}
    if item.kind == "delete":
        spec["deletionPolicy"] = "Cancel"
    return {"apiVersion": "datasync.operator.io/v1alpha1", "kind": "DataSyncExecution",
            "metadata": {"name": item.name, "namespace": NAMESPACE}, "spec": spec}


def apply(plane: ControlPlane, items: list[Item]) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": [manifest(i) for i in items]})
    kube(plane, "apply", "-f", "-", input=body)


@contextlib.contextmanager
def watch_gone(plane: ControlPlane, items: list[Item]) -> Iterator[None]:
    """Record when each deleted object disappears (0.2 s resolution)."""
    stop = threading.Event()
    doomed = {i.name: i for i in items if i.kind == "delete"}

    def run() -> None:
        while not stop.is_set():
            result = plane.kubectl("get", "dse", "-n", NAMESPACE, "-o", "name", check=False)
            if result.returncode == 0:
                present = {line.split("/", 1)[-1] for line in result.stdout.split()}
                now = time.monotonic()
                for name, item in doomed.items():
                    if item.gone_at is None and name not in present and item.deleted:
                        item.gone_at = now
            stop.wait(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def run(plan: Plan, say: Callable[[str], None] = print) -> Report:
    rng = random.Random(plan.seed)
    say(f"chaos: seed {plan.seed}, {plan.resources} resources, {plan.kills} operator kills, "
        f"{plan.apiserver_restarts} API server restarts, {plan.fault_rate:.0%} DataSync faults, "
        f"{plan.duration:.0f} s of faults")
    logs = Path(tempfile.mkdtemp(prefix="chaos-"))
    plane = ControlPlane(bin_dir=find_binaries())
    plane.start()
    report = Report()
    replicas: Replicas | None = None
    try:
        plane.apply_crd(REPO_ROOT / "crds" / "datasyncexecution.yaml")
        plane.kubectl("create", "namespace", NAMESPACE)
        # Executions stay where they are until cancelled: moto would move one a step per
        # describe (retries and checks included), which real DataSync does not do.
        with MotoServer(executions_advance=False) as moto, FaultProxy(
            moto.url, upstream_timeout=10
        ) as proxy:
            with ThreadPoolExecutor(8) as pool:
                arns = list(pool.map(lambda _: moto.create_execution(), range(plan.resources)))
            kinds = ["cancel"] * 7 + ["run"] * 2 + ["delete"]
            items = [Item(f"dse-{n}", arn, rng.choice(kinds)) for n, arn in enumerate(arns)]
            replicas = Replicas(plane, proxy, logs)
            replicas.start()
            proxy.random_faults(plan.fault_rate, random_faults(), random.Random(rng.random()))
            started = time.monotonic()
            faults_end = _chaos(plan, rng, plane, replicas, items, started, say)
            proxy.random_faults(0.0, [])
            if not replicas.running:
                replicas.start()
            say("chaos: faults over; waiting for quiet")
            quiet = _wait_quiet(plane, items, replicas, plan.quiet_timeout)
            quiet_after = time.monotonic() - faults_end
            replicas.sample()
            events = json.loads(kube(plane, "get", "events", "-n", NAMESPACE, "-o", "json"))["items"]
            final = objects(plane)
            replicas.stop_all()
            _invariants(report, items, final, proxy, moto, quiet)
            report.check("time from the last fault to quiet", f"{quiet_after:.1f} s", quiet)
            report.check("operator peak RSS (any replica)", f"{replicas.peak_rss_kib / 1024:.0f} MiB",
                         replicas.peak_rss_kib < 512 * 1024)
            report.check("Events written (objects, sum of counts)",
                         f"{len(events)}, {sum(int(e.get('count') or 1) for e in events)}", True)
            report.check("operator processes started", str(replicas.started), True)
    finally:
        # The operators run in sessions of their own: an interrupted run must not leave them.
        if replicas is not None:
            replicas.kill_all()
        plane.stop()
    say(report.table())
    say(f"chaos: logs in {logs}; seed {plan.seed}: {'PASS' if report.passed else 'FAIL'}")
    return report


def _chaos(plan: Plan, rng: random.Random, plane: ControlPlane, replicas: Replicas,
           items: list[Item], started: float, say: Callable[[str], None]) -> float:
    """Apply the workload and the faults on a seeded timeline; return when faults ended."""
    span = plan.duration
    timeline: list[tuple[float, str]] = []
    timeline += [(rng.uniform(0.05, 0.95) * span, "kill") for _ in range(plan.kills)]
    timeline += [(rng.uniform(0.1, 0.9) * span, "apiserver") for _ in range(plan.apiserver_restarts)]
    timeline.append((rng.uniform(0.3, 0.7) * span, "failover"))
    waves = 10
    chunk = -(-len(items) // waves)
    timeline += [(w * span * 0.5 / waves, f"apply:{w}") for w in range(waves)]
    doomed = [i for i in items if i.kind == "delete"]
    timeline += [(rng.uniform(0.55, 0.9) * span, f"delete:{i.name}") for i in doomed]
    timeline.sort()
    by_name = {i.name: i for i in items}
    with watch_gone(plane, items):
        for at, what in timeline:
            wait = started + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            replicas.sample()
            if what == "kill":
                victim = replicas.leader() or (replicas.running[0] if replicas.running else None)
                if victim is not None:
                    say(f"chaos: {at:6.1f}s SIGKILL the operator")
                    replicas.kill(victim)
                replicas.start()
            elif what == "apiserver":
                down = rng.uniform(3, 10)
                say(f"chaos: {at:6.1f}s kube-apiserver stopped for {down:.1f}s")
                plane.stop_apiserver()
                time.sleep(down)
                plane.start_apiserver()
            elif what == "failover":
                say(f"chaos: {at:6.1f}s a second replica joins; the active one is killed")
                replicas.start()
                time.sleep(5)
                leader = replicas.leader()
                if leader is not None:
                    replicas.kill(leader)
            elif what.startswith("apply:"):
                wave = int(what.split(":")[1])
                apply(plane, items[wave * chunk:(wave + 1) * chunk])
            elif what.startswith("delete:"):
                item = by_name[what.split(":", 1)[1]]
                _wait_finalizer(plane, item)
                item.deleted = True
                kube(plane, "delete", "dse", item.name, "-n", NAMESPACE, "--wait=false")
        end = time.monotonic()
        say(f"chaos: {end - started:6.1f}s last fault")
        _wait_gone(plane, items, 300)
    return end


def _wait_finalizer(plane: ControlPlane, item: Item, timeout: float = 120) -> None:
    """The promise of deletionPolicy: Cancel starts when the operator has put its finalizer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = json.loads(kube(plane, "get", "dse", item.name, "-n", NAMESPACE, "-o", "json"))
        if "datasync.operator.io/finalizer" in obj["metadata"].get("finalizers", []):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{item.name} never got the operator's finalizer")


def _wait_gone(plane: ControlPlane, items: list[Item], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(i.gone_at is not None for i in items if i.kind == "delete"):
            return
        time.sleep(0.5)


def _settled(obj: dict[str, Any], item: Item) -> bool:
    status = obj.get("status", {})
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    found = conditions(obj)
    if found.get("Reconciling", ("", ""))[0] == "True":
        return False
    if item.kind == "cancel":
        return found.get("Cancelled", ("", ""))[0] == "True"
    return "Ready" in found


def _wait_quiet(plane: ControlPlane, items: list[Item], replicas: Replicas, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    kept = [i for i in items if i.kind != "delete"]
    while time.monotonic() < deadline:
        replicas.sample()
        found = objects(plane)
        if all(i.name in found and _settled(found[i.name], i) for i in kept) and not any(
            i.name in found for i in items if i.kind == "delete"
        ):
            return True
        time.sleep(2)
    return False


def _invariants(report: Report, items: list[Item], final: dict[str, dict[str, Any]],
                proxy: FaultProxy, moto: MotoServer, quiet: bool) -> None:
    reached: dict[str, list[int]] = defaultdict(list)
    for r in proxy.reached(CANCEL):
        reached[r.arn].append(r.status)
    arrivals: dict[str, list[float]] = defaultdict(list)
    for request in proxy.requests():
        arn = str(request.body.get("TaskExecutionArn", ""))
        arrivals[arn].append(request.at)

    cancels = [i for i in items if i.kind == "cancel"]
    untruthful = []
    for item in cancels:
        obj = final.get(item.name)
        state = conditions(obj) if obj else {}
        status, reason = state.get("Cancelled", ("missing", "missing"))
        accepted = reached[item.arn].count(200)
        truthful = status == "True" and (
            (reason == "CancelAccepted" and accepted == 1)
            or (reason == "AlreadyCancelled" and accepted == 1)
        )
        if not truthful:
            untruthful.append(f"{item.name}: {status}/{reason}, {accepted} accepted")
    report.check(f"every Cancelled resource ({len(cancels)}) Cancelled=True, truthfully",
                 f"{len(cancels) - len(untruthful)} of {len(cancels)}"
                 + (f"; e.g. {untruthful[:3]}" if untruthful else ""), not untruthful)

    per_arn = Counter({arn: len(statuses) for arn, statuses in reached.items()})
    most = max(per_arn.values(), default=0)
    twice = sum(1 for n in per_arn.values() if n == 2)
    names = {i.arn: i.name for i in items}
    over = [f"{names.get(arn, arn)}: {n}" for arn, n in per_arn.items() if n > 2]
    report.check("Cancel calls reaching DataSync per execution (at most 2)",
                 f"max {most}; {twice} executions got 2" + (f"; {over[:3]}" if over else ""),
                 most <= 2)
    most_accepted = max((s.count(200) for s in reached.values()), default=0)
    report.check("accepted cancels per execution (at most 1)", f"max {most_accepted}",
                 most_accepted <= 1)

    running = [i for i in items if i.kind == "run"]
    wrongly = [i.name for i in running if reached.get(i.arn)]
    report.check(f"no Running resource's execution cancelled ({len(running)})",
                 f"{len(wrongly)} cancelled", not wrongly)

    doomed = [i for i in items if i.kind == "delete"]
    not_gone = [i.name for i in doomed if i.name in final]
    # moto moves an execution one step per describe (retried describes too), so some finish
    # before their cancel: then there is nothing to cancel (DataSync refuses it, status
    # SUCCESS) and the deletion must not wait.
    ended = {i.name: moto.describe_status(i.arn) for i in doomed}
    finished = [i.name for i in doomed
                if ended[i.name] == "SUCCESS" and 200 not in reached[i.arn]]
    not_cancelled = [i.name for i in doomed
                     if i.name not in finished and reached[i.arn].count(200) != 1]
    report.check(f"deleted deletionPolicy: Cancel resources ({len(doomed)}) cancelled (or "
                 "finished before) and gone",
                 f"{len(doomed) - len(not_gone)} gone, "
                 f"{len(doomed) - len(not_cancelled) - len(finished)} cancelled, "
                 f"{len(finished)} had finished"
                 + (f"; not cancelled: {not_cancelled[:3]}" if not_cancelled else ""),
                 not not_gone and not not_cancelled)
    late = [i.name for i in doomed
            if i.gone_at is not None and any(at > i.gone_at + 0.5 for at in arrivals[i.arn])]
    report.check("no AWS call about a deleted resource after it is gone",
                 f"{len(late)} resources had one", not late)

    stale = [name for name, obj in final.items()
             if obj.get("status", {}).get("observedGeneration") != obj["metadata"].get("generation")]
    report.check("status.observedGeneration == generation everywhere", f"{len(stale)} differ", not stale)
    stuck = [name for name, obj in final.items() if conditions(obj).get("Reconciling", ("",))[0] == "True"]
    report.check("no resource stuck Reconciling", f"{len(stuck)} stuck", not stuck and quiet)
    moto_cancelled = sum(1 for i in cancels if moto.describe_status(i.arn) == "ERROR")
    report.check("DataSync agrees (cancelled executions are ERROR in moto)",
                 f"{moto_cancelled} of {len(cancels)}", moto_cancelled == len(cancels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--resources", type=int, default=Plan.resources)
    parser.add_argument("--kills", type=int, default=Plan.kills)
    parser.add_argument("--apiserver-restarts", type=int, default=Plan.apiserver_restarts)
    parser.add_argument("--fault-rate", type=float, default=Plan.fault_rate)
    parser.add_argument("--duration", type=float, default=Plan.duration)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    plan = Plan(resources=args.resources, kills=args.kills,
                apiserver_restarts=args.apiserver_restarts, fault_rate=args.fault_rate,
                duration=args.duration, seed=seed)
    # SIGTERM unwinds like Ctrl-C, so the operators, moto and the control plane are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    report = run(plan, say=lambda line: print(line, flush=True))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
