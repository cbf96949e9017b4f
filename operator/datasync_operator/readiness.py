"""The readiness endpoint (``GET /readyz``): this replica watches, and can act or take over.

kopf serves liveness (``/healthz``): the process and its event loop answer. Readiness says more,
and fails for reasons a restart would not fix, so the two probes never mean the same thing:

- **started**: kopf ran its startup activities and spawned its watchers;
- **listed**: the watched DataSyncExecutions can be listed (one-object pages): the CRD is
  served, RBAC allows the list, the API server answers. That is what kopf's watch needs to be
  established. Checked every ``retry`` seconds until it works, then every ``recheck`` seconds;
- **leadership** (only with leader election): the Lease could be read, so this replica knows
  who leads. The Lease holder acts; a standby keeps a warm cache and takes over at once.

A standby is Ready on purpose. If only the leader were Ready, a rolling update with
``maxUnavailable: 0`` (the chart's, so that an upgrade never drops the standby) would wait
forever for the new pod, which starts as a standby, and a PodDisruptionBudget would count the
standby as unavailable and block every drain of the leader's node. Which replica acts is
reported instead: in the answer (``role``) and by ``datasync_operator_active_replica``.

The answer is JSON, ``200`` when ready and ``503`` otherwise::

    {"ready": true, "role": "leader",
     "checks": {"started": "ok", "listed": "ok", "leadership": "ok"}}

Started by :mod:`.runner` when ``--readiness-endpoint`` is set (the chart always sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from datasync_operator import GROUP, PLURAL, VERSION
from datasync_operator.kube import KubeApiError, NotFound, ResourceRef

__all__ = ["Readiness", "serve"]

logger = logging.getLogger("datasync_operator.readiness")

RESOURCE = ResourceRef(GROUP, VERSION, PLURAL)
OK = "ok"


class Lister(Protocol):
    """What readiness needs of :class:`datasync_operator.kube.KubeClient`."""

    async def list_page(
        self, ref: ResourceRef, namespace: str | None, *, limit: int = 1
    ) -> dict[str, Any]: ...


class Election(Protocol):
    """What readiness needs of :class:`datasync_operator.leadership.LeaderElector`."""

    @property
    def is_leader(self) -> bool: ...

    @property
    def lease_known(self) -> bool: ...


def _is_pattern(namespace: str) -> bool:
    return any(char in namespace for char in "*?[!")


class Readiness:
    """The state behind ``/readyz``; :meth:`run` keeps the ``listed`` check fresh."""

    def __init__(
        self,
        kube: Lister,
        *,
        all_namespaces: bool,
        namespaces: Sequence[str] = (),
        election: Election | None = None,
        recheck: float = 30.0,
        retry: float = 2.0,
    ) -> None:
        self.kube = kube
        #: Where to list: None is cluster-wide. Glob patterns are resolved by kopf from the
        #: namespace list, so only exact names are checked here.
        self.scopes: tuple[str | None, ...] = (
            (None,) if all_namespaces else tuple(n for n in namespaces if not _is_pattern(n))
        )
        self.election = election
        self.recheck = recheck
        self.retry = retry
        self.started = False
        self.list_error: str | None = "not checked yet"

    def mark_started(self) -> None:
        self.started = True

    async def check_list(self) -> None:
        """List one object of every watched scope; remember why it failed, if it did."""
        error: str | None = None
        for namespace in self.scopes:
            where = "all namespaces" if namespace is None else f"namespace {namespace}"
            try:
                await self.kube.list_page(RESOURCE, namespace, limit=1)
            except NotFound:
                error = f"{PLURAL}.{GROUP}/{VERSION} is not served: is the CRD installed?"
            except KubeApiError as exc:
                error = f"cannot list {PLURAL} in {where}: {exc}"
            if error is not None:
                break
        if error != self.list_error:
            if error is None:
                logger.info("readiness: %s can be listed", PLURAL)
            else:
                logger.warning("readiness: %s", error)
        self.list_error = error

    async def run(self) -> None:
        """Check listing until it works, then every ``recheck`` seconds, until cancelled."""
        while True:
            await self.check_list()
            await asyncio.sleep(self.retry if self.list_error else self.recheck)

    @property
    def role(self) -> str:
        if self.election is None:
            return "standalone"
        return "leader" if self.election.is_leader else "standby"

    def report(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, str] = {
            "started": OK if self.started else "kopf has not started yet",
            "listed": self.list_error or OK,
        }
        if self.election is not None:
            known = self.election.is_leader or self.election.lease_known
            checks["leadership"] = OK if known else "the Lease could not be read yet"
        ready = all(value == OK for value in checks.values())
        return ready, {"ready": ready, "role": self.role, "checks": checks}


async def serve(readiness: Readiness, url: str) -> None:
    """Serve ``readiness`` at ``url`` (e.g. ``http://0.0.0.0:8081/readyz``) until cancelled."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "0.0.0.0", parts.port or 80, parts.path or "/readyz"

    async def answer(_: web.Request) -> web.Response:
        ready, body = readiness.report()
        return web.json_response(body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get(path, answer)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    logger.info("serving readiness on %s", url)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
