"""The operator's configuration: one frozen value built by the CLI from flags and environment.

Pure data; every field has a CLI flag and an environment variable (see :mod:`.cli` and the
README's configuration reference).
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
class OperatorConfig:
    #: Namespaces to watch (glob patterns allowed); the CLI requires these or all_namespaces.
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness_endpoint: str | None = None
    standalone: bool = True
    peering_name: str = "datasync-operator"
    priority: int | None = None
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT
    retry_base_delay: float = 2.0
    retry_max_delay: float = 300.0
    stalled_recheck_interval: float = 600.0
    poll_interval: float = 60.0
    metrics_enabled: bool = True
    metrics_port: int = 9090
    aws: ClientSettings = field(default_factory=ClientSettings)

    @property
    def policy(self) -> Policy:
        return Policy(
            backoff=Backoff(base=self.retry_base_delay, cap=self.retry_max_delay),
            stalled_recheck=self.stalled_recheck_interval or None,
        )
