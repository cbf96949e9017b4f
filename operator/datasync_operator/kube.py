"""The operator's own small async Kubernetes client, for the writes it makes itself.

kopf keeps watching, logging in, peering and posting Events. The controller
(:mod:`datasync_operator.controller`) and the leader election
(:mod:`datasync_operator.leadership`) use this client for what kopf cannot do well: status
PATCHes guarded by ``resourceVersion`` (a stale write is refused with 409 instead of undoing a
newer truth), the finalizer of ``deletionPolicy: Cancel`` and coordination Leases.

Failures are typed so callers can decide: :class:`Conflict` (409, including a failed
``resourceVersion`` precondition), :class:`NotFound` (404) and :class:`Unavailable` (no answer,
a timeout, 5xx or 429: requeue and try later); anything else is a :class:`KubeApiError`.

Credentials come from a sync function returning :class:`kopf.ConnectionInfo` (for example
``kopf.login_via_pykube`` then ``kopf.login_via_client``). It is called lazily on first use,
again when the credentials have expired, and once after a 401 (the request is then retried
once). Credentials are never logged and never appear in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import datetime
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from datasync_operator import __version__

__all__ = [
    "Conflict", "Credentials", "KubeApiError", "KubeClient",
    "NotFound", "ResourceRef", "Unavailable",
]

logger = logging.getLogger(__name__)

Credentials = Callable[[], kopf.ConnectionInfo | None]

MESSAGE_LIMIT = 300
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A resource type: API group (``""`` for the core group), version and plural."""

    group: str
    version: str
    plural: str

    def path(
        self, namespace: str | None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of the collection (``name`` None) or of one object (or its subresource)."""
        parts = [f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"]
        if namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(quote(subresource, safe=""))
        return "/".join(parts)


class KubeApiError(Exception):
    """The API server refused a request, or could not be reached (``status`` None)."""

    def __init__(self, status: int | None, reason: str, message: str) -> None:
        super().__init__(status, reason, message)
        self.status = status
        self.reason = reason
        self.message = message[:MESSAGE_LIMIT]

    def __str__(self) -> str:
        code = self.status if self.status is not None else "no answer"
        return f"{code} {self.reason}: {self.message}"


class Conflict(KubeApiError):  # noqa: N818 - the API's own words
    """409: the object changed since it was read (or already exists)."""


class NotFound(KubeApiError):  # noqa: N818 - the API's own words
    """404: no such object (or resource type)."""


class Unavailable(KubeApiError):  # noqa: N818 - the API's own words
    """The API server is away or overloaded: no answer, a timeout, 5xx or 429."""


def _error(status: int, text: str) -> KubeApiError:
    """The typed error for a non-2xx answer, with reason and message of its Status object."""
    reason, message = f"HTTP{status}", text.strip()
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        decoded = json.loads(text)
        reason = str(decoded.get("reason") or reason)
        message = str(decoded.get("message") or message)
    cls: type[KubeApiError] = KubeApiError
    if status == 409:
        cls = Conflict
    elif status == 404:
        cls = NotFound
    elif status == 429 or status >= 500:
        cls = Unavailable
    return cls(status, reason, message)


def _pem(data: str | bytes) -> bytes:
    """PEM bytes from PEM text or base64-encoded PEM (the kubeconfig ``*-data`` fields)."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----BEGIN ") else base64.b64decode(raw)


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A temporary file readable only by us, holding ``data``; removed on exit."""
    fd, path = tempfile.mkstemp(prefix="datasync-kube-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        yield path
    finally:
        with contextlib.suppress(OSError):
            Path(path).unlink()


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    """The TLS context for ``info``: CA (path or data), client certificate and key, insecure.

    Python's ssl loads a client certificate only from files: data is written to private
    temporary files that are removed as soon as the context has loaded them.
    """
    cadata = _pem(info.ca_data).decode("ascii") if info.ca_data else None
    context = ssl.create_default_context(cafile=info.ca_path or None, cadata=cadata)
    has_cert = info.certificate_path or info.certificate_data
    has_key = info.private_key_path or info.private_key_data
    if has_cert and has_key:
        with contextlib.ExitStack() as stack:
            cert = info.certificate_path or stack.enter_context(
                _private_file(_pem(info.certificate_data or b""))
            )
            key = info.private_key_path or stack.enter_context(
                _private_file(_pem(info.private_key_data or b""))
            )
            context.load_cert_chain(certfile=cert, keyfile=key)
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _auth_headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.username and info.password:
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    return {}


def _expired(info: kopf.ConnectionInfo) -> bool:
    if info.expiration is None:
        return False
    expiration = info.expiration
    if expiration.tzinfo is None:  # kopf: TZ-naive means UTC
        expiration = expiration.replace(tzinfo=datetime.UTC)
    return datetime.datetime.now(datetime.UTC) >= expiration


class KubeClient:
    """A minimal async client: get, list, create, replace (PUT) and merge-patch objects.

    One aiohttp session per client, created lazily inside the running loop; ``close()``
    releases it (a later request opens a new one).
    """

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._info: kopf.ConnectionInfo | None = None
        self._generation = 0  # bumped on every login, so concurrent 401s log in only once
        self._lock: asyncio.Lock | None = None

    async def get(self, ref: ResourceRef, namespace: str | None, name: str) -> dict[str, Any]:
        return await self._request("GET", ref.path(namespace, name))

    async def list(
        self, ref: ResourceRef, namespace: str | None, *, limit: int = 500
    ) -> builtins.list[dict[str, Any]]:
        """All objects (``namespace`` None: of all namespaces), read in pages of ``limit``."""
        items: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"limit": str(limit)}
            if token:
                params["continue"] = token
            page = await self._request("GET", ref.path(namespace), params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return items

    async def list_page(
        self,
        ref: ResourceRef,
        namespace: str | None,
        *,
        limit: int = 1,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """The first page of a LIST, as the API server answers it (a cheap "can I list?")."""
        params = {"limit": str(limit)}
        if field_selector:
            params["fieldSelector"] = field_selector
        return await self._request("GET", ref.path(namespace), params=params)

    async def create(
        self, ref: ResourceRef, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._request("POST", ref.path(namespace), body=body)

    async def replace(
        self, ref: ResourceRef, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT the whole object; its ``metadata.resourceVersion`` makes a stale write a 409."""
        return await self._request("PUT", ref.path(namespace, name), body=body)

    async def patch(
        self,
        ref: ResourceRef,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        *,
        resource_version: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch; with ``resource_version`` the server refuses (409) a stale one."""
        body = dict(patch)
        if resource_version is not None:
            body["metadata"] = {**(body.get("metadata") or {}), "resourceVersion": resource_version}
        path = ref.path(namespace, name, subresource)
        return await self._request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def close(self) -> None:
        session, self._session = self._session, None
        self._info = None
        if session is not None:
            await session.close()

    # --- internals ---

    async def _login(self, stale_generation: int | None) -> tuple[aiohttp.ClientSession, str, int]:
        """The current session, logging in first when there is none, it expired or got a 401."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if (
                self._session is not None
                and self._info is not None
                and self._generation != stale_generation
                and not _expired(self._info)
            ):
                return self._session, self._info.server, self._generation
            await self.close()
            try:
                info = await asyncio.to_thread(self._credentials)
            except Exception as exc:
                # Only kopf's own messages are known to be free of secrets.
                why = str(exc) if isinstance(exc, kopf.LoginError) else type(exc).__name__
                raise KubeApiError(None, "LoginFailed", why) from None
            if info is None:
                raise KubeApiError(None, "LoginFailed", "no Kubernetes credentials were found")
            headers = {"User-Agent": f"datasync-operator/{__version__}", **_auth_headers(info)}
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_ssl_context(info)),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                proxy=info.proxy_url,
                trust_env=info.trust_env,
            )
            self._info = info
            self._generation += 1
            return self._session, info.server, self._generation

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Accept": JSON} | ({"Content-Type": content_type} if data else {})
        stale: int | None = None
        for attempt in (1, 2):
            session, server, generation = await self._login(stale)
            url = server.rstrip("/") + path
            try:
                async with session.request(
                    method, url, params=params, data=data, headers=headers
                ) as response:
                    status, text = response.status, await response.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                # `from None`: aiohttp's exceptions may carry the request (and its headers).
                detail = str(exc) or "no answer"
                raise Unavailable(None, type(exc).__name__, f"{method} {path}: {detail}") from None
            if status == 401 and attempt == 1:
                logger.info("Kubernetes API answered 401; logging in again")
                stale = generation
                continue
            if status >= 400:
                raise _error(status, text)
            try:
                decoded = json.loads(text)
            except ValueError:
                raise Unavailable(status, "InvalidResponse", f"{method} {path}: not JSON") from None
            if not isinstance(decoded, dict):
                raise Unavailable(status, "InvalidResponse", f"{method} {path}: not an object")
            return decoded
        raise AssertionError("unreachable")  # pragma: no cover
