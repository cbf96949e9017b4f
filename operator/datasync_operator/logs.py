"""Log enrichment: the execution ARN on every log line about a resource.

kopf's object loggers already carry the resource reference (namespace, name, uid) in each
record; :class:`ArnDirectory` is a logging filter that adds ``executionArn`` to those records,
looked up by uid from a directory the ``track`` handler keeps current. With ``--log-format
json`` both end up as fields of every line, including the lines kopf itself writes about a
handler. Credentials never reach a log line: the operator logs AWS error codes and (sanitised)
messages only, never request headers or client configuration.
"""

from __future__ import annotations

import logging
import threading
from typing import Any


class ArnDirectory(logging.Filter):
    """Maps resource uids to execution ARNs and stamps ``executionArn`` on their log records."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._arns: dict[str, str] = {}

    def remember(self, uid: str, arn: object) -> None:
        if uid and isinstance(arn, str):
            with self._lock:
                self._arns[uid] = arn

    def forget(self, uid: str) -> None:
        with self._lock:
            self._arns.pop(uid, None)

    def filter(self, record: logging.LogRecord) -> bool:
        ref: Any = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and not hasattr(record, "executionArn"):
            with self._lock:
                arn = self._arns.get(str(ref.get("uid")))
            if arn is not None:
                record.executionArn = arn
        return True
