"""Three DataSyncExecution operators side by side on one real kube-apiserver (``make bench``).

In ONE run, against the same control plane (tools/controlplane) and the same fast DataSync
stand-in (``benchmarks/datasync_standin.py``, its own process, fixed RTT), each contender is
measured in turn, in namespaces of its own:

* ``raw``: ``benchmarks/peers/raw_loop.py``, a list+watch loop with 16 threads (the baseline);
* ``kopf``: ``benchmarks/peers/textbook_kopf.py`` under ``kopf run --standalone --quiet``;
* ``operator``: this operator, ``python -m datasync_operator run`` (only its CLI and the
  ``Cancelled`` condition it writes are used here, never its internals).

Phases per contender (each a fresh process, all with the same AWS environment):

1. storm: N ``Cancelled`` objects are created while the contender is NOT running, then it is
   started; throughput is the rate between the first and the last ``Cancelled=True`` seen by
   the harness's own watch. PATCHes per object come from the API server's
   ``apiserver_request_total{verb="PATCH",resource="datasyncexecutions"}`` (before the start,
   after the run went quiet), AWS calls per object from the stand-in's counts. CPU is
   utime+stime of the contender's process tree when the run went quiet, minus the same at idle
   after start-up (phase 2), per 1000 objects; RSS (VmRSS of the tree) when the run went quiet.
2. idle and memory: started on an empty namespace; once its watch is established (the API
   server's ``apiserver_longrunning_requests{verb="WATCH"}`` gauge) and after a settle period of
   ``SETTLE_SECONDS`` (the start-up allocations end), idle RSS and start-up CPU are read; then
   K sequential create -> ``Cancelled=True`` latencies; then M ``Running`` objects are created
   and RSS is read once every one of them shows that the contender looked at it in AWS
   (``status.executionStatus`` set); RSS per object is that minus the RSS just before the M
   objects were created, divided by M.
3. loaded: restarted on the namespace of phase 2 (M ``Running`` objects in place) with a poll
   interval short enough that polling saturates this operator's default rate limit (which it
   runs with here; the peers have no rate limit); once its watch is established and polling
   has started (the stand-in answers describes), K sequential create -> ``Cancelled=True``
   latencies. A latency sample that times out ends that contender's sampling.

The storm and memory phases run with a long poll interval (``--quiet-poll-interval``) so no
periodic polling happens while they are measured, and this operator with
``--aws-rate-limit 1000 --aws-rate-burst 100`` (the peers have no limiter).

Prints one markdown table (values, ratios to the raw loop, the targets of issue 8 and PASS/FAIL
for this operator). Exit code 0 even when a target is missed, unless ``--strict``; 2 when a
phase could not be measured at all (a harness or contender failure)::

    .venv/bin/python benchmarks/bench_operator.py --storm 200 --running 200 --latency-samples 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import urllib3

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from benchmarks.datasync_standin import CANCEL, DESCRIBE, StandIn  # noqa: E402
from tests.support.controlplane import ControlPlane, find_binaries  # noqa: E402
from tests.support.moto_server import free_port  # noqa: E402
from tests.support.operator_process import OperatorProcess, aws_env  # noqa: E402

GROUP, VERSION, PLURAL, KIND = (
    "datasync.operator.io",
    "v1alpha1",
    "datasyncexecutions",
    "DataSyncExecution",
)
CONTENDERS = ("raw", "kopf", "operator")
TITLES = {"raw": "raw loop", "kopf": "textbook kopf", "operator": "this operator"}
SETTLE_SECONDS = 3.0  # after the watch is established, before the idle RSS reading
QUIET_SECONDS = 2.0  # the storm is over when PATCH and AWS counts stay still this long
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KIB = 1024


# --- processes ---------------------------------------------------------------------------


class Contender(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def running(self) -> bool: ...

    def log(self) -> str: ...

    def stop(self, timeout: float = 15.0) -> int | None: ...


class PeerProcess:
    """A peer's process, started like OperatorProcess (own session, log to a file)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], name: str) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.env.pop("AWS_PROFILE", None)
        self.log_path = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
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


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process tree, in seconds."""
    ticks = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """VmRSS of the process tree, in KiB."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    alive: Contender | None = None,
) -> None:
    """Poll ``predicate`` until true; TimeoutError after ``timeout`` (or if ``alive`` died)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if alive is not None and not alive.running:
            tail = alive.log()[-3000:]
            raise RuntimeError(f"the contender exited while waiting for {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


# --- the API server ----------------------------------------------------------------------


class Kube:
    """A small thread-safe admin client (urllib3 + the control plane's admin certificate)."""

    def __init__(self, plane: ControlPlane) -> None:
        pki = plane.workdir / "pki"
        self.server = plane.server
        self.http = urllib3.PoolManager(
            num_pools=4,
            maxsize=48,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(pki / "ca.crt"),
            cert_file=str(pki / "admin.crt"),
            key_file=str(pki / "admin.key"),
            retries=False,
            timeout=urllib3.Timeout(connect=10, read=120),
        )

    def collection(self, namespace: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        ok: Sequence[int] = (200, 201),
    ) -> Any:
        response = self.http.request(
            method,
            self.server + path,
            body=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        if response.status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {response.data[:500]!r}")
        return response.json() if response.data else None

    def create_namespace(self, name: str) -> None:
        self.call(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )

    def create(self, namespace: str, name: str, arn: str, desired: str) -> None:
        self.call(
            "POST",
            self.collection(namespace),
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"executionArn": arn, "desiredState": desired},
            },
        )

    def create_many(self, namespace: str, objects: Sequence[tuple[str, str, str]]) -> None:
        with ThreadPoolExecutor(16) as pool:
            for future in [pool.submit(self.create, namespace, *o) for o in objects]:
                future.result()

    def list(self, namespace: str) -> Any:
        return self.call("GET", self.collection(namespace))

    def metrics(self) -> str:
        response = self.http.request("GET", self.server + "/metrics")
        return response.data.decode()

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        total = 0.0
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in self.metrics().splitlines():
            if line.startswith(name + "{") and all(w in line for w in wanted):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def patches(self) -> int:
        return int(self.metric_sum("apiserver_request_total", verb="PATCH", resource=PLURAL))

    def watches(self) -> int:
        return int(self.metric_sum("apiserver_longrunning_requests", verb="WATCH", resource=PLURAL))

    def delete_all(self, namespace: str, timeout: float) -> None:
        """Delete every object of the namespace, removing finalizers that would hold them."""
        self.call("DELETE", self.collection(namespace), ok=(200,))
        remaining = self.list(namespace)["items"]
        held = [o["metadata"]["name"] for o in remaining if o["metadata"].get("finalizers")]

        def release(name: str) -> None:
            with contextlib.suppress(RuntimeError):  # already gone
                self.call(
                    "PATCH",
                    f"{self.collection(namespace)}/{name}",
                    {"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json",
                )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(release, held))
        wait_until(lambda: not self.list(namespace)["items"], timeout, f"{namespace} emptied", 1.0)


class Tracker:
    """The harness's own list+watch of one namespace: when each object got Cancelled=True.

    Arrival times are ``time.monotonic()`` when the event was read. Also records which
    objects show ``status.executionStatus`` (the contender looked at them in AWS).
    """

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.cancelled_at: dict[str, float] = {}
        self.looked_at: set[str] = set()
        self.names: set[str] = set()
        self.lock = threading.Lock()
        self.watching = threading.Event()
        self._stopped = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"track-{namespace}")

    def start(self) -> Self:
        self._thread.start()
        if not self.watching.wait(30):
            raise TimeoutError(f"the harness could not watch {self.namespace}: {self.error!r}")
        return self

    @property
    def active(self) -> bool:
        return not self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
                response.release_conn()
        self._thread.join(10)

    def _record(self, kind: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        moment = time.monotonic()
        with self.lock:
            if kind == "DELETED":
                self.names.discard(name)
                return
            self.names.add(name)
            if status.get("executionStatus"):
                self.looked_at.add(name)
            if name not in self.cancelled_at and any(
                c.get("type") == "Cancelled" and c.get("status") == "True"
                for c in status.get("conditions", [])
            ):
                self.cancelled_at[name] = moment

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                listed = self.kube.list(self.namespace)
                for item in listed["items"]:
                    self._record("ADDED", item)
                version = listed["metadata"]["resourceVersion"]
                while not self._stopped.is_set():
                    version = self._watch(version)
            except Exception as exc:
                if self._stopped.is_set():
                    return
                self.error = exc
                time.sleep(0.5)

    def _watch(self, version: str) -> str:
        """One watch request from ``version``; returns the last version seen."""
        response = self.kube.http.request(
            "GET",
            f"{self.kube.server}{self.kube.collection(self.namespace)}"
            f"?watch=1&allowWatchBookmarks=true&timeoutSeconds=3600&resourceVersion={version}",
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=None),
        )
        self._response = response
        if response.status != 200:
            raise RuntimeError(f"watch: HTTP {response.status}")
        self.watching.set()
        pending = b""
        for chunk in response.stream(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {event['object'].get('message')}")
                body = event["object"]
                version = body["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self._record(event["type"], body)
        return version

    def cancelled(self, names: Sequence[str]) -> int:
        with self.lock:
            return sum(1 for n in names if n in self.cancelled_at)

    def looked(self) -> int:
        with self.lock:
            return len(self.looked_at)

    def seen(self) -> int:
        with self.lock:
            return len(self.names)


# --- what is measured --------------------------------------------------------------------


@dataclass
class Figures:
    """The measured figures of one contender (None: not measured)."""

    storm_rate: float | None = None
    storm_seconds: float | None = None
    storm_wall: float | None = None
    patches: float | None = None
    cancels: float | None = None
    describes: float | None = None
    cpu_per_1000: float | None = None
    cpu_storm_total: float | None = None
    #: kube-apiserver + etcd CPU ms per object, from the contender's start to its last cancel.
    control_plane_cpu: float | None = None
    startup_cpu: float | None = None
    rss_storm: float | None = None
    idle_rss: float | None = None
    rss_running: float | None = None
    rss_per_object: float | None = None
    observed: int | None = None
    idle_latency: list[float] = field(default_factory=list)
    loaded_latency: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


INF = math.inf


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (timeouts are +inf); None without samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Options:
    storm: int
    running: int
    samples: int
    only: list[str]
    rtt: float
    storm_rate: float
    storm_burst: float
    quiet_poll: float
    loaded_poll: float | None
    sample_timeout: float
    phase_timeout: float
    strict: bool


class Bench:
    def __init__(self, options: Options, plane: ControlPlane, standin: StandIn) -> None:
        self.options = options
        self.plane = plane
        self.kube = Kube(plane)
        self.standin = standin
        self.trackers: list[Tracker] = []
        #: Builds a contender's whole command from (contender, its arguments), when set
        #: (``bench_cpu_split.py`` runs the contenders through a shim this way).
        self.wrapper: Callable[[str, list[str]], list[str]] | None = None
        self.default_rate, self.default_burst = operator_rate_defaults()
        self.loaded_poll = options.loaded_poll or max(
            1.0, min(60.0, options.running / (2 * self.default_rate))
        )

    # --- helpers ---

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.plane.kubeconfig), **aws_env(self.standin.url)}

    def control_plane_cpu(self) -> float:
        """CPU seconds used so far by the control plane's processes (kube-apiserver, etcd)."""
        return sum(cpu_seconds(pid) for pid in self.plane.process_ids.values())

    def contender_args(self, who: str, namespace: str, poll: float, *, loaded: bool) -> list[str]:
        """The contender's command-line arguments (after its program)."""
        if who == "raw":
            return ["--namespace", namespace, "--poll-interval", str(poll)]
        if who == "kopf":
            peer = ROOT / "benchmarks" / "peers" / "textbook_kopf.py"
            return ["run", "--standalone", "--quiet", "-n", namespace, str(peer)]
        rates = (
            []
            if loaded
            else [
                "--aws-rate-limit",
                str(self.options.storm_rate),
                "--aws-rate-burst",
                str(self.options.storm_burst),
            ]
        )
        return [
            "--namespace",
            namespace,
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "WARNING",
            "--poll-interval",
            str(poll),
            *rates,
        ]

    def launch(self, who: str, namespace: str, poll: float, *, loaded: bool) -> Contender:
        args = self.contender_args(who, namespace, poll, loaded=loaded)
        if self.wrapper is not None:
            return PeerProcess(self.wrapper(who, args), self.env(), who).start()
        if who == "raw":
            raw = ROOT / "benchmarks" / "peers" / "raw_loop.py"
            return PeerProcess([sys.executable, str(raw), *args], self.env(), "raw").start()
        if who == "kopf":
            kopf = Path(sys.executable).with_name("kopf")
            return PeerProcess(
                [str(kopf), *args], {**self.env(), "BENCH_POLL_INTERVAL": str(poll)}, "kopf"
            ).start()
        return OperatorProcess(
            args,
            env=self.env(),
            log_path=Path(tempfile.mkstemp(prefix="bench-operator-", suffix=".log")[1]),
        ).start()

    @contextlib.contextmanager
    def tracking(self, namespace: str) -> Iterator[Tracker]:
        """The harness's watch of ``namespace`` for the duration of a phase."""
        tracker = Tracker(self.kube, namespace).start()
        self.trackers.append(tracker)
        try:
            yield tracker
        finally:
            tracker.stop()
            self.trackers.remove(tracker)

    def stop_trackers(self) -> None:
        for tracker in self.trackers:
            tracker.stop()

    def harness_watches(self) -> int:
        return sum(1 for t in self.trackers if t.active)

    def wait_watching(self, proc: Contender) -> None:
        """The contender's watch on DataSyncExecutions is open at the API server."""
        wait_until(
            lambda: self.kube.watches() > self.harness_watches(),
            60,
            "the contender's watch",
            0.25,
            proc,
        )

    def stop(self, proc: Contender) -> None:
        proc.stop()
        with contextlib.suppress(TimeoutError):  # a lingering watch only delays the next wait
            wait_until(
                lambda: self.kube.watches() <= self.harness_watches(), 30, "watch closed", 0.25
            )

    def arns(self, who: str, phase: int, count: int, start: int = 0) -> list[str]:
        task = CONTENDERS.index(who) * 16 + phase
        return [
            f"arn:aws:datasync:us-east-1:111122223333:task/task-{task:017x}"
            f"/execution/exec-{task:03x}{i:014x}"
            for i in range(start, start + count)
        ]

    def latency(
        self,
        who: str,
        namespace: str,
        tracker: Tracker,
        prefix: str,
        phase: int,
        proc: Contender,
        figures: list[float],
    ) -> None:
        """K sequential create -> Cancelled=True latencies; a timeout ends the sampling."""
        for index, arn in enumerate(self.arns(who, phase, self.options.samples)):
            name = f"{prefix}-{index}"
            started = time.monotonic()
            self.kube.create(namespace, name, arn, "Cancelled")

            def done(name: str = name) -> bool:
                return tracker.cancelled([name]) == 1

            try:
                wait_until(
                    done,
                    self.options.sample_timeout,
                    f"{name} Cancelled=True",
                    0.005,
                    proc,
                )
            except TimeoutError:
                figures.append(INF)
                return
            figures.append(tracker.cancelled_at[name] - started)

    def quiet(self) -> None:
        """Wait until PATCH and AWS call counts stay still for QUIET_SECONDS."""

        def snapshot() -> tuple[int, int]:
            return self.kube.patches(), sum(self.standin.counts()["calls"].values())

        last, since = snapshot(), time.monotonic()
        deadline = since + 60
        while time.monotonic() - since < QUIET_SECONDS:
            if time.monotonic() > deadline:
                raise TimeoutError("PATCH and AWS calls never stopped after the storm")
            time.sleep(0.5)
            current = snapshot()
            if current != last:
                last, since = current, time.monotonic()

    # --- phases ---

    def storm(self, who: str, figures: Figures) -> None:
        count = self.options.storm
        namespace = f"bench-{who}-storm"
        self.kube.create_namespace(namespace)
        with self.tracking(namespace) as tracker:
            names = [f"storm-{i}" for i in range(count)]
            arns = self.arns(who, 1, count)
            self.kube.create_many(
                namespace, [(n, a, "Cancelled") for n, a in zip(names, arns, strict=True)]
            )
            wait_until(lambda: tracker.seen() == count, 60, "the harness saw the storm objects")
            patches, calls = self.kube.patches(), self.standin.counts()["calls"]
            started = time.monotonic()
            plane_cpu = self.control_plane_cpu()
            proc = self.launch(who, namespace, self.options.quiet_poll, loaded=False)
            try:
                wait_until(
                    lambda: tracker.cancelled(names) == count,
                    self.options.phase_timeout,
                    f"{count} objects Cancelled=True",
                    0.25,
                    proc,
                )
                plane_cpu = self.control_plane_cpu() - plane_cpu
                figures.control_plane_cpu = plane_cpu / count * 1000
                self.quiet()
                figures.cpu_storm_total = cpu_seconds(proc.pid)
                figures.rss_storm = rss_kib(proc.pid) / KIB
            finally:
                self.stop(proc)
            after = self.standin.counts()["calls"]
            times = sorted(tracker.cancelled_at[n] for n in names)
        figures.storm_seconds = times[-1] - times[0]
        figures.storm_wall = times[-1] - started
        if count > 1 and figures.storm_seconds > 0:
            figures.storm_rate = (count - 1) / figures.storm_seconds
        figures.patches = (self.kube.patches() - patches) / count
        figures.cancels = (after.get(CANCEL, 0) - calls.get(CANCEL, 0)) / count
        figures.describes = (after.get(DESCRIBE, 0) - calls.get(DESCRIBE, 0)) / count

    def idle_and_memory(self, who: str, figures: Figures) -> None:
        namespace = f"bench-{who}-run"
        self.kube.create_namespace(namespace)
        with self.tracking(namespace) as tracker:
            proc = self.launch(who, namespace, self.options.quiet_poll, loaded=False)
            try:
                self.wait_watching(proc)
                time.sleep(SETTLE_SECONDS)  # documented settle: start-up allocations end
                figures.idle_rss = rss_kib(proc.pid) / KIB
                figures.startup_cpu = cpu_seconds(proc.pid)
                self.latency(who, namespace, tracker, "idle", 2, proc, figures.idle_latency)
                count = self.options.running
                before = rss_kib(proc.pid) / KIB
                names = [f"run-{i}" for i in range(count)]
                arns = self.arns(who, 3, count)
                self.kube.create_many(
                    namespace, [(n, a, "Running") for n, a in zip(names, arns, strict=True)]
                )
                try:
                    wait_until(
                        lambda: tracker.looked() >= count,
                        max(self.options.phase_timeout, count * 0.1),
                        f"all {count} Running objects looked at",
                        0.5,
                        proc,
                    )
                except TimeoutError as exc:
                    figures.notes.append(f"memory: {exc} ({tracker.looked()} were)")
                figures.observed = tracker.looked()
                figures.rss_running = rss_kib(proc.pid) / KIB
                figures.rss_per_object = (figures.rss_running - before) * KIB / count
            finally:
                self.stop(proc)

    def loaded(self, who: str, figures: Figures) -> None:
        namespace = f"bench-{who}-run"
        with self.tracking(namespace) as tracker:
            describes = self.standin.calls(DESCRIBE)
            proc = self.launch(who, namespace, self.loaded_poll, loaded=True)
            try:
                self.wait_watching(proc)
                wanted = min(self.options.running, 10)
                try:
                    wait_until(
                        lambda: self.standin.calls(DESCRIBE) - describes >= wanted,
                        self.loaded_poll + 60,
                        "polling started",
                        0.25,
                        proc,
                    )
                except TimeoutError:
                    figures.notes.append("loaded: no polling seen before sampling")
                before, since = self.standin.calls(DESCRIBE), time.monotonic()
                self.latency(who, namespace, tracker, "loaded", 4, proc, figures.loaded_latency)
                during, elapsed = self.standin.calls(DESCRIBE) - before, time.monotonic() - since
                figures.notes.append(
                    f"loaded: {during} describes while the latency was sampled "
                    f"({during / elapsed:.0f}/s over {elapsed:.1f} s), "
                    f"{before - describes} from its start to the first sample"
                )
            finally:
                self.stop(proc)

    def cleanup(self, who: str) -> None:
        """Delete the contender's objects (finalizers removed): namespaces never go away."""
        for namespace in (f"bench-{who}-storm", f"bench-{who}-run"):
            try:
                self.kube.delete_all(namespace, self.options.phase_timeout)
            except Exception as exc:
                print(f"  cleanup of {namespace} failed: {exc}", file=sys.stderr)

    def run(self, who: str) -> Figures:
        figures = Figures()
        for phase in (self.storm, self.idle_and_memory, self.loaded):
            started = time.monotonic()
            try:
                phase(who, figures)
            except Exception as exc:
                figures.errors.append(f"{phase.__name__}: {exc}")
                traceback.print_exc()
            print(
                f"  {who}: {phase.__name__} done in {time.monotonic() - started:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        self.cleanup(who)
        if figures.cpu_storm_total is not None and figures.startup_cpu is not None:
            figures.cpu_per_1000 = (
                (figures.cpu_storm_total - figures.startup_cpu) / self.options.storm * 1000
            )
        return figures


def operator_rate_defaults() -> tuple[float, float]:
    """This operator's default --aws-rate-limit and --aws-rate-burst, read from its --help."""
    text = subprocess.run(
        [sys.executable, "-m", "datasync_operator", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout

    def default(flag: str, fallback: float) -> float:
        match = re.search(rf"^\s*{flag}\b.*?default:\s*([0-9.]+)", text, re.MULTILINE | re.DOTALL)
        return float(match.group(1)) if match else fallback

    return default("--aws-rate-limit", 5.0), default("--aws-rate-burst", 10.0)


# --- the report --------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    if value == INF:
        return "timeout"
    return f"{value:,.{digits}f}{unit}"


def latency_text(values: Sequence[float], p: float, timeout: float) -> str:
    value = percentile(values, p)
    if value is None:
        return "-"
    if value == INF:
        return f">{timeout:g} s"
    return f"{value * 1000:,.0f} ms"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0 or INF in (value, base):
        return "-"
    return f"{value / base:.2f}x"


@dataclass
class Row:
    metric: str
    values: dict[str, str]
    ratio: str
    target: str = ""
    verdict: str = ""


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def report(bench: Bench, results: dict[str, Figures]) -> tuple[str, bool]:
    """The markdown table and whether every target this run could check was met."""
    opts = bench.options
    raw, kopf, op = (results.get(k) for k in CONTENDERS)
    rows: list[Row] = []
    failed = False

    def get(figures: Figures | None, attribute: str) -> float | None:
        return None if figures is None else getattr(figures, attribute)

    def add(
        metric: str,
        attribute: str,
        digits: int,
        target: str = "",
        check: Callable[[float], bool | None] | None = None,
    ) -> None:
        nonlocal failed
        values = {k: fmt(get(results.get(k), attribute), digits) for k in results}
        mine = get(op, attribute)
        ok = None if check is None or mine is None else check(mine)
        failed |= ok is False
        rows.append(
            Row(
                metric,
                values,
                ratio(mine, get(raw, attribute)),
                target,
                verdict(ok) if target else "",
            )
        )

    def add_latency(
        metric: str,
        attribute: str,
        p: float,
        target: str = "",
        check: Callable[[float], bool | None] | None = None,
    ) -> None:
        nonlocal failed
        values = {
            k: latency_text(getattr(f, attribute), p, opts.sample_timeout)
            for k, f in results.items()
        }
        mine = percentile(getattr(op, attribute), p) if op else None
        base = percentile(getattr(raw, attribute), p) if raw else None
        ok = None if check is None or mine is None else check(mine)
        failed |= ok is False
        rows.append(Row(metric, values, ratio(mine, base), target, verdict(ok) if target else ""))

    raw_rate, kopf_rate = get(raw, "storm_rate"), get(kopf, "storm_rate")
    rate_target = []
    if raw_rate:
        rate_target.append(f">= {0.8 * raw_rate:.0f} (80% raw)")
    if kopf_rate:
        rate_target.append(f">= {2 * kopf_rate:.0f} (2x textbook)")

    def rate_ok(mine: float) -> bool | None:
        if raw_rate is None and kopf_rate is None:
            return None
        return (raw_rate is None or mine >= 0.8 * raw_rate) and (
            kopf_rate is None or mine >= 2 * kopf_rate
        )

    add(
        f"storm throughput, objects/s ({opts.storm} waiting at start)",
        "storm_rate",
        1,
        ", ".join(rate_target) or "80% raw, 2x textbook",
        rate_ok,
    )
    add("storm: first -> last Cancelled=True, s", "storm_seconds", 1)
    add("storm: contender start -> last Cancelled=True, s", "storm_wall", 1)
    add("PATCHes per cancelled object (all subresources)", "patches", 2, "1", lambda v: v <= 1.0)
    add("CancelTaskExecution calls per object", "cancels", 2, "1", lambda v: v <= 1.0)
    add("DescribeTaskExecution calls per object (storm)", "describes", 2)
    raw_cpu = get(raw, "cpu_per_1000")
    add(
        "CPU seconds per 1000 cancels",
        "cpu_per_1000",
        1,
        f"<= {2 * raw_cpu:.1f} (2x raw)" if raw_cpu else "2x raw",
        (lambda v: v <= 2 * raw_cpu) if raw_cpu else None,
    )
    add(
        "kube-apiserver + etcd CPU ms per object (storm: contender start -> last cancel)",
        "control_plane_cpu",
        2,
    )
    add("RSS after the storm, MiB", "rss_storm", 0, "<= 120", lambda v: v <= 120)
    add("idle RSS, MiB", "idle_rss", 0, "<= 80", lambda v: v <= 80)
    full = opts.running >= 10_000
    add(
        f"RSS with {opts.running} Running objects, MiB",
        "rss_running",
        0,
        "<= 200 at 10,000" if full else "",
        (lambda v: v <= 200) if full else None,
    )
    add(
        f"RSS per Running object above idle, KiB (M={opts.running})",
        "rss_per_object",
        1,
        "<= 10",
        lambda v: v <= 10,
    )
    idle50 = percentile(op.idle_latency, 50) if op else None
    idle90 = percentile(op.idle_latency, 90) if op else None
    slot = 1 / bench.default_rate
    add_latency("create -> Cancelled=True, idle, p50", "idle_latency", 50)
    add_latency("create -> Cancelled=True, idle, p90", "idle_latency", 90)

    def loaded_check(idle: float | None) -> Callable[[float], bool | None]:
        return lambda v: None if idle is None or idle == INF else v <= 2 * idle + slot

    add_latency(
        f"create -> Cancelled=True, {opts.running} Running polled, p50",
        "loaded_latency",
        50,
        f"<= 2x idle p50 + {slot * 1000:.0f} ms"
        + (f" = {(2 * idle50 + slot) * 1000:.0f} ms" if idle50 and idle50 != INF else ""),
        loaded_check(idle50),
    )
    add_latency(
        f"create -> Cancelled=True, {opts.running} Running polled, p90",
        "loaded_latency",
        90,
        f"<= 2x idle p90 + {slot * 1000:.0f} ms"
        + (f" = {(2 * idle90 + slot) * 1000:.0f} ms" if idle90 and idle90 != INF else ""),
        loaded_check(idle90),
    )

    heads = [TITLES[k] for k in results]
    lines = [
        "| measured in one run | " + " | ".join(heads) + " | this operator / raw | target "
        "(this operator) | result |",
        "|---|" + "---|" * (len(heads) + 3),
    ]
    for row in rows:
        cells = [row.values.get(k, "-") for k in results]
        lines.append(
            f"| {row.metric} | "
            + " | ".join(cells)
            + f" | {row.ratio} | {row.target} | {row.verdict} |"
        )
    return "\n".join(lines), not failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="raw loop vs textbook kopf vs this operator on one real kube-apiserver"
    )
    parser.add_argument(
        "--storm",
        type=int,
        default=1000,
        metavar="N",
        help="Cancelled objects waiting when each contender starts",
    )
    parser.add_argument(
        "--running",
        type=int,
        default=10_000,
        metavar="M",
        help="Running objects for the memory and loaded-latency phases",
    )
    parser.add_argument("--latency-samples", type=int, default=20, metavar="K")
    parser.add_argument(
        "--only", default=",".join(CONTENDERS), help="comma-separated subset of raw,kopf,operator"
    )
    parser.add_argument("--rtt", type=float, default=0.02, help="stand-in answer delay, s")
    parser.add_argument(
        "--storm-rate-limit",
        type=float,
        default=1000.0,
        help="this operator's --aws-rate-limit in the storm and memory phases",
    )
    parser.add_argument("--storm-rate-burst", type=float, default=100.0)
    parser.add_argument(
        "--quiet-poll-interval",
        type=float,
        default=600.0,
        help="poll interval of the storm and memory phases (no polling then)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="poll interval of the loaded phase (default: min(60, M / (2 x "
        "this operator's default rate)), so polling saturates its limit)",
    )
    parser.add_argument(
        "--sample-timeout",
        type=float,
        default=120.0,
        help="seconds one latency sample may take before sampling stops",
    )
    parser.add_argument("--phase-timeout", type=float, default=900.0)
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target of this operator is missed"
    )
    args = parser.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(only) - set(CONTENDERS)
    if unknown or not only:
        parser.error(f"--only takes a subset of {','.join(CONTENDERS)}")
    options = Options(
        storm=args.storm,
        running=args.running,
        samples=args.latency_samples,
        only=[c for c in CONTENDERS if c in only],
        rtt=args.rtt,
        storm_rate=args.storm_rate_limit,
        storm_burst=args.storm_rate_burst,
        quiet_poll=args.quiet_poll_interval,
        loaded_poll=args.poll_interval,
        sample_timeout=args.sample_timeout,
        phase_timeout=args.phase_timeout,
        strict=args.strict,
    )

    results: dict[str, Figures] = {}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        plane = ControlPlane(bin_dir=find_binaries())
        plane.start()
        stack.callback(plane.stop)
        plane.apply_crd(ROOT / "crds" / "datasyncexecution.yaml")
        standin = stack.enter_context(StandIn(free_port(), options.rtt))
        bench = Bench(options, plane, standin)
        stack.callback(bench.stop_trackers)
        for who in options.only:
            print(f"benchmark: {TITLES[who]} ...", file=sys.stderr, flush=True)
            results[who] = bench.run(who)
        table, met = report(bench, results)
        stand_in_counts = standin.counts()

    saturation = options.running / bench.loaded_poll
    print()
    print(
        f"operators side by side on one kube-apiserver ({plane_version()}), DataSync stand-in "
        f"answering in {options.rtt * 1000:.0f} ms, {os.cpu_count()} cores shared, "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print(
        f"- storm and memory phases: this operator with --aws-rate-limit {options.storm_rate:g} "
        f"--aws-rate-burst {options.storm_burst:g}; all with poll interval "
        f"{options.quiet_poll:g} s (no polling while measured); the peers have no rate limiter"
    )
    print(
        f"- loaded phase: poll interval {bench.loaded_poll:g} s for all, {options.running} "
        f"Running objects = {saturation:.0f} describes/s wanted; this operator at its default "
        f"rate limit ({bench.default_rate:g}/s, burst {bench.default_burst:g}); the peers have "
        "none"
    )
    print(
        f"- CPU: utime+stime of the process tree at the end of the storm minus the same at idle "
        f"after start-up; RSS: VmRSS; idle RSS after a {SETTLE_SECONDS:g} s settle once the "
        "watch is established; RSS per object: above the RSS just before the Running objects "
        "were created"
    )
    print(f"- stand-in totals: {json.dumps(stand_in_counts)}")
    print()
    print(table)
    print()
    failed_phase = False
    for who, figures in results.items():
        for note in figures.notes:
            print(f"note ({TITLES[who]}): {note}")
        for error in figures.errors:
            failed_phase = True
            print(f"ERROR ({TITLES[who]}): {error}")
    if "operator" not in results:
        print("targets of this operator: not measured (--only)")
    else:
        print(f"targets of this operator: {'all met' if met else 'NOT all met'}")
    if failed_phase:
        return 2
    return 1 if options.strict and not met else 0


def plane_version() -> str:
    go_mod = (ROOT / "tools" / "controlplane" / "go.mod").read_text()
    match = re.search(r"k8s\.io/kubernetes\s+(v[0-9.]+)", go_mod)
    return f"Kubernetes {match.group(1)}" if match else "Kubernetes"


if __name__ == "__main__":
    sys.exit(main())
