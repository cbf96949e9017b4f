"""Log enrichment: the execution ARN on every log line about a resource.

kopf's object loggers (and the controller's) carry the resource reference (namespace, name,
uid) in each record; :class:`ArnDirectory` is a logging filter that adds ``executionArn`` to
those records that lack it. With ``--log-format
json`` both end up as fields of every line, including the lines kopf itself writes about a
handler. Credentials never reach a log line: the operator logs AWS error codes and (sanitised)
messages only, never request headers or client configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Lookup = Callable[[str, str], str | None]


class ArnDirectory(logging.Filter):
    """Stamps ``executionArn`` on log records about a resource.

    The ARN is looked up by namespace and name in the controller's store (attached when the
    operator starts); the controller's own lines already carry it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lookup: Lookup | None = None

    def attach(self, lookup: Lookup) -> None:
        self._lookup = lookup

    def filter(self, record: logging.LogRecord) -> bool:
        ref: Any = getattr(record, "k8s_ref", None)
        lookup = self._lookup
        if isinstance(ref, dict) and lookup is not None and not hasattr(record, "executionArn"):
            arn = lookup(str(ref.get("namespace") or ""), str(ref.get("name") or ""))
            if arn is not None:
                record.executionArn = arn
        return True
