"""Starting kopf in-process with the operator's registry, settings and logging.

Called by :mod:`.cli` (``datasync-operator run``) and by tests that run the real operator in a
thread. Nothing here decides anything about DataSync: it only wires configuration into kopf.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading

import kopf

from datasync_operator.config import LogFormat, OperatorConfig
from datasync_operator.datasync import DataSyncGateway
from datasync_operator.handlers import register
from datasync_operator.logs import ArnDirectory
from datasync_operator.metrics import Metrics

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
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_registry(
    config: OperatorConfig,
    gateway: DataSyncGateway,
    metrics: Metrics,
    arns: ArnDirectory | None = None,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    register(registry, config, gateway, metrics, arns)
    return registry


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
    gateway = DataSyncGateway(config.aws, metrics=metrics)
    registry = build_registry(config, gateway, metrics, arns)
    priority = config.priority
    if not config.standalone and priority is None:
        # kopf peering pauses replicas of equal priority: give each replica a distinct one.
        priority = random.SystemRandom().randint(1, 2**31 - 1)
    scope = "all namespaces" if config.all_namespaces else f"namespaces {list(config.namespaces)}"
    mode = "standalone" if config.standalone else f"peering {config.peering_name!r} ({priority})"
    logger.info("starting datasync-operator: %s, %s", scope, mode)
    await kopf.operator(
        registry=registry,
        standalone=config.standalone,
        peering_name=None if config.standalone else config.peering_name,
        priority=priority or 0,
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
        metrics.serve(config.metrics_port)
        logger.info("serving metrics on :%d/metrics", config.metrics_port)
    asyncio.run(operate(config, metrics=metrics, arns=arns))
