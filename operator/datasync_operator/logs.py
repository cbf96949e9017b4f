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
from collections.abc import Collection, Mapping
from typing import Any


class ArnDirectory(logging.Filter):
    """Stamps ``executionArn`` on log records about a resource, from kopf's ``arn_index``."""

    def __init__(self) -> None:
        super().__init__()
        self._index: Mapping[str, Collection[object]] | None = None

    def attach(self, index: Mapping[str, Collection[object]]) -> None:
        self._index = index

    def lookup(self, uid: str) -> str | None:
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
