"""An HTTP reverse proxy in front of moto's server that counts DataSync calls and injects faults.

moto has no fault injection, so the integration tier points boto3 (and the operator) at a
``FaultProxy`` instead of at moto: every request is counted per DataSync operation, and
programmed faults are answered in place of (or after) forwarding to moto. The proxy is a
``ThreadingHTTPServer`` on a free 127.0.0.1 port in a background thread (one thread per
connection, HTTP/1.1 keep-alive like AWS), so it works for plain synchronous tests and while an
asyncio operator runs in another thread or process. Every method is thread-safe.

The operation is the part after the dot of the ``X-Amz-Target`` header that botocore sends for
DataSync's JSON 1.1 protocol (``X-Amz-Target: FmrsService.CancelTaskExecution`` ->
``"CancelTaskExecution"``). botocore 1.44's model lists ``smithy-rpc-v2-cbor`` first for
DataSync, but botocore prefers ``json``, so requests are ``POST /`` with that header. Requests
without the header are counted as ``"<unknown>"``.

Faults are queued per operation and consumed in order, one per request: after
``proxy.fail("CancelTaskExecution", times=3)`` the next three cancels get HTTP 500 and the
fourth reaches moto. ``times=None`` keeps a fault until ``clear_faults()``. Counting includes
faulted requests (it counts what reached the proxy). Faulted answers look like AWS JSON 1.1
errors: ``Content-Type: application/x-amz-json-1.1``, an ``x-amzn-RequestId`` header and a
body ``{"__type": "<code>", "message": "<message>"}``. ``answer()`` sends a body of the test's
choosing instead (any status, 200 by default), e.g. a success that moto would never give.

What botocore 1.44 makes of each fault (asserted in ``tests/integration/test_harness.py``):

- ``fail()`` (HTTP 500 ``InternalException``): ``ClientError`` with
  ``response["Error"]["Code"] == "InternalException"`` and
  ``response["ResponseMetadata"]["HTTPStatusCode"] == 500``; with boto3's client it is the
  modelled ``client.exceptions.InternalException`` (a ``ClientError`` subclass). Retried by the
  ``standard`` retry mode (any 500/502/503/504).
- ``throttle()`` (HTTP 400 ``ThrottlingException``): ``ClientError`` with code
  ``ThrottlingException`` and status 400 (not a modelled DataSync error, so the plain
  ``ClientError`` class). botocore's throttling codes include ``Throttling``,
  ``ThrottlingException``, ``ThrottledException``, ``RequestThrottledException``,
  ``TooManyRequestsException``, ``RequestLimitExceeded``, ``LimitExceededException``, ... (see
  ``botocore.retries.standard.ThrottledRetryableChecker``) plus any HTTP 429.
- ``reset_connection()`` / ``forward_then_reset()``: ``botocore.exceptions.ConnectionClosedError``
  (botocore wraps urllib3's ``ProtocolError``; the class is an ``HTTPClientError``, NOT a
  ``botocore.exceptions.ConnectionError``).
- ``delay()`` longer than the client's ``read_timeout``: ``botocore.exceptions.ReadTimeoutError``
  (also an ``HTTPClientError``). The delayed request still reaches moto after the delay (unless
  the proxy stops first), like a slow server that eventually acts.
- ``forward_then_hang()``: the request takes effect in moto; the client sees nothing until
  ``release()`` (then the real answer) or ``release(deliver=False)``/``stop()`` (then a
  ``ConnectionClosedError``), or its own ``ReadTimeoutError``.
- ``answer(op, {"Status": "HIBERNATING", ...})``: a 200 that botocore parses like any answer
  (unknown enum values pass through). ``answer(op, b"\\xff...")``: a 200 whose body is not
  UTF-8, which botocore's JSON parser cannot decode: ``UnicodeDecodeError`` (not a botocore
  exception at all).

botocore's default ``standard`` retry mode (3 attempts in total) retries all of these itself:
HTTP 500/502/503/504, the throttling codes, and ``HTTPClientError``/``ConnectionError``; every
attempt is one request here, so ``calls()`` counts botocore's retries too.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import http.client
import http.server
import json
import logging
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from botocore.config import Config

from tests.support.moto_server import datasync_client
from tests.support.service import Service

__all__ = ["Fault", "FaultKind", "FaultProxy", "ProxiedRequest", "Reached"]

logger = logging.getLogger(__name__)

UNKNOWN_OPERATION = "<unknown>"
AMZ_JSON = "application/x-amz-json-1.1"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


class FaultKind(enum.Enum):
    """What the proxy does to one request instead of simply forwarding it."""

    ERROR = "error"  # answer an AWS JSON error (or a given body), never forward
    RESET = "reset"  # read the request, then drop the connection (TCP RST), never forward
    DELAY = "delay"  # wait, then forward normally
    FORWARD_THEN_HANG = "forward-then-hang"  # forward, hold the answer until released
    FORWARD_THEN_RESET = "forward-then-reset"  # forward, then drop the connection


@dataclass
class Fault:
    """One programmed fault; ``remaining=None`` means until ``clear_faults()``."""

    kind: FaultKind
    remaining: int | None = 1
    status: int = 500
    code: str = "InternalException"
    message: str = "An internal error occurred (injected by FaultProxy)."
    extra: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: Answer in the XML of query-protocol services (STS) instead of AWS JSON.
    xml: bool = False
    #: Answer exactly these bytes (with ``status``, as AWS JSON) instead of an error body.
    body: bytes | None = None


@dataclass(frozen=True)
class ProxiedRequest:
    """A request that reached the proxy: its operation, JSON body and the fault applied."""

    operation: str
    body: Mapping[str, Any]
    fault: FaultKind | None
    #: The access key id the request was signed with (from its SigV4 Authorization header).
    access_key_id: str | None = None
    #: When it arrived (``time.monotonic()``).
    at: float = 0.0


@dataclass(frozen=True)
class Reached:
    """A request that was forwarded to moto (it took effect there) and moto's HTTP status."""

    operation: str
    arn: str
    status: int
    at: float


@dataclass(eq=False)
class _Held:
    operation: str
    released: threading.Event = field(default_factory=threading.Event)
    deliver: bool = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads: no leaks

    def __init__(self, proxy: FaultProxy, address: tuple[str, int]) -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.aborted: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("fault-proxy: error serving %s", client_address, exc_info=True)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            aborted = request in self.aborted
            self.aborted.discard(request)
            self.connections.discard(request)
        if aborted:
            self.close_request(request)  # SO_LINGER=0 is set: close() sends RST, no FIN first
        else:
            super().shutdown_request(request)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like AWS endpoints
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fault-proxy: " + format, *args)

    def do_POST(self) -> None:
        self._guarded()

    def do_GET(self) -> None:
        self._guarded()

    def _guarded(self) -> None:
        try:
            self._proxy()
        except (BrokenPipeError, ConnectionResetError) as exc:  # the client went away
            logger.debug("fault-proxy: client gone: %r", exc)
            self.close_connection = True

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target") or ""
        operation = target.rsplit(".", 1)[-1] if target else UNKNOWN_OPERATION
        proxy = self.server.proxy
        credential = re.search(r"Credential=([^/,\s]+)/", self.headers.get("Authorization") or "")
        fault = proxy._arrive(operation, body, credential.group(1) if credential else None)
        kind = fault.kind if fault is not None else None

        if kind is FaultKind.ERROR:
            assert fault is not None
            self._send_error(fault)
            return
        if kind is FaultKind.RESET:
            self._abort()
            return
        if kind is FaultKind.DELAY:
            assert fault is not None
            if proxy._stopping.wait(fault.seconds):
                self._abort()
                return

        try:
            status, reason, headers, payload = self._forward(body)
            proxy._reached(operation, body, status)
        except OSError as exc:
            logger.warning("fault-proxy: forwarding %s to moto failed: %r", operation, exc)
            self._send_error(
                Fault(
                    FaultKind.ERROR,
                    status=502,
                    code="InternalException",
                    message=f"FaultProxy could not reach moto: {exc!r}",
                )
            )
            return

        if kind is FaultKind.FORWARD_THEN_RESET:
            self._abort()
            return
        if kind is FaultKind.FORWARD_THEN_HANG:
            held = proxy._hold(operation)
            held.released.wait()
            if not held.deliver:
                self._abort()
                return

        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = urllib.parse.urlsplit(self.server.proxy.upstream_url)
        conn = http.client.HTTPConnection(
            upstream.hostname or "127.0.0.1",
            upstream.port or 80,
            timeout=self.server.proxy.upstream_timeout,
        )
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            conn.close()

    def _send_error(self, fault: Fault) -> None:
        if fault.body is not None:  # answer(): the test's own body, as AWS JSON
            data, content_type = fault.body, AMZ_JSON
        elif fault.xml:  # query-protocol services (STS) answer errors in XML
            payload = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{fault.code}</Code><Message>{fault.message}</Message>"
                f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            )
            data, content_type = payload.encode(), "text/xml"
        else:
            payload = json.dumps({"__type": fault.code, "message": fault.message, **fault.extra})
            data, content_type = payload.encode(), AMZ_JSON
        self.send_response(fault.status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _abort(self) -> None:
        """Drop the connection without an answer: RST instead of a graceful FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.server.connections_lock:
            self.server.aborted.add(self.connection)


class FaultProxy(Service):
    """A counting, fault-injecting reverse proxy to ``upstream_url`` (moto's server).

    Use it as a context manager or call ``start()``/``stop()``. ``url`` is what boto3 (or the
    operator) gets as its ``endpoint_url``.
    """

    def __init__(
        self,
        upstream_url: str,
        host: str = "127.0.0.1",
        upstream_timeout: float = 30.0,
    ) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.host = host
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._requests: list[ProxiedRequest] = []
        self._faults: dict[str, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )
        self._held: list[_Held] = []
        self._reached_log: list[Reached] = []
        self._random_rate = 0.0
        self._random_faults: list[Fault] = []
        self._rng = random.Random()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fault proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the fault proxy is already started")
        self._stopping.clear()
        self._server = _Server(self, (self.host, 0))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fault-proxy-{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held answers are dropped, delays cut short, connections closed."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()  # the accept loop
        self.release(deliver=False)
        with server.connections_lock:
            connections = list(server.connections)
        for sock in connections:  # wake handler threads blocked reading idle keep-alives
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


    def client(self, region: str = "us-east-1", config: Config | None = None) -> Any:
        """A boto3 DataSync client whose ``endpoint_url`` is this proxy."""
        return datasync_client(self.url, region, config)

    # -- counting --------------------------------------------------------------------------

    def calls(self, operation: str) -> int:
        """How many requests for ``operation`` reached the proxy (faulted ones included)."""
        with self._lock:
            return self._counts[operation]

    def total_calls(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def requests(self, operation: str | None = None) -> list[ProxiedRequest]:
        """The requests that reached the proxy, in order (optionally of one operation)."""
        with self._lock:
            return [r for r in self._requests if operation is None or r.operation == operation]

    def reset_counts(self) -> None:
        """Forget counts and recorded requests (faults stay queued)."""
        with self._lock:
            self._counts.clear()
            self._requests.clear()
            self._reached_log.clear()

    # -- programming faults ----------------------------------------------------------------

    def add_fault(self, operation: str, fault: Fault) -> None:
        """Queue ``fault`` for the next requests of ``operation`` (after earlier faults)."""
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("a fault must apply at least once (or remaining=None)")
        with self._lock:
            self._faults[operation].append(fault)

    def fail(
        self,
        operation: str,
        times: int | None = 1,
        status: int = 500,
        code: str = "InternalException",
        message: str = "An internal error occurred (injected by FaultProxy).",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` requests with an AWS JSON error instead of forwarding.

        ``extra`` adds body members, e.g. ``{"errorCode": "..."}`` for DataSync's exceptions.
        """
        self.add_fault(
            operation,
            Fault(
                FaultKind.ERROR,
                remaining=times,
                status=status,
                code=code,
                message=message,
                extra=dict(extra or {}),
            ),
        )

    def answer(
        self,
        operation: str,
        body: Mapping[str, Any] | bytes,
        times: int | None = 1,
        status: int = 200,
    ) -> None:
        """Answer the next ``times`` requests with ``body`` (a JSON object, or raw bytes).

        Never forwarded: moto does not see these requests. A JSON object is sent as AWS JSON
        1.1 exactly as given (no ``__type``); bytes are sent as they are.
        """
        raw = body if isinstance(body, bytes) else json.dumps(dict(body)).encode()
        self.add_fault(
            operation, Fault(FaultKind.ERROR, remaining=times, status=status, body=raw)
        )

    def throttle(
        self,
        operation: str,
        times: int | None = 1,
        code: str = "ThrottlingException",
        message: str = "Rate exceeded",
    ) -> None:
        """Answer HTTP 400 with ``__type: ThrottlingException`` (AWS JSON throttling)."""
        self.fail(operation, times=times, status=400, code=code, message=message)

    def reset_connection(self, operation: str, times: int | None = 1) -> None:
        """Drop the connection (TCP RST) without forwarding and without any answer."""
        self.add_fault(operation, Fault(FaultKind.RESET, remaining=times))

    def delay(self, operation: str, seconds: float, times: int | None = 1) -> None:
        """Wait ``seconds`` before forwarding (the request takes effect late, then answers)."""
        self.add_fault(operation, Fault(FaultKind.DELAY, remaining=times, seconds=seconds))

    def forward_then_hang(self, operation: str, times: int | None = 1) -> None:
        """Forward (moto acts on it), then hold the answer until ``release()`` or ``stop()``."""
        self.add_fault(operation, Fault(FaultKind.FORWARD_THEN_HANG, remaining=times))

    def forward_then_reset(self, operation: str, times: int | None = 1) -> None:
        """Forward (moto acts on it), then drop the connection instead of answering."""
        self.add_fault(operation, Fault(FaultKind.FORWARD_THEN_RESET, remaining=times))

    def clear_faults(self, operation: str | None = None) -> None:
        """Forget queued faults (of one operation or all); held answers stay held."""
        with self._lock:
            if operation is None:
                self._faults.clear()
            else:
                self._faults.pop(operation, None)

    def pending_faults(self, operation: str) -> int:
        """How many queued faults of ``operation`` are not used up (``None`` counts as 1)."""
        with self._lock:
            return sum(f.remaining or 1 for f in self._faults.get(operation, ()))

    # -- held answers (forward_then_hang) --------------------------------------------------

    def held(self, operation: str | None = None) -> int:
        """How many answers are held right now (the request already took effect in moto)."""
        with self._lock:
            return sum(1 for h in self._held if operation is None or h.operation == operation)

    def release(self, operation: str | None = None, deliver: bool = True) -> int:
        """Let held answers go: send them (``deliver``) or drop their connections; count."""
        with self._lock:
            chosen = [h for h in self._held if operation is None or h.operation == operation]
            self._held = [h for h in self._held if h not in chosen]
        for held in chosen:
            held.deliver = deliver
            held.released.set()
        return len(chosen)

    # -- called from handler threads -------------------------------------------------------

    def _arrive(
        self, operation: str, body: bytes, access_key_id: str | None = None
    ) -> Fault | None:
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            # Query-protocol services (STS) send a form: kept as {name: value}, e.g.
            # {"Action": "AssumeRole", "Tags.member.1.Key": "kubernetes-namespace", ...}.
            parsed = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
        with self._lock:
            self._counts[operation] += 1
            fault: Fault | None = None
            queue = self._faults.get(operation)
            if queue:
                fault = queue[0]
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.popleft()
            if (
                fault is None
                and self._random_faults
                and self._rng.random() < self._random_rate
            ):
                fault = self._rng.choice(self._random_faults)
            mapping = parsed if isinstance(parsed, dict) else {}
            self._requests.append(
                ProxiedRequest(
                    operation,
                    mapping,
                    None if fault is None else fault.kind,
                    access_key_id,
                    time.monotonic(),
                )
            )
            return fault

    def _reached(self, operation: str, body: bytes, status: int) -> None:
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        arn = str(parsed.get("TaskExecutionArn", "")) if isinstance(parsed, dict) else ""
        with self._lock:
            self._reached_log.append(Reached(operation, arn, status, time.monotonic()))

    # -- random faults (the chaos suite) ----------------------------------------------------

    def random_faults(
        self, rate: float, faults: list[Fault], rng: random.Random | None = None
    ) -> None:
        """From now on, answer a share ``rate`` of the requests that have no queued fault with
        one of ``faults`` (chosen with ``rng``); ``rate=0`` stops."""
        with self._lock:
            self._random_rate = rate
            self._random_faults = [dataclasses.replace(f, remaining=None) for f in faults]
            self._rng = rng or random.Random()

    def reached(self, operation: str | None = None) -> list[Reached]:
        """Requests that reached moto (faulted-before-forwarding ones never did), in order."""
        with self._lock:
            return [r for r in self._reached_log if operation is None or r.operation == operation]

    def _hold(self, operation: str) -> _Held:
        held = _Held(operation)
        with self._lock:
            if self._stopping.is_set():
                held.deliver = False
                held.released.set()
            else:
                self._held.append(held)
        return held
