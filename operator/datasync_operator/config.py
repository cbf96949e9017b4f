"""The operator's configuration: one frozen value built by the CLI from flags and environment.

Pure data, and the one place where every default lives: the CLI (:mod:`.cli`) reads its
defaults from :data:`DEFAULTS`, and the README's configuration reference lists the same values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from datasync_operator.backoff import Backoff
from datasync_operator.datasync import ClientSettings
from datasync_operator.reconcile import Policy


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class LeaderElection:
    """Lease-based leader election between replicas (``coordination.k8s.io/v1`` Lease)."""

    lease_name: str = "datasync-operator"
    #: Namespace of the Lease; the CLI falls back to the pod's namespace, then "default".
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    #: This replica's identity in the Lease (default: the pod name plus a random suffix).
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    #: Namespaces to watch (glob patterns allowed); the CLI requires these or all_namespaces.
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness_endpoint: str | None = None
    #: Serve /readyz (see :mod:`.readiness`) at this URL; None: no readiness endpoint.
    readiness_endpoint: str | None = None
    #: Act alone (True), or elect a leader among replicas through a Lease (False).
    standalone: bool = True
    leader_election: LeaderElection = field(default_factory=LeaderElection)
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT
    retry_base_delay: float = 2.0
    retry_max_delay: float = 300.0
    stalled_recheck_interval: float = 600.0
    poll_interval: float = 60.0
    #: Most of a region's DataSync rate limit that polling may use (the rest is for cancels).
    poll_share: float = 0.5
    #: Reconciles running at once (each object is reconciled by at most one at a time).
    workers: int = 16
    #: How often the remembered objects are checked against a fresh list (ghosts dropped).
    resync_interval: float = 600.0
    metrics_enabled: bool = True
    metrics_port: int = 9090
    #: The address the metrics endpoint binds to (``0.0.0.0``: every IPv4 interface).
    metrics_address: str = "0.0.0.0"
    #: The operator's own AWS account: without access policies, only executions in it are
    #: allowed (None: not checked by the operator; AWS refuses other accounts to its identity).
    account_id: str | None = None
    #: Regions accepted besides those of botocore's endpoint data (regions opened since).
    extra_regions: tuple[str, ...] = ()
    aws: ClientSettings = field(default_factory=ClientSettings)

    @property
    def policy(self) -> Policy:
        return Policy(
            backoff=Backoff(base=self.retry_base_delay, cap=self.retry_max_delay),
            stalled_recheck=self.stalled_recheck_interval or None,
        )


#: Every default, in one place.
DEFAULTS = OperatorConfig()
