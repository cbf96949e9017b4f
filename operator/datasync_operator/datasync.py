"""The AWS adapter: DataSync calls through boto3, off the event loop, with errors classified.

This is the only module that talks to AWS. One botocore session (one loader, so botocore's
endpoint data and service models are read once) serves the whole process, and one DataSync
client per region (the region and partition come from the execution ARN) serves every identity.
A call made as an assumed role (chosen by the access decision, :mod:`.access`) is signed with
that role's credentials through botocore's per-request credentials (the ``before-sign`` hook
of :meth:`DataSyncGateway._sign_as`), so a role costs its credentials, not a client (each
client holds its own HTTP pool and TLS context: about half a MiB). Assumed credentials come from
STS ``AssumeRole`` with the namespace as a session tag (and the policy's ExternalId), are cached
per (role, namespace) and shared by every resource there, and are renewed before they expire.

botocore's own retries are switched off so that exactly one layer, the operator's reconcile
loop, owns the retry policy (see the README, "Retries"). The per-region rate limit is the
controller's (:mod:`.controller`): it waits for a slot on the event loop before a call is
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
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session

from datasync_operator.access import AssumedRole
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
#: botocore refused to build the request: retrying the same spec can never succeed.
_INPUT_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.ParamValidationError,
    botocore.exceptions.ValidationError,  # InvalidRegionError among others
    botocore.exceptions.UnknownEndpointError,
    botocore.exceptions.NoRegionError,
)

#: The session tag that carries the resource's namespace (EKS Pod Identity's key), for trust
#: policies that restrict by ``aws:RequestTag/kubernetes-namespace``.
NAMESPACE_TAG = "kubernetes-namespace"
#: Assumed credentials are renewed when less than this is left (botocore's advisory window)...
ADVISORY_REFRESH = timedelta(minutes=15)
#: ... and, if STS fails meanwhile, used until this is left (botocore's mandatory window).
MANDATORY_REFRESH = timedelta(minutes=10)


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
    #: Most (role, namespace) credentials kept; the least recently used go first.
    max_identities: int = 4096


@dataclass(frozen=True, slots=True)
class Target:
    """Which execution to call about, and as whom."""

    arn: ExecutionArn
    #: The role to assume (the access decision's), or None: the operator's own identity.
    role: AssumedRole | None = None
    #: The resource's namespace: the session tag of an assumed role, and its cache key.
    namespace: str = ""


_SESSION_NAME_INVALID = re.compile(r"[^A-Za-z0-9+=,.@_-]")


def role_session_name(namespace: str) -> str:
    """An STS RoleSessionName (2-64 chars of ``[\\w+=,.@-]``) naming the namespace."""
    raw = _SESSION_NAME_INVALID.sub("-", f"dse@{namespace}")
    return raw[:64]


def session_tags(namespace: str) -> list[dict[str, str]]:
    """The session tags of an assumed role for ``namespace``."""
    return [{"Key": NAMESPACE_TAG, "Value": namespace}]


#: (role ARN, namespace, ExternalId): one set of assumed credentials.
Identity = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True, repr=False)
class _Assumed:
    """Temporary credentials from STS for one :data:`Identity` (repr shows no secret)."""

    credentials: botocore.credentials.Credentials
    expires: datetime

    def __repr__(self) -> str:
        return f"_Assumed(expires={self.expires.isoformat()})"

    def left(self, now: datetime) -> timedelta:
        return self.expires - now


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
    if isinstance(exc, _INPUT_ERRORS):
        return AwsError(ErrorKind.INVALID_INPUT, type(exc).__name__, sanitize(str(exc)))
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
        session: botocore.session.Session | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings or ClientSettings()
        self._metrics = metrics or Metrics()
        self._executor = executor or ThreadPoolExecutor(
            max_workers=self._settings.max_pool_connections,
            thread_name_prefix="datasync-aws",
        )
        #: The one botocore session (and loader) of the process.
        self.session = session or botocore.session.get_session()
        self._clock = clock
        #: One DataSync client per region, and one STS client per region.
        self._clients: dict[str, Any] = {}
        self._sts: dict[str, Any] = {}
        self._assumed: OrderedDict[Identity, _Assumed] = OrderedDict()
        self._assuming: dict[Identity, threading.Lock] = {}
        self._lock = threading.Lock()
        #: The credentials of the call the current thread is making (None: the operator's own).
        self._signing = threading.local()
        self._config = botocore.config.Config(
            connect_timeout=self._settings.connect_timeout,
            read_timeout=self._settings.read_timeout,
            max_pool_connections=self._settings.max_pool_connections,
            # One retry layer: the operator's. botocore makes exactly one attempt per call.
            retries={"total_max_attempts": 1, "mode": "standard"},
            user_agent_extra="datasync-operator",
        )

    @property
    def loader(self) -> Any:
        """botocore's data loader of the one session (endpoint data, service models)."""
        return self.session.get_component("data_loader")

    def client(self, region: str) -> Any:
        """The DataSync client of ``region`` (for every identity), created on first use."""
        with self._lock:
            found = self._clients.get(region)
            if found is None:
                found = self.session.create_client(
                    "datasync", region_name=region, config=self._config
                )
                found.meta.events.register("before-sign.datasync", self._sign_as)
                self._clients[region] = found
            return found

    def _sign_as(self, request: Any, **_: Any) -> None:
        """Sign this thread's request with the assumed role's credentials, if it has one.

        botocore reads ``request.context["signing"]["request_credentials"]`` right after
        ``before-sign`` (``RequestSigner.sign``) and signs with them instead of the client's.
        """
        credentials = getattr(self._signing, "credentials", None)
        if credentials is not None:
            request.context.setdefault("signing", {})["request_credentials"] = credentials

    def _as_target(self, target: Target, call: Callable[[Any], T]) -> T:
        """Run ``call(client)`` (in a worker thread) as the target's identity."""
        client = self.client(target.arn.region)
        if target.role is None:
            return call(client)
        identity: Identity = (target.role.role_arn, target.namespace, target.role.external_id)
        assumed = self._credentials(identity, target.arn.region)
        self._signing.credentials = assumed.credentials
        try:
            return call(client)
        finally:
            self._signing.credentials = None

    def _credentials(self, identity: Identity, region: str) -> _Assumed:
        """The cached credentials of ``identity``, from STS when missing or about to expire.

        One AssumeRole at a time per identity: the resources of one (role, namespace) that
        start together share one call. Credentials with less than 15 minutes left are renewed;
        if STS fails then, they are used until 10 minutes are left, as botocore does.
        """
        with self._lock:
            current = self._assumed.get(identity)
            if current is not None and current.left(self._clock()) > ADVISORY_REFRESH:
                self._assumed.move_to_end(identity)
                return current
            lock = self._assuming.setdefault(identity, threading.Lock())
        with lock:
            with self._lock:
                current = self._assumed.get(identity)
                if current is not None and current.left(self._clock()) > ADVISORY_REFRESH:
                    return current  # renewed by another thread meanwhile
            try:
                fresh = self._assume_role(identity, region)
            except Exception:
                if current is not None and current.left(self._clock()) > MANDATORY_REFRESH:
                    return current
                raise
            with self._lock:
                self._assumed[identity] = fresh
                self._assumed.move_to_end(identity)
                while len(self._assumed) > self._settings.max_identities:
                    evicted, _ = self._assumed.popitem(last=False)
                    self._assuming.pop(evicted, None)
            return fresh

    def _assume_role(self, identity: Identity, region: str) -> _Assumed:
        """STS AssumeRole for ``identity``, tagged with its namespace (in a worker thread)."""
        role_arn, namespace, external_id = identity
        with self._lock:
            sts: Any = self._sts.get(region)
            if sts is None:
                sts = self._sts[region] = self.session.create_client(
                    "sts", region_name=region, config=self._config
                )
        request: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": role_session_name(namespace),
            "DurationSeconds": self._settings.role_session_duration,
            "Tags": session_tags(namespace),
        }
        if external_id is not None:
            request["ExternalId"] = external_id
        started = time.perf_counter()
        try:
            answer = sts.assume_role(**request)
        except Exception as exc:
            self._record("AssumeRole", to_aws_error(exc).code, started)
            raise
        self._record("AssumeRole", None, started)
        credentials = answer["Credentials"]
        expires = credentials["Expiration"]
        if not isinstance(expires, datetime):
            expires = datetime.fromisoformat(str(expires))
        return _Assumed(
            botocore.credentials.Credentials(
                credentials["AccessKeyId"],
                credentials["SecretAccessKey"],
                credentials["SessionToken"],
                method="sts-assume-role",
            ),
            expires=expires if expires.tzinfo else expires.replace(tzinfo=UTC),
        )

    async def cancel(self, target: Target) -> None:
        """CancelTaskExecution; raises :class:`AwsError` on any failure."""
        await self._call(
            target,
            "CancelTaskExecution",
            lambda: self._as_target(
                target,
                lambda client: client.cancel_task_execution(TaskExecutionArn=str(target.arn)),
            ),
        )

    async def describe(self, target: Target) -> Description:
        """DescribeTaskExecution; raises :class:`AwsError` on any failure."""
        answer: dict[str, Any] = await self._call(
            target,
            "DescribeTaskExecution",
            lambda: self._as_target(
                target,
                lambda client: client.describe_task_execution(TaskExecutionArn=str(target.arn)),
            ),
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
            for client in self._sts.values():
                client.close()
            self._clients.clear()
            self._sts.clear()
            self._assumed.clear()


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
