"""An emulated Kubernetes API server (kmock) on a real loopback port, for the integration tier.

``KubeEmulator`` runs kmock's ``KubernetesEmulator`` (PyPI ``kmock`` 0.8, by kopf's author) in
its own thread and event loop, served over plain HTTP on a free 127.0.0.1 port. It knows kmock's
bundled built-in resources (``load_bundled()``: without ``namespaces`` kopf waits forever), the
namespaced ``datasync.operator.io/v1alpha1`` ``datasyncexecutions`` resource with a ``status``
subresource, and core v1 ``events``. It writes a kubeconfig so that a kopf operator can log in
in-process or as a subprocess (``KUBECONFIG=<emulator.kubeconfig>``), and offers synchronous
helpers (real HTTP requests) to create/get/patch/delete DataSyncExecution objects and list
Events. Use it as a context manager or with ``start()``/``stop()``.

What plain kmock 0.8 emulates: discovery (``/api``, ``/apis``, group/version resource lists),
list, watch (all existing objects as ADDED, then live ADDED/MODIFIED/DELETED), get, create
(409 on a duplicate), merge-patch (dicts merge, ``null`` deletes, lists are replaced) and
JSON-patch (via ``jsonpatch``), and delete with finalizers (``deletionTimestamp`` is set while
finalizers remain; the object goes away when the last one is removed).

What plain kmock 0.8 does NOT emulate, and what ``RealisticEmulator`` (used here) adds:

- ``metadata.generation``: never set or bumped. Added: 1 on create, +1 when anything outside
  ``metadata``/``status`` changes (like the API server for custom resources), and +1 when a
  delete with finalizers sets ``deletionTimestamp`` (as the API server does).
- ``metadata.resourceVersion``, ``uid``, ``creationTimestamp``: never set. Added (a global
  counter for resourceVersion, also in list responses). Without a resourceVersion, kopf's
  JSON-patches (finalizers, ``patch.fns``) fail: they start with a ``test`` of
  ``/metadata/resourceVersion``, which plain kmock answers with HTTP 500.
- A failed JSON-patch ``test`` is HTTP 500 in kmock; here it is 422 like the API server (kopf
  then retries the patch on the next cycle instead of failing).
- ``generateName``: ignored by kmock (every nameless object gets the same key, so the second
  Event kopf posts is a 409). Added: a random 5-character suffix.
- The status subresource is not isolated: a patch of ``/status`` could change spec and a patch
  of the object could change status. Added: for resources with a ``status`` subresource, a
  ``/status`` patch changes only ``status``, a main-resource patch never changes ``status``,
  and ``status`` is dropped on create.
- No-op patches: kmock emits a MODIFIED event anyway. Here they answer the unchanged object
  with no event and no new resourceVersion.
- Watch: kmock takes its snapshot and subscribes to live events at different moments, so a
  change made while a new watch replays existing objects can be lost. Here both happen under
  one lock. kmock also ignores the watch's ``resourceVersion`` and replays every object after
  kopf's initial list, so kopf handled each object twice and (seen in practice) the duplicate
  left a worker waiting for a resourceVersion that never came (~5 s stalls). Here a watch from
  ``resourceVersion=N`` replays only objects changed after N (as ADDED).
- ``GET /api/v1/namespaces``: kmock answers HTTP 500 (it parses "namespaces" as the namespace
  prefix), and kopf lists and watches namespaces whenever it is given namespaces (not ``-A``).
  Served here: ``default``, ``kube-system``, ``kube-public``, the emulator's namespace, and every
  namespace an object is created in (with an ADDED event), so kopf's namespaced mode, globs
  included (``--namespace 'it-*'``), works.
- Open watches keep aiohttp's shutdown waiting 60 s; ``stop()`` ends them first, and
  ``close_watches()`` ends them on demand (as an API server's watch timeout does: kopf
  re-lists and re-watches).
- Empty ``finalizers``/``labels``/``annotations``/``ownerReferences`` are removed (the API
  server omits them).
- ``name``/``namespace``/``uid``/``creationTimestamp``/``deletionTimestamp`` cannot be patched.
- ``resourceVersion`` preconditions: kmock ignores them. Here a merge patch that names
  ``metadata.resourceVersion`` is refused with 409 Conflict unless it is the object's current
  one, as the API server does (the operator guards every write this way).
- Watch expiry: ``expire_watches()`` ends every open watch with the API server's
  ``{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}`` event
  ("resource version too old"): kopf then lists again (its type-None events) and watches anew.
- A deletion that a watch missed: ``delete_silently()`` removes an object without a DELETED
  event (as when it is deleted while a client's watch is away and the client then only sees
  what a relist shows).
- Write timing: ``writes()`` records every write request (method, path, when it arrived and was
  answered, the HTTP status), and ``status_write_delay`` holds every status-subresource PATCH
  before it is served, so that two writers of one object would overlap visibly in time.

Still NOT emulated (tests must not rely on them): OpenAPI schema validation, defaulting and
pruning of unknown fields (kopf's handler results in ``status.<handler-id>`` are kept here but
pruned by a real server); ``PUT`` (replace); strategic-merge semantics (treated as a JSON merge); label and field
selectors (ignored: lists and watches return everything in the namespace); watch bookmarks,
``timeoutSeconds`` and a ``410 Gone`` of its own accord (a watch never ends on its own, and one
from an old resourceVersion misses deletions in between); namespaces as real objects (they cannot be
deleted, and any namespace accepts objects without being created); garbage collection of
owned objects; admission, RBAC and authentication (any or no token works); server-side
apply; managedFields. kmock's own ``deletionTimestamp`` has microseconds and ``+00:00``. The
helpers here rely on kmock 0.8 internals (``_lock``, ``_buses``, ``_serve_list``,
``_serve_watch``, ``objects``): pin kmock to 0.8.x.

How kopf logs in: a plain ``kopf.OperatorRegistry()`` has no login handlers at all (kopf's
default registry, used by ``kopf run file.py``, has ``login_via_pykube`` and
``login_via_client``). ``kopf.login_via_pykube`` and ``kopf.login_with_kubeconfig`` read
``KUBECONFIG`` when they log in, so set ``KUBECONFIG=<emulator.kubeconfig>`` (``env()``) in an
operator subprocess's environment, or in ``os.environ`` before ``KopfRunner`` starts
(``monkeypatch.setenv``). ``kopf.login_via_client`` uses the path that ``KUBECONFIG`` had when
``kubernetes.config`` was first imported, so in-process it may miss a late ``setenv`` (pykube
has the higher priority and wins anyway). Or register ``emulator.login`` as an
``@kopf.on.login`` handler, which needs no environment. No TLS, no certificates: the
kubeconfig is::

    apiVersion: v1
    kind: Config
    clusters: [{name: kmock, cluster: {server: "http://127.0.0.1:<port>"}}]
    users: [{name: kmock, user: {token: kmock}}]
    contexts: [{name: kmock, context: {cluster: kmock, user: kmock, namespace: default}}]
    current-context: kmock
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import secrets
import shutil
import string
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp.test_utils
import aiohttp.web
import jsonpatch
import jsonpointer
import kmock

from tests.support.service import Service

__all__ = [
    "DATASYNC_EXECUTIONS",
    "EVENTS",
    "CustomResource",
    "KubeApiError",
    "KubeEmulator",
    "RealisticEmulator",
    "WriteRecord",
]

_CREATE = kmock.action.CREATE
_UPDATE = kmock.action.UPDATE
_DELETE = kmock.action.DELETE
_OMITTED_WHEN_EMPTY = ("finalizers", "labels", "annotations", "ownerReferences")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: What the API server sends before it ends a watch whose resourceVersion is too old.
WATCH_EXPIRED_EVENT: dict[str, Any] = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version",
        "reason": "Expired",
        "code": 410,
    },
}
_IMMUTABLE_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
)


@dataclass(frozen=True)
class CustomResource:
    """A resource the emulator serves: its API coordinates and discovery information."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    subresources: frozenset[str] = frozenset()
    short_names: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """The key of ``kmock.resources``: ``group/version/plural`` (``v1/plural`` if core)."""
        return f"{self.api_version}/{self.plural}"

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        tail = f"/{name}" if name else ""
        return f"{base}{ns}/{self.plural}{tail}"

    def info(self) -> kmock.ResourceInfo:
        return kmock.ResourceInfo(
            kind=self.kind,
            singular=self.singular,
            namespaced=self.namespaced,
            verbs={"create", "delete", "get", "list", "patch", "watch"},
            shortnames=set(self.short_names),
            categories=set(self.categories),
            subresources=set(self.subresources),
        )


DATASYNC_EXECUTIONS = CustomResource(
    group="datasync.operator.io",
    version="v1alpha1",
    plural="datasyncexecutions",
    kind="DataSyncExecution",
    singular="datasyncexecution",
    subresources=frozenset({"status"}),
    short_names=frozenset({"dse"}),
    categories=frozenset({"datasync", "aws"}),
)
"""The operator's custom resource, as in ``crds/datasyncexecution.yaml``."""

EVENTS = CustomResource(group="", version="v1", plural="events", kind="Event", singular="event")
"""Core v1 Events (already in kmock's bundled resources; listed for the helpers)."""


class KubeApiError(RuntimeError):
    """A non-2xx answer of the emulator to one of the helpers."""

    def __init__(self, status: int, method: str, path: str, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> HTTP {status}: {message}")
        self.status = status
        self.body = body


class _WatchClosed(Exception):  # noqa: N818 -- a signal put on kmock's event buses
    """Ends the watch streams that see it (the client sees the stream end, as on a timeout)."""


class _WatchExpired(Exception):  # noqa: N818 -- a signal put on kmock's event buses
    """Ends the watch streams that see it with a 410 Expired ERROR event first."""


@dataclass(frozen=True)
class WriteRecord:
    """One write request the emulator answered (times are ``time.monotonic()``)."""

    method: str
    path: str
    started: float
    finished: float
    status: int


class _Unchanged(Exception):  # noqa: N818 -- control flow, not an error
    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__("no-op patch")
        self.body = body


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_data(request: kmock.Request, data: Any) -> kmock.Request:
    # kmock matches reactions by the identity of the recorded request, so the request is
    # rewritten in place (it is a frozen attrs class); kmock's request log shows the new data.
    object.__setattr__(request, "data", data)
    return request


def _parse_resource_version(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _resource_version_of(obj: Mapping[str, Any]) -> int:
    return _parse_resource_version(obj.get("metadata", {}).get("resourceVersion")) or 0


def _beyond_metadata_and_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _drop_empty_metadata(obj: dict[str, Any]) -> None:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in _OMITTED_WHEN_EMPTY:
            if key in meta and not meta[key]:
                del meta[key]


class RealisticEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus the API-server behaviour listed in this module's docstring.

    Writes (create, patch, delete) are serialized by one lock, so the bookkeeping computed
    before kmock applies a write cannot race with another write.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._write_lock = asyncio.Lock()
        self._resource_version = 1000
        self._namespaces: dict[str, dict[str, Any]] = {}
        self._namespace_bus: Any = kmock.Bus()  # type: ignore[attr-defined]
        #: Every write request answered so far, in the order they were answered.
        self.writes: list[WriteRecord] = []
        #: Seconds to hold each status-subresource PATCH before serving it (0: none).
        self.status_write_delay = 0.0
        for name in ("default", "kube-system", "kube-public"):
            self.add_namespace(name)

    def add_namespace(self, name: str) -> dict[str, Any] | None:
        """Make a namespace exist in namespace lists; the new object, or None if known."""
        if name in self._namespaces:
            return None
        self._namespaces[name] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "resourceVersion": self._next_resource_version(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        return self._namespaces[name]

    async def ensure_namespace(self, name: str) -> None:
        """Make a namespace exist and tell the namespace watchers (objects create theirs)."""
        created = self.add_namespace(name)
        if created is not None:
            await self._namespace_bus.put({"type": "ADDED", "object": copy.deepcopy(created)})

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8 cannot parse /api/v1/namespaces (it takes "namespaces" for the namespace
        # prefix and answers HTTP 500), yet kopf lists and watches it unless cluster-wide.
        if raw_request.method == "GET" and raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._serve_namespaces(raw_request)
        if raw_request.method not in _WRITE_METHODS:
            response: aiohttp.web.StreamResponse = await super().__call__(raw_request)
            return response
        started = time.monotonic()
        delay = self.status_write_delay
        if delay > 0 and raw_request.method == "PATCH" and raw_request.path.endswith("/status"):
            await asyncio.sleep(delay)
        response = await super().__call__(raw_request)
        self.writes.append(
            WriteRecord(
                raw_request.method, raw_request.path, started, time.monotonic(), response.status
            )
        )
        return response

    async def _serve_namespaces(
        self, raw_request: aiohttp.web.BaseRequest
    ) -> aiohttp.web.StreamResponse:
        items = [copy.deepcopy(ns) for ns in self._namespaces.values()]
        if raw_request.query.get("watch") not in ("true", "1"):
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "NamespaceList",
                    "metadata": {"resourceVersion": str(self._resource_version)},
                    "items": items,
                }
            )
        marker = await self._namespace_bus.mark()
        response = aiohttp.web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(raw_request)
        try:
            for item in items:
                event = {"type": "ADDED", "object": item}
                await response.write(json.dumps(event).encode() + b"\n")
            async for event in self._namespace_bus.stream(since=marker):
                await response.write(json.dumps(event).encode() + b"\n")
        except _WatchClosed:
            pass
        finally:
            with contextlib.suppress(ValueError, RuntimeError):
                await self._namespace_bus.unmark(marker)
        await response.write_eof()
        return response

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _has_status_subresource(self, resource: Any) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.action not in (_CREATE, _UPDATE, _DELETE):
            return await super()._handle(request)
        async with self._write_lock:
            try:
                if request.action == _CREATE:
                    request = self._prepare_create(request)
                    if request.namespace:
                        await self.ensure_namespace(request.namespace)
                elif request.action == _UPDATE:
                    request = self._prepare_update(request)
                else:
                    self._prepare_delete(request)
            except _Unchanged as unchanged:
                return aiohttp.web.json_response(unchanged.body)
            return await super()._handle(request)

    def _prepare_create(self, request: kmock.Request) -> kmock.Request:
        if not isinstance(request.data, Mapping):
            return request
        body = copy.deepcopy(dict(request.data))
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise kmock.KubernetesError(
                    status=422, reason="Invalid", message="metadata.name: Required value"
                )
            alphabet = string.ascii_lowercase + string.digits
            meta["name"] = prefix + "".join(secrets.choice(alphabet) for _ in range(5))
        if request.namespace:
            meta["namespace"] = request.namespace
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_resource_version()
        if self._has_status_subresource(request.resource):
            body.pop("status", None)
        _drop_empty_metadata(body)
        return _with_data(request, body)

    def _prepare_update(self, request: kmock.Request) -> kmock.Request:
        if request.resource is None or request.name is None:
            return request
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return request  # kmock answers 404
        if request.subresource not in (None, "status"):
            return request
        old: dict[str, Any] = copy.deepcopy(self.objects[key].raw)
        precondition = (
            (request.data.get("metadata") or {}).get("resourceVersion")
            if isinstance(request.data, dict)
            else None
        )
        current = old.get("metadata", {}).get("resourceVersion")
        if precondition is not None and str(precondition) != str(current):
            raise kmock.KubernetesError(
                status=409,
                reason="Conflict",
                message=f"Operation cannot be fulfilled on {request.name}: the object has been "
                "modified; please apply your changes to the latest version and try again",
            )
        try:
            patched = kmock.Object(copy.deepcopy(old))
            patched.patch(request.data)
            new: dict[str, Any] = copy.deepcopy(patched.raw)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc

        if request.subresource == "status":
            final = copy.deepcopy(old)
            if "status" in new:
                final["status"] = new["status"]
            else:
                final.pop("status", None)
        else:
            final = new
            if self._has_status_subresource(request.resource):
                if "status" in old:
                    final["status"] = old["status"]
                else:
                    final.pop("status", None)

        old_meta = old.get("metadata", {})
        final_meta = final.setdefault("metadata", {})
        for field in _IMMUTABLE_METADATA:
            if field in old_meta:
                final_meta[field] = old_meta[field]
            else:
                final_meta.pop(field, None)
        _drop_empty_metadata(final)
        if final == old:
            raise _Unchanged(old)
        if _beyond_metadata_and_status(final) != _beyond_metadata_and_status(old):
            final_meta["generation"] = int(old_meta.get("generation") or 0) + 1
        final_meta["resourceVersion"] = self._next_resource_version()
        return _with_data(request, [{"op": "replace", "path": "", "value": final}])

    def _prepare_delete(self, request: kmock.Request) -> None:
        if request.resource is None or request.name is None:
            return
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        meta = self.objects[key].get("metadata", {})
        if meta.get("finalizers") and not meta.get("deletionTimestamp"):
            # kmock sets deletionTimestamp next and emits MODIFIED with what we set here.
            self.objects[key].patch(
                {
                    "metadata": {
                        "generation": int(meta.get("generation") or 0) + 1,
                        "resourceVersion": self._next_resource_version(),
                        "deletionGracePeriodSeconds": 0,
                    }
                }
            )

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        if isinstance(result, dict):
            result.setdefault("metadata", {})["resourceVersion"] = str(self._resource_version)
        return result

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        yield b""  # send the headers now: the client sees a started stream
        assert request.resource is not None
        bus = self._buses[request.resource]
        since = _parse_resource_version(request.params.get("resourceVersion"))
        async with self._lock:  # one moment for the snapshot and the live subscription
            marker = await bus.mark()
            existing = [
                {"type": "ADDED", "object": obj.raw}
                for (resource, namespace, name), obj in self.objects.items()
                if not obj.deleted and self._watched(request, resource, namespace, name)
                if since is None or _resource_version_of(obj.raw) > since
            ]
        try:
            for event in existing:
                yield event
            async for event in bus.stream(since=marker):
                meta = event.get("object", {}).get("metadata", {})
                if self._watched(
                    request, request.resource, meta.get("namespace"), meta.get("name")
                ):
                    yield event
        except _WatchClosed:
            return
        except _WatchExpired:
            yield copy.deepcopy(WATCH_EXPIRED_EVENT)
            return
        finally:
            with contextlib.suppress(ValueError, RuntimeError):
                await bus.unmark(marker)

    async def close_watches(self) -> None:
        """End every open watch stream (clients see a normal end of stream and re-watch)."""
        for bus in [*self._buses.values(), self._namespace_bus]:
            await bus.put(_WatchClosed())

    async def expire_watches(self) -> None:
        """End every open watch of objects with a ``410 Expired`` ERROR event (kopf re-lists)."""
        for bus in list(self._buses.values()):
            await bus.put(_WatchExpired())

    async def delete_silently(self, resource: CustomResource, namespace: str, name: str) -> bool:
        """Remove an object with no DELETED event (a deletion the watches missed); found?"""
        async with self._write_lock, self._lock:
            for (ref, found_namespace, found_name), obj in self.objects.items():
                if (
                    (found_namespace, found_name) == (namespace, name)
                    and (ref.group or "", ref.version, ref.plural)
                    == (resource.group, resource.version, resource.plural)
                    and not obj.deleted
                ):
                    obj.delete()
                    self._next_resource_version()
                    return True
        return False

    @staticmethod
    def _watched(request: kmock.Request, resource: Any, namespace: str | None, name: str) -> bool:
        return bool(
            resource == request.resource
            and (request.namespace is None or namespace == request.namespace)
            and (request.name is None or name == request.name)
        )


class KubeEmulator(Service):
    """``RealisticEmulator`` served on ``http://127.0.0.1:<free port>`` from its own thread.

    ``resources`` are registered besides kmock's bundled built-ins (default: the operator's
    DataSyncExecution). ``namespace`` is the kubeconfig's namespace and the helpers' default.
    """

    def __init__(
        self,
        resources: Iterable[CustomResource] = (DATASYNC_EXECUTIONS,),
        namespace: str = "default",
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
    ) -> None:
        self.resources = tuple(resources)
        self.namespace = namespace
        self.host = host
        self.startup_timeout = startup_timeout
        self._url: str | None = None
        self._directory: Path | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._handler: RealisticEmulator | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the Kubernetes emulator is not running")
        return self._url

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig file that points to this emulator (removed by ``stop()``)."""
        if self._directory is None:
            raise RuntimeError("the Kubernetes emulator is not running")
        return self._directory / "kubeconfig"

    @property
    def handler(self) -> RealisticEmulator:
        """The kmock handler: its state lives in the emulator's thread; read, don't mutate."""
        if self._handler is None:
            raise RuntimeError("the Kubernetes emulator is not running")
        return self._handler

    def env(self) -> dict[str, str]:
        """Environment variables for an operator subprocess (merge into ``os.environ``)."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the Kubernetes emulator is already started")
        self._ready.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.startup_timeout):
            self.stop()
            raise RuntimeError(f"the Kubernetes emulator did not start in {self.startup_timeout}s")
        failure = self._startup_failure()
        if failure is not None:
            self.stop()
            raise RuntimeError("the Kubernetes emulator failed to start") from failure
        self._directory = Path(tempfile.mkdtemp(prefix="kube-emulator-"))
        self.kubeconfig.write_text(json.dumps(self.kubeconfig_dict(), indent=2) + "\n")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open watches end) and remove the kubeconfig."""
        loop, stop_event, thread = self._loop, self._stop_event, self._thread
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(stop_event.set)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"the Kubernetes emulator did not stop in {timeout}s")
        self._thread = self._loop = self._stop_event = self._handler = None
        self._url = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


    def _startup_failure(self) -> BaseException | None:
        return self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), or lost after a clean start
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        handler = RealisticEmulator()
        handler.resources.load_bundled()
        handler.add_namespace(self.namespace)
        for resource in self.resources:
            handler.resources[resource.key] = resource.info()
        self._handler = handler
        async with handler:
            # Not kmock.Server: it also patches aiohttp's resolver process-wide (LIFO only).
            server = aiohttp.test_utils.RawTestServer(handler, host=self.host, port=0)
            await server.start_server()
            try:
                self._url = str(server.make_url("")).rstrip("/")
                self._ready.set()
                await self._stop_event.wait()
            finally:
                await handler.close_watches()  # else aiohttp waits 60 s for them at close
                await server.close()

    def kubeconfig_dict(self) -> dict[str, Any]:
        """The kubeconfig contents (JSON is valid YAML, so it is written as JSON)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock"}}],
            "contexts": [
                {
                    "name": "kmock",
                    "context": {"cluster": "kmock", "user": "kmock", "namespace": self.namespace},
                }
            ],
            "current-context": "kmock",
            "preferences": {},
        }

    def login(self, **_: Any) -> Any:
        """An ``@kopf.on.login`` handler: ``kopf.on.login(registry=r)(emulator.login)``."""
        import kopf

        return kopf.ConnectionInfo(server=self.url, token="kmock", default_namespace=self.namespace)

    def close_watches(self, timeout: float = 5.0) -> None:
        """End all open watch streams now, as an API server does on a watch timeout."""
        loop, handler = self._loop, self._handler
        if loop is None or handler is None:
            raise RuntimeError("the Kubernetes emulator is not running")
        asyncio.run_coroutine_threadsafe(handler.close_watches(), loop).result(timeout)

    def expire_watches(self, timeout: float = 5.0) -> None:
        """End all open watches of objects with ``410 Expired``, as when a watch fell too far
        behind: kopf lists everything again (type-None events) and watches anew."""
        self._run_in_loop(self.handler.expire_watches(), timeout)

    def delete_silently(
        self,
        name: str,
        *,
        namespace: str | None = None,
        resource: CustomResource = DATASYNC_EXECUTIONS,
        timeout: float = 5.0,
    ) -> None:
        """Remove the object without telling any watch (a deletion the watch missed)."""
        found = self._run_in_loop(
            self.handler.delete_silently(resource, namespace or self.namespace, name), timeout
        )
        if not found:
            raise KeyError(f"no {resource.plural} {namespace or self.namespace}/{name}")

    def writes(self) -> list[WriteRecord]:
        """Every write request answered so far (method, path, arrival, answer, status)."""
        return list(self.handler.writes)

    def set_status_write_delay(self, seconds: float) -> None:
        """Hold each status-subresource PATCH ``seconds`` before serving it (0: none)."""
        self.handler.status_write_delay = seconds

    def _run_in_loop(self, coroutine: Any, timeout: float) -> Any:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the Kubernetes emulator is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    def server_errors(self) -> list[Exception]:
        """Unexpected errors inside the emulator (HTTP 5xx it answered); empty when healthy."""
        handler = self._handler
        if handler is None or not handler.active:
            return []
        return [
            e
            for e in list(handler.errors)
            if not (isinstance(e, kmock.KubernetesError) and e.status < 500)
        ]

    # -- raw HTTP --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """One request to the emulator; the JSON answer, or ``KubeApiError`` if not 2xx."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}{query}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as rsp:
                raw = rsp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise KubeApiError(exc.code, method, path, parsed) from None
        return json.loads(raw) if raw else None

    # -- objects (DataSyncExecution by default) --------------------------------------------

    def create(
        self,
        name: str,
        spec: Mapping[str, Any],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        finalizers: Iterable[str] = (),
        resource: CustomResource = DATASYNC_EXECUTIONS,
    ) -> dict[str, Any]:
        """Create an object (a DataSyncExecution by default); return it as stored."""
        ns = namespace or self.namespace
        metadata: dict[str, Any] = {"name": name, "namespace": ns}
        if labels:
            metadata["labels"] = dict(labels)
        if annotations:
            metadata["annotations"] = dict(annotations)
        if finalizers:
            metadata["finalizers"] = list(finalizers)
        body = {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": metadata,
            "spec": dict(spec),
        }
        result: dict[str, Any] = self.request("POST", resource.path(ns), body)
        return result

    def get(
        self,
        name: str,
        *,
        namespace: str | None = None,
        resource: CustomResource = DATASYNC_EXECUTIONS,
    ) -> dict[str, Any]:
        """The object; ``KubeApiError`` with ``status == 404`` if it does not exist."""
        result: dict[str, Any] = self.request(
            "GET", resource.path(namespace or self.namespace, name)
        )
        return result

    def find(
        self,
        name: str,
        *,
        namespace: str | None = None,
        resource: CustomResource = DATASYNC_EXECUTIONS,
    ) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist (e.g. to wait for a deletion)."""
        try:
            return self.get(name, namespace=namespace, resource=resource)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list_objects(
        self,
        *,
        namespace: str | None = None,
        resource: CustomResource = DATASYNC_EXECUTIONS,
    ) -> list[dict[str, Any]]:
        """All objects in the namespace."""
        result = self.request("GET", resource.path(namespace or self.namespace))
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    def patch(
        self,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        resource: CustomResource = DATASYNC_EXECUTIONS,
    ) -> dict[str, Any]:
        """Merge-patch the object (or its ``subresource``, e.g. ``"status"``); return it."""
        path = resource.path(namespace or self.namespace, name)
        if subresource:
            path = f"{path}/{subresource}"
        result: dict[str, Any] = self.request(
            "PATCH", path, dict(patch), content_type="application/merge-patch+json"
        )
        return result

    def patch_spec(
        self, name: str, spec: Mapping[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch a DataSyncExecution's spec (bumps ``metadata.generation``)."""
        return self.patch(name, {"spec": dict(spec)}, namespace=namespace)

    def patch_status(
        self, name: str, status: Mapping[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch a DataSyncExecution's status through the status subresource."""
        return self.patch(name, {"status": dict(status)}, namespace=namespace, subresource="status")

    def delete(
        self,
        name: str,
        *,
        namespace: str | None = None,
        resource: CustomResource = DATASYNC_EXECUTIONS,
    ) -> dict[str, Any]:
        """Delete the object: gone at once, or marked with deletionTimestamp if finalized."""
        result: dict[str, Any] = self.request(
            "DELETE", resource.path(namespace or self.namespace, name)
        )
        return result

    def events(
        self,
        *,
        namespace: str | None = None,
        involved_name: str | None = None,
        reason: str | None = None,
    ) -> list[dict[str, Any]]:
        """Core v1 Events in the namespace, optionally of one object and/or one reason."""
        items = self.list_objects(namespace=namespace, resource=EVENTS)
        return [
            e
            for e in items
            if (involved_name is None or e.get("involvedObject", {}).get("name") == involved_name)
            and (reason is None or e.get("reason") == reason)
        ]
