"""Kubernetes Events about DataSyncExecution objects: posted in the background, coalesced.

The controller's workers call :meth:`EventRecorder.record`, which never blocks and never fails;
one poster task writes the Events. Repeats are coalesced the way client-go's EventCorrelator
does it: an Event of the same object, type and reason within ``window`` seconds updates the
existing Event (``count``, ``lastTimestamp``, the latest message) instead of creating another,
so an object retrying through an hour-long AWS outage has one Warning Event with a count, not
one per retry. Events are best effort: one that cannot be written is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from datasync_operator import GROUP, KIND, VERSION
from datasync_operator.kube import KubeApiError, KubeClient, NotFound, ResourceRef

logger = logging.getLogger("datasync_operator.events")

EVENTS = ResourceRef("", "v1", "events")
#: Longest message kept in an Event (the API server's own limit is 1 KiB for the note).
MAX_MESSAGE = 1024


@dataclass(frozen=True, slots=True)
class Involved:
    """The object an Event is about."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class _Pending:
    involved: Involved
    type: str
    reason: str
    message: str
    at: datetime
    #: When it was recorded, on the recorder's clock (series are cut by this, not by posting).
    seen: float


@dataclass(slots=True)
class _Series:
    name: str
    count: int
    seen: float


SeriesKey = tuple[str, str, str]  # (uid, type, reason)


class EventRecorder:
    """Posts the operator's Events, one series per object, type and reason."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        component: str,
        instance: str,
        window: float = 3600.0,
        max_series: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.component = component
        self.instance = instance
        self.window = window
        self.max_series = max_series
        self.clock = clock
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._series: OrderedDict[SeriesKey, _Series] = OrderedDict()
        self.posted = 0  # Events created
        self.updated = 0  # Events whose series grew

    def record(self, involved: Involved, type_: str, reason: str, message: str) -> None:
        """Queue an Event (returns at once)."""
        at = datetime.now(UTC)
        pending = _Pending(involved, type_, reason, message[:MAX_MESSAGE], at, self.clock())
        self._queue.put_nowait(pending)

    async def run(self) -> None:
        """Write queued Events until :meth:`close`."""
        while True:
            pending = await self._queue.get()
            if pending is None:
                return
            try:
                await self._post(pending)
            except KubeApiError as error:
                logger.debug("could not post Event %s: %s", pending.reason, error)

    async def close(self, grace: float = 2.0) -> None:
        """Post what is queued (for up to ``grace`` seconds), then stop."""
        self._queue.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), grace)

    async def _drained(self) -> None:
        while not self._queue.empty():
            await asyncio.sleep(0.01)

    async def _post(self, pending: _Pending) -> None:
        key: SeriesKey = (pending.involved.uid, pending.type, pending.reason)
        now = pending.seen
        self._expire(now)
        series = self._series.get(key)
        if series is not None:
            series.count += 1
            series.seen = now
            self._series.move_to_end(key)
            try:
                await self.kube.patch(
                    EVENTS,
                    pending.involved.namespace,
                    series.name,
                    {
                        "count": series.count,
                        "lastTimestamp": _time(pending.at),
                        "message": pending.message,
                    },
                )
                self.updated += 1
                return
            except NotFound:
                del self._series[key]  # expired on the server: start a new series
        name = f"{pending.involved.name}.{secrets.token_hex(8)}"
        await self.kube.create(EVENTS, pending.involved.namespace, self._body(name, pending))
        self._series[key] = _Series(name, 1, now)
        self.posted += 1
        while len(self._series) > self.max_series:
            self._series.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._series:
            key, series = next(iter(self._series.items()))
            if now - series.seen < self.window:
                return
            del self._series[key]

    def _body(self, name: str, pending: _Pending) -> dict[str, Any]:
        stamp = _time(pending.at)
        involved = pending.involved
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": involved.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "namespace": involved.namespace,
                "name": involved.name,
                "uid": involved.uid,
            },
            "type": pending.type,
            "reason": pending.reason,
            "message": pending.message,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component, "host": self.instance},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
