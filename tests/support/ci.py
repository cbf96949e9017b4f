"""Whether the tests run in CI, where a missing component must fail a tier, never skip it."""

from __future__ import annotations

import os


def in_ci() -> bool:
    """``CI`` set to true/1/yes, as CI systems (and .ci/run) do."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
