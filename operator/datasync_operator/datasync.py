"""The AWS adapter: DataSync calls through boto3, off the event loop, with errors classified.

This is the only module that talks to AWS. Clients are created once per region (the region and
partition come from the execution ARN) and shared by all resources; botocore's own retries are
switched off so that exactly one layer, the operator's reconcile loop, owns the retry policy
(see the README, "Retries"). The endpoint can be overridden with the standard
``AWS_ENDPOINT_URL_DATASYNC`` / ``AWS_ENDPOINT_URL`` variables, which botocore reads itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from datasync_operator.arn import ExecutionArn
from datasync_operator.errors import AwsError, ErrorKind, classify, sanitize
from datasync_operator.execution import Description

T = TypeVar("T")

_NETWORK_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ...
    botocore.exceptions.HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ...
)
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.NoAuthTokenError,
)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How DataSync clients are built."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_pool_connections: int = 16


def to_aws_error(exc: BaseException) -> AwsError:
    """Reduce any failure of a boto3 call to an :class:`AwsError` (never raises)."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        http_status = meta.get("HTTPStatusCode")
        http_status = http_status if isinstance(http_status, int) else None
        return AwsError(
            kind=classify(code, http_status),
            code=code,
            message=sanitize(str(error.get("Message") or code)),
            http_status=http_status,
            request_id=meta.get("RequestId") or None,
        )
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return AwsError(ErrorKind.ACCESS_DENIED, type(exc).__name__, sanitize(str(exc)))
    if isinstance(exc, _NETWORK_ERRORS):
        return AwsError(ErrorKind.NETWORK, type(exc).__name__, sanitize(str(exc)))
    return AwsError(ErrorKind.UNEXPECTED, type(exc).__name__, sanitize(str(exc)))


class DataSyncGateway:
    """Cancels and describes task executions; safe to share between all handlers."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        executor: ThreadPoolExecutor | None = None,
        session_factory: Callable[[], boto3.session.Session] = boto3.session.Session,
    ) -> None:
        self._settings = settings or ClientSettings()
        self._executor = executor or ThreadPoolExecutor(
            max_workers=self._settings.max_pool_connections,
            thread_name_prefix="datasync-aws",
        )
        self._session_factory = session_factory
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._config = botocore.config.Config(
            connect_timeout=self._settings.connect_timeout,
            read_timeout=self._settings.read_timeout,
            max_pool_connections=self._settings.max_pool_connections,
            # One retry layer: the operator's. botocore makes exactly one attempt per call.
            retries={"total_max_attempts": 1, "mode": "standard"},
            user_agent_extra="datasync-operator",
        )

    def client(self, region: str) -> Any:
        """The cached DataSync client of ``region`` (created on first use, thread-safe)."""
        with self._lock:
            found = self._clients.get(region)
            if found is None:
                if self._session is None:
                    self._session = self._session_factory()
                found = self._session.client("datasync", region_name=region, config=self._config)
                self._clients[region] = found
            return found

    async def cancel(self, arn: ExecutionArn) -> None:
        """CancelTaskExecution; raises :class:`AwsError` on any failure."""
        await self._call(lambda: self.client(arn.region).cancel_task_execution(
            TaskExecutionArn=str(arn)
        ))

    async def describe(self, arn: ExecutionArn) -> Description:
        """DescribeTaskExecution; raises :class:`AwsError` on any failure."""
        answer: dict[str, Any] = await self._call(
            lambda: self.client(arn.region).describe_task_execution(TaskExecutionArn=str(arn))
        )
        result = answer.get("Result") or {}
        return Description(
            status=str(answer.get("Status") or "UNKNOWN"),
            error_code=result.get("ErrorCode") or None,
            error_detail=result.get("ErrorDetail") or None,
        )

    async def _call(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, call)
        except Exception as exc:
            raise to_aws_error(exc) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
