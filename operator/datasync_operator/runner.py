"""Starting the operator in-process: kopf, the controller, leader election, metrics, logging.

Called by :mod:`.cli` (``datasync-operator run``) and by tests that run the real operator in a
thread. Nothing here decides anything about DataSync: it only wires configuration together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading

import kopf

from datasync_operator.access import AccessDirectory
from datasync_operator.config import LogFormat, OperatorConfig
from datasync_operator.controller import Controller, ControllerSettings
from datasync_operator.datasync import DataSyncGateway
from datasync_operator.events import EventRecorder
from datasync_operator.handlers import EVENT_COMPONENT, login, register
from datasync_operator.kube import KubeClient
from datasync_operator.leadership import LeaderElector, LeaseSettings, default_identity
from datasync_operator.logs import ArnDirectory
from datasync_operator.metrics import Metrics
from datasync_operator.ratelimit import RegionalRateLimiter
from datasync_operator.readiness import Readiness
from datasync_operator.readiness import serve as serve_readiness
from datasync_operator.regions import KnownRegions

logger = logging.getLogger("datasync_operator")


def configure_logging(config: OperatorConfig, arns: ArnDirectory | None = None) -> None:
    """kopf's own formatters (text or JSON, with the object reference), at the chosen level."""
    as_json = config.log_format is LogFormat.JSON
    kopf.configure(
        log_format=kopf.LogFormat.JSON if as_json else kopf.LogFormat.FULL,
        log_refkey="object" if as_json else None,
        log_prefix=not as_json,
    )
    root = logging.getLogger()
    root.setLevel(config.log_level.upper())
    if arns is not None:
        for handler in root.handlers:
            handler.addFilter(arns)
    # botocore logs request details (headers included) at DEBUG: never let them through.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kopf's object lines are about its one handler, which only records the object: two lines
    # per watch event ("Handler 'observe' is invoked/succeeded") that say nothing the
    # controller's own lines do not. Its warnings and errors still come through.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def build_controller(
    config: OperatorConfig,
    kube: KubeClient,
    metrics: Metrics,
    *,
    leading: asyncio.Event | None = None,
    instance: str | None = None,
) -> Controller:
    gateway = DataSyncGateway(config.aws, metrics=metrics)
    events = EventRecorder(
        kube,
        component=EVENT_COMPONENT,
        instance=instance or os.environ.get("POD_NAME") or socket.gethostname(),
    )
    limiter = RegionalRateLimiter(config.aws.rate_limit, config.aws.rate_burst)
    settings = ControllerSettings(
        workers=config.workers,
        poll_interval=config.poll_interval,
        poll_share=config.poll_share,
        resync_interval=config.resync_interval,
    )
    return Controller(
        gateway,
        kube,
        metrics,
        config.policy,
        limiter,
        events,
        settings,
        # Nothing is decided until the access policies were listed once (the controller does).
        access=AccessDirectory(own_account=config.account_id),
        regions=KnownRegions.from_botocore(config.extra_regions, loader=gateway.loader),
        leading=leading,
    )


async def operate(
    config: OperatorConfig,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    metrics: Metrics | None = None,
    arns: ArnDirectory | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set or a signal stops it."""
    metrics = metrics or Metrics()
    kube = KubeClient(lambda: login(logger))
    elector: LeaderElector | None = None
    if not config.standalone:
        election = config.leader_election
        lease = LeaseSettings(
            namespace=election.lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
            name=election.lease_name,
            identity=election.identity or default_identity(),
            duration=election.lease_duration,
            renew_deadline=election.renew_deadline,
            retry_period=election.retry_period,
        )
        elector = LeaderElector(kube, lease)
    controller = build_controller(
        config, kube, metrics, leading=elector.leading if elector else None
    )
    metrics.conditions.attach(controller.condition_counts)
    metrics.active.attach(controller.is_leader)
    if arns is not None:
        arns.attach(controller.arn_of)
    if elector is not None:
        controller.inherited = lambda: elector.inherited
    election_task: asyncio.Task[None] | None = None
    readiness = Readiness(
        kube,
        all_namespaces=config.all_namespaces,
        namespaces=config.namespaces,
        election=elector,
    )
    readiness_tasks: list[asyncio.Task[None]] = []

    def start() -> None:
        nonlocal election_task
        controller.start()
        if elector is not None:
            election_task = asyncio.create_task(elector.run(), name="leader election")
        if config.readiness_endpoint:
            readiness.mark_started()
            readiness_tasks.extend([
                asyncio.create_task(readiness.run(), name="readiness checks"),
                asyncio.create_task(
                    serve_readiness(readiness, config.readiness_endpoint), name="readiness"
                ),
            ])

    async def cleanup() -> None:
        for task in readiness_tasks:
            task.cancel()
        await asyncio.gather(*readiness_tasks, return_exceptions=True)
        await controller.stop()
        if election_task is not None:
            election_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election_task
        controller.gateway.close()
        await kube.close()

    registry = kopf.OperatorRegistry()
    register(registry, controller, on_startup=start, on_cleanup=cleanup)
    scope = "all namespaces" if config.all_namespaces else f"namespaces {list(config.namespaces)}"
    mode = "standalone" if elector is None else f"leader election as {lease.identity}"
    logger.info("starting datasync-operator: %s, %s", scope, mode)
    await kopf.operator(
        registry=registry,
        standalone=True,  # replicas coordinate through the Lease, not kopf's peering
        clusterwide=config.all_namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run(config: OperatorConfig) -> None:
    arns = ArnDirectory()
    configure_logging(config, arns)
    metrics = Metrics()
    if config.metrics_enabled:
        metrics.serve(config.metrics_port, config.metrics_address)
        logger.info("serving metrics on %s:%d/metrics", config.metrics_address, config.metrics_port)
    asyncio.run(operate(config, metrics=metrics, arns=arns))
