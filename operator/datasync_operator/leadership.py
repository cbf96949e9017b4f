"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

The controller (:mod:`datasync_operator.controller`) runs :meth:`LeaderElector.run` beside
kopf and lets only the replica whose ``leading`` event is set call AWS or write status; the
others stand by, ready to take over. The Lease is read and written with the operator's own
client (:mod:`datasync_operator.kube`); every write is a PUT carrying the observed
``resourceVersion``, so when two replicas race, the API server lets exactly one win (409 for
the other).

Expiry never compares wall clocks across hosts: a standby takes a Lease over only when the
Lease's record has not changed for its ``leaseDurationSeconds`` as measured by the standby's own
monotonic clock since it saw the record change. A leader that cannot renew for
``renew_deadline`` (shorter than ``duration``) stops leading before anyone may take over. On
cancellation a leader releases the Lease (no holder, ``leaseDurationSeconds: 1``) so that a
standby takes over at its next retry instead of waiting for expiry.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from datasync_operator.kube import Conflict, KubeApiError, NotFound, ResourceRef

__all__ = ["LEASES", "LeaderElector", "LeaseClient", "LeaseSettings", "default_identity"]

logger = logging.getLogger(__name__)

LEASES = ResourceRef("coordination.k8s.io", "v1", "leases")
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"
JITTER = 0.2  # standby retries are spread over retry_period * [1, 1.2], as in client-go


class LeaseClient(Protocol):
    """What the elector needs of :class:`datasync_operator.kube.KubeClient`."""

    async def get(self, ref: ResourceRef, namespace: str | None, name: str) -> dict[str, Any]: ...

    async def create(
        self, ref: ResourceRef, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def replace(
        self, ref: ResourceRef, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Which Lease, who we are, and the timings (seconds; client-go's defaults).

    ``release_on_cancel`` (client-go's ``ReleaseOnCancel``) hands the Lease over at once when
    :meth:`LeaderElector.run` is cancelled; without it a standby waits for expiry.
    """

    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        for field in ("namespace", "name", "identity"):
            if not getattr(self, field):
                raise ValueError(f"lease {field} must not be empty")
        if not self.duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "lease timings need duration > renew_deadline > retry_period > 0, got "
                f"{self.duration:g} / {self.renew_deadline:g} / {self.retry_period:g}"
            )


def default_identity() -> str:
    """``POD_NAME`` (or the host name) plus ``_`` and 8 random hex digits: unique per process."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{secrets.token_hex(4)}"


def _microtime() -> str:
    return datetime.datetime.now(datetime.UTC).strftime(MICROTIME)


class LeaderElector:
    """Acquires, renews and releases one Lease; ``leading`` is set while this replica holds it."""

    def __init__(
        self,
        client: LeaseClient,
        settings: LeaseSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._settings = settings
        self._clock = clock
        self.leading = asyncio.Event()
        self._where = f"{settings.namespace}/{settings.name}"
        self._lease: dict[str, Any] | None = None  # the Lease as we last wrote it
        self._observed: dict[str, Any] | None = None  # the last spec seen, and when (our clock)
        self._observed_at = 0.0
        self._reported_holder: str | None = None
        self._reported_error: str | None = None

    @property
    def settings(self) -> LeaseSettings:
        return self._settings

    #: Whether this replica took the Lease from a holder that never released it (set when it
    #: becomes leader that way): that holder may have left calls unrecorded.
    inherited: bool = False

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def lease_known(self) -> bool:
        """Whether the last attempt read or wrote the Lease (so we know who holds it)."""
        return self._observed is not None and self._reported_error is None

    async def wait_leading(self) -> None:
        await self.leading.wait()

    async def run(self) -> None:
        """Acquire, lead, and acquire again after a loss, until cancelled."""
        try:
            while True:
                await self._acquire()
                await self._renew()
        except asyncio.CancelledError:
            was_leading = self.is_leader
            self.leading.clear()
            if was_leading and self._settings.release_on_cancel:
                await self._release()
            raise
        finally:
            self.leading.clear()  # also when it fails: never look like a leader while not running

    # --- the loops ---

    async def _acquire(self) -> None:
        settings = self._settings
        while not await self._attempt(settings.renew_deadline):
            await asyncio.sleep(settings.retry_period * (1 + JITTER * random.random()))
        self.leading.set()
        self._reported_holder = None
        logger.info(
            "leader election: became leader of lease %s as %s", self._where, settings.identity
        )

    async def _renew(self) -> None:
        settings = self._settings
        last_renewed = self._clock()
        while True:
            await asyncio.sleep(settings.retry_period)
            remaining = last_renewed + settings.renew_deadline - self._clock()
            if remaining > 0 and await self._attempt(remaining):
                last_renewed = self._clock()
                continue
            held_by_other = self._holder() not in ("", settings.identity)
            if held_by_other or self._clock() - last_renewed >= settings.renew_deadline:
                self.leading.clear()
                logger.warning("leader election: lost lease %s", self._where)
                return

    # --- one try (client-go's tryAcquireOrRenew) ---

    async def _attempt(self, timeout: float) -> bool:
        """Try once to acquire or renew, within ``timeout`` seconds; True if we hold the Lease."""
        try:
            held = await asyncio.wait_for(self._try_acquire_or_renew(), timeout)
        except Conflict:
            return False  # someone else wrote first: read again next round
        except (KubeApiError, TimeoutError) as exc:
            text = str(exc) if isinstance(exc, KubeApiError) else f"no answer in {timeout:.1f}s"
            if text != self._reported_error:
                self._reported_error = text
                logger.warning("leader election: cannot use lease %s: %s", self._where, text)
            return False
        self._reported_error = None
        return held

    async def _try_acquire_or_renew(self) -> bool:
        settings = self._settings
        if self._lease is not None and self.is_leader:  # fast path: renew what we last wrote
            try:
                await self._write(self._lease, self._lease["spec"])
                return True
            except KubeApiError:
                self._lease = None  # read it again below
        try:
            lease = await self._client.get(LEASES, settings.namespace, settings.name)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": settings.name, "namespace": settings.namespace},
                "spec": self._spec({}, takeover=True),
            }
            self._remember(await self._client.create(LEASES, settings.namespace, body))
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        now = self._clock()
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        holder = spec.get("holderIdentity") or ""
        if holder and holder != settings.identity:
            lease_duration = spec.get("leaseDurationSeconds") or settings.duration
            if now < self._observed_at + lease_duration:
                if holder != self._reported_holder:
                    self._reported_holder = holder
                    logger.info(
                        "leader election: standing by; lease %s is held by %s", self._where, holder
                    )
                return False
            await self._write(lease, spec)
            # The holder stopped renewing without releasing: it crashed or was cut off, and may
            # have made calls whose results it never recorded.
            self.inherited = True
            return True
        await self._write(lease, spec)
        return True

    def _spec(self, old: dict[str, Any], *, takeover: bool) -> dict[str, Any]:
        """The record we write: ours now; a takeover starts a new term (transitions + 1)."""
        now = _microtime()
        spec = dict(old)
        spec.update(
            holderIdentity=self._settings.identity,
            leaseDurationSeconds=max(1, math.ceil(self._settings.duration)),
            renewTime=now,
        )
        if takeover:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + (1 if old else 0)
        return spec

    async def _write(self, lease: dict[str, Any], spec: dict[str, Any]) -> None:
        takeover = spec.get("holderIdentity") != self._settings.identity
        body = {**lease, "spec": self._spec(spec, takeover=takeover)}
        settings = self._settings
        self._remember(await self._client.replace(LEASES, settings.namespace, settings.name, body))

    def _remember(self, lease: dict[str, Any]) -> None:
        self._lease = lease
        self._observed, self._observed_at = lease.get("spec") or {}, self._clock()

    def _holder(self) -> str:
        return str((self._observed or {}).get("holderIdentity") or "")

    async def _release(self) -> None:
        """Give the Lease up (no holder, 1 s duration) so a standby takes over at once."""
        settings = self._settings
        try:
            async with asyncio.timeout(settings.renew_deadline):
                lease = await self._client.get(LEASES, settings.namespace, settings.name)
                spec = dict(lease.get("spec") or {})
                if spec.get("holderIdentity") != settings.identity:
                    return
                spec.pop("holderIdentity", None)
                now = _microtime()
                spec.update(leaseDurationSeconds=1, acquireTime=now, renewTime=now)
                await self._client.replace(
                    LEASES, settings.namespace, settings.name, {**lease, "spec": spec}
                )
        except (KubeApiError, TimeoutError) as exc:
            logger.warning("leader election: could not release lease %s: %s", self._where, exc)
            return
        self._lease = None
        logger.info("leader election: released lease %s", self._where)
