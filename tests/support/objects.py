"""Reading DataSyncExecution objects in tests: their conditions, by type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """The condition of that type (a copy); an empty dict when there is none."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == type_:
            return dict(found)
    return {}


def condition_summary(obj: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{type: (status, reason)}`` of every condition: the shape most assertions compare."""
    return {
        c["type"]: (c["status"], c["reason"])
        for c in (obj.get("status") or {}).get("conditions") or []
    }
