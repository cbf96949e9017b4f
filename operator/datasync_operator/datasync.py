"""The AWS adapter: DataSync calls through boto3, off the event loop, with errors classified.

This is the only module that talks to AWS. Clients are created once per region (the region and
partition come from the execution ARN), or per region and assumed role for ``spec.roleArn``,
and shared; botocore's own retries are switched off so that exactly one layer, the operator's
reconcile loop, owns the retry policy (see the README, "Retries"). The per-region rate limit is
the controller's (:mod:`.controller`): it waits for a slot on the event loop before a call is
handed to a thread here, so no thread ever sleeps holding one. Endpoints can be overridden
with the standard ``AWS_ENDPOINT_URL_DATASYNC`` / ``AWS_ENDPOINT_URL_STS`` /
``AWS_ENDPOINT_URL`` variables, which botocore reads itself.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session

from datasync_operator.arn import ExecutionArn
from datasync_operator.errors import AwsError, ErrorKind, classify, sanitize
from datasync_operator.execution import Description
from datasync_operator.metrics import NO_ERROR, Metrics

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
    """How DataSync clients are built and how fast they may call."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_pool_connections: int = 16
    #: DataSync calls per second per region, shared by all resources, and the burst allowed.
    rate_limit: float = 5.0
    rate_burst: float = 10.0
    #: Lifetime asked for assumed-role credentials (refreshed well before they expire).
    role_session_duration: int = 3600
    #: Most clients kept for (region, role, session) combinations; least recently used go first.
    max_clients: int = 512


@dataclass(frozen=True, slots=True)
class Target:
    """Which execution to call about, and as whom."""

    arn: ExecutionArn
    role_arn: str | None = None
    #: STS session name identifying the resource (used only with ``role_arn``).
    session_name: str | None = None


_SESSION_NAME_INVALID = re.compile(r"[^A-Za-z0-9+=,.@_-]")


def role_session_name(namespace: str, name: str) -> str:
    """An STS RoleSessionName (2-64 chars of ``[\\w+=,.@-]``) naming the resource."""
    raw = _SESSION_NAME_INVALID.sub("-", f"dse@{namespace}.{name}")
    return raw[:64]


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
        metrics: Metrics | None = None,
        executor: ThreadPoolExecutor | None = None,
        session_factory: Callable[[], boto3.session.Session] = boto3.session.Session,
    ) -> None:
        self._settings = settings or ClientSettings()
        self._metrics = metrics or Metrics()
        self._executor = executor or ThreadPoolExecutor(
            max_workers=self._settings.max_pool_connections,
            thread_name_prefix="datasync-aws",
        )
        self._session_factory = session_factory
        self._session: boto3.session.Session | None = None
        self._clients: OrderedDict[tuple[str, str | None, str | None], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._config = botocore.config.Config(
            connect_timeout=self._settings.connect_timeout,
            read_timeout=self._settings.read_timeout,
            max_pool_connections=self._settings.max_pool_connections,
            # One retry layer: the operator's. botocore makes exactly one attempt per call.
            retries={"total_max_attempts": 1, "mode": "standard"},
            user_agent_extra="datasync-operator",
        )

    def client(self, target: Target) -> Any:
        """The cached DataSync client for the target's region (and role), created on first use."""
        region = target.arn.region
        key = (region, target.role_arn, target.session_name if target.role_arn else None)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
            if self._session is None:
                self._session = self._session_factory()
            session = self._session
            if target.role_arn:
                session = self._assumed_session(region, target.role_arn, key[2] or "dse")
            found = session.client("datasync", region_name=region, config=self._config)
            self._clients[key] = found
            while len(self._clients) > self._settings.max_clients:
                _, evicted = self._clients.popitem(last=False)
                evicted.close()
            return found

    def _assumed_session(self, region: str, role_arn: str, session_name: str) -> Any:
        """A boto3 session whose credentials come from STS AssumeRole, refreshed before expiry.

        botocore's refreshable credentials renew them when less than 15 minutes remain (and
        must renew when less than 10 remain), inside whichever call needs them; STS failures
        then surface from that call like any AWS error.
        """
        base = self._session
        assert base is not None
        sts = base.client("sts", region_name=region, config=self._config)

        def fetch() -> dict[str, str]:
            started = time.perf_counter()
            try:
                answer = sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=session_name,
                    DurationSeconds=self._settings.role_session_duration,
                )
            except Exception as exc:
                self._record("AssumeRole", to_aws_error(exc).code, started)
                raise
            self._record("AssumeRole", None, started)
            credentials = answer["Credentials"]
            expiry = credentials["Expiration"]
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
            }

        refreshable = botocore.credentials.DeferredRefreshableCredentials(
            refresh_using=fetch, method="sts-assume-role"
        )
        core = botocore.session.get_session()
        core._credentials = refreshable  # type: ignore[attr-defined]  # no public setter
        return boto3.session.Session(botocore_session=core)

    async def cancel(self, target: Target) -> None:
        """CancelTaskExecution; raises :class:`AwsError` on any failure."""
        await self._call(
            target,
            "CancelTaskExecution",
            lambda: self.client(target).cancel_task_execution(TaskExecutionArn=str(target.arn)),
        )

    async def describe(self, target: Target) -> Description:
        """DescribeTaskExecution; raises :class:`AwsError` on any failure."""
        answer: dict[str, Any] = await self._call(
            target,
            "DescribeTaskExecution",
            lambda: self.client(target).describe_task_execution(TaskExecutionArn=str(target.arn)),
        )
        return describe_answer(answer)

    async def _call(self, target: Target, operation: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, call)
        except Exception as exc:
            error = to_aws_error(exc)
            self._record(operation, error.code, started)
            raise error from None
        self._record(operation, None, started)
        return result

    def _record(self, operation: str, error_code: str | None, started: float) -> None:
        self._metrics.aws_calls.labels(operation, error_code or NO_ERROR).inc()
        self._metrics.aws_latency.labels(operation).observe(time.perf_counter() - started)

    def close(self) -> None:
        """Close the clients and the threads (after the controller has stopped its workers)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def describe_answer(answer: dict[str, Any]) -> Description:
    """A :class:`Description` from a DescribeTaskExecution answer (missing fields stay None)."""
    result = answer.get("Result") or {}
    start = answer.get("StartTime")

    def count(key: str) -> int | None:
        value = answer.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def text(value: object) -> str | None:
        return str(value) if value else None

    return Description(
        status=str(answer.get("Status") or "UNKNOWN"),
        error_code=text(result.get("ErrorCode")),
        error_detail=text(result.get("ErrorDetail")),
        start_time=(start.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(start, datetime) else None),
        estimated_files_to_transfer=count("EstimatedFilesToTransfer"),
        estimated_bytes_to_transfer=count("EstimatedBytesToTransfer"),
        files_transferred=count("FilesTransferred"),
        bytes_transferred=count("BytesTransferred"),
        bytes_written=count("BytesWritten"),
        prepare_status=text(result.get("PrepareStatus")),
        transfer_status=text(result.get("TransferStatus")),
        verify_status=text(result.get("VerifyStatus")),
    )
