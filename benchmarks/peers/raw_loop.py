"""A raw DataSyncExecution controller, as a user would write it without a framework (a peer).

The benchmark's baseline: the ``kubernetes`` client, one thread doing list+watch of
DataSyncExecutions in one namespace, a pool of worker threads (16 by default) that cancel:
for each object with ``spec.desiredState: Cancelled`` and no ``Cancelled=True`` condition,
one ``CancelTaskExecution`` (boto3, one client per region) and then ONE merge PATCH of
``/status`` with the Ready/Cancelled conditions (reason ``CancelAccepted``) and
``observedGeneration``. A simple polling loop describes every ``Running`` object every
``--poll-interval`` seconds (the first time when it is first seen, through its own pool of as
many threads) and patches ``status.executionStatus`` (and ``observedGeneration``) when it
changed. No rate limit, no backoff beyond "try again in a second", no finalizers::

    KUBECONFIG=... AWS_ENDPOINT_URL_DATASYNC=... python benchmarks/peers/raw_loop.py -n NS
"""

from __future__ import annotations

import argparse
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from kubernetes import client, config, watch

GROUP, VERSION, PLURAL = "datasync.operator.io", "v1alpha1", "datasyncexecutions"

log = logging.getLogger("raw-loop")


@dataclass
class Seen:
    """What the loop keeps per object: enough to decide, not the whole body."""

    arn: str
    desired: str
    generation: int
    cancelled: bool
    execution_status: str | None
    next_poll: float = 0.0


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RawLoop:
    def __init__(self, namespace: str, threads: int, poll_interval: float) -> None:
        self.namespace = namespace
        self.threads = threads
        self.poll_interval = poll_interval
        configuration = client.Configuration()
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = 2 * threads + 4
        self.api = client.CustomObjectsApi(client.ApiClient(configuration))
        self.objects: dict[str, Seen] = {}
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.work: queue.Queue[str] = queue.Queue()
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    def datasync(self, arn: str) -> Any:
        region = arn.split(":")[3]
        with self._clients_lock:
            if region not in self._clients:
                self._clients[region] = boto3.client(
                    "datasync",
                    region_name=region,
                    config=Config(max_pool_connections=2 * self.threads),
                )
            return self._clients[region]

    # --- watching ---

    def observe(self, kind: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if kind == "DELETED":
            with self.lock:
                self.objects.pop(name, None)
            return
        spec, status = body.get("spec", {}), body.get("status") or {}
        cancelled = any(
            c.get("type") == "Cancelled" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        seen = Seen(
            arn=spec.get("executionArn", ""),
            desired=spec.get("desiredState", "Running"),
            generation=int(body["metadata"].get("generation", 1)),
            cancelled=cancelled,
            execution_status=status.get("executionStatus"),
        )
        with self.lock:
            old = self.objects.get(name)
            if old is not None:
                seen.next_poll = old.next_poll
            self.objects[name] = seen
            wanted = seen.desired == "Cancelled" and not seen.cancelled
            if wanted and name not in self.pending:
                self.pending.add(name)
                self.work.put(name)

    def watch_forever(self) -> None:
        while True:
            try:
                listed: Any = self.api.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
                for item in listed["items"]:
                    self.observe("ADDED", item)
                version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=version,
                )
                for event in stream:
                    self.observe(event["type"], event["object"])
            except Exception:
                log.exception("watch failed; listing again in 1 s")
                time.sleep(1)

    # --- cancelling ---

    def worker(self) -> None:
        while True:
            name = self.work.get()
            try:
                self.cancel(name)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidRequestException":
                    log.warning("cancel of %s failed (%s); again in 1 s", name, exc)
                    threading.Timer(1.0, self.work.put, args=(name,)).start()
                    continue
                log.warning("cancel of %s rejected, not retried: %s", name, exc)
            except Exception:
                log.exception("cancel of %s failed; again in 1 s", name)
                threading.Timer(1.0, self.work.put, args=(name,)).start()
                continue
            with self.lock:
                self.pending.discard(name)

    def cancel(self, name: str) -> None:
        with self.lock:
            seen = self.objects.get(name)
        if seen is None or seen.cancelled or seen.desired != "Cancelled":
            return
        self.datasync(seen.arn).cancel_task_execution(TaskExecutionArn=seen.arn)
        stamp = now_iso()
        conditions = [
            {
                "type": kind,
                "status": "True",
                "reason": "CancelAccepted",
                "message": "DataSync accepted CancelTaskExecution",
                "lastTransitionTime": stamp,
                "observedGeneration": seen.generation,
            }
            for kind in ("Ready", "Cancelled")
        ]
        self.api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"status": {"conditions": conditions, "observedGeneration": seen.generation}},
        )
        with self.lock:
            seen.cancelled = True

    # --- polling ---

    def poll_forever(self) -> None:
        with ThreadPoolExecutor(self.threads) as pool:
            while True:
                moment = time.monotonic()
                with self.lock:
                    due = [
                        (name, seen)
                        for name, seen in self.objects.items()
                        if seen.desired == "Running" and seen.next_poll <= moment
                    ]
                    for _, seen in due:
                        seen.next_poll = moment + self.poll_interval
                for name, failure in zip(due, pool.map(self.refresh, due), strict=True):
                    if failure is not None:
                        log.warning("describe of %s failed: %s", name[0], failure)
                time.sleep(0.2 if not due else 0)

    def refresh(self, item: tuple[str, Seen]) -> Exception | None:
        name, seen = item
        try:
            described = self.datasync(seen.arn).describe_task_execution(TaskExecutionArn=seen.arn)
            status = described["Status"]
            if status != seen.execution_status:
                self.api.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    name,
                    {"status": {"executionStatus": status, "observedGeneration": seen.generation}},
                )
                seen.execution_status = status
        except Exception as exc:
            return exc
        return None

    def run(self) -> None:
        for _ in range(self.threads):
            threading.Thread(target=self.worker, daemon=True).start()
        if self.poll_interval > 0:
            threading.Thread(target=self.poll_forever, daemon=True).start()
        self.watch_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="a raw list+watch DataSyncExecution loop")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--poll-interval", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    RawLoop(args.namespace, args.threads, args.poll_interval).run()


if __name__ == "__main__":
    main()
