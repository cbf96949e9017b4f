"""Log enrichment: the execution ARN on every log line about a resource.

kopf's object loggers already carry the resource reference (namespace, name, uid) in each
record; :class:`ArnDirectory` is a logging filter that adds ``executionArn`` to those records,
looked up by uid in kopf's ``arn_index``. With ``--log-format
json`` both end up as fields of every line, including the lines kopf itself writes about a
handler. Credentials never reach a log line: the operator logs AWS error codes and (sanitised)
messages only, never request headers or client configuration.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any


class ArnDirectory(logging.Filter):
    """Stamps ``executionArn`` on log records about a resource.

    The ARN is found by uid in kopf's ``arn_index`` (complete, and pruned by kopf on deletion),
    or in a small cache of the most recently indexed resources that covers the lines kopf logs
    while it is still indexing an object it has just seen.
    """

    def __init__(self, recent: int = 1024) -> None:
        super().__init__()
        self._index: Mapping[str, Collection[object]] | None = None
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._recent_max = recent
        self._lock = threading.Lock()

    def attach(self, index: Mapping[str, Collection[object]]) -> None:
        self._index = index

    def remember(self, uid: str, arn: object) -> None:
        if not uid or not isinstance(arn, str):
            return
        with self._lock:
            self._recent[uid] = arn
            self._recent.move_to_end(uid)
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)

    def lookup(self, uid: str) -> str | None:
        with self._lock:
            recent = self._recent.get(uid)
        if recent is not None:
            return recent
        index = self._index
        if index is None:
            return None
        try:
            store = index.get(uid)
            arn = next(iter(store), None) if store else None
        except RuntimeError:  # the index changed under us: no ARN on this line
            return None
        return arn if isinstance(arn, str) else None

    def filter(self, record: logging.LogRecord) -> bool:
        ref: Any = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and not hasattr(record, "executionArn"):
            arn = self.lookup(str(ref.get("uid")))
            if arn is not None:
                record.executionArn = arn
        return True
