"""Which regions exist in which AWS partition: a region no partition has is terminal.

The CRD accepts any ``[a-z0-9-]+`` region in ``spec.executionArn`` (the DataSync API's own
pattern), so ``-``, ``a-`` or ``xx`` reach the operator. A call there can never succeed: botocore
refuses some names (``InvalidRegionError``) and sends the rest to a host that does not exist,
which looks like a network failure and would be retried forever, each new region adding a
rate-limit bucket and metric series. :class:`KnownRegions` answers, without I/O, whether the
partition an ARN names has its region: the regions of botocore's endpoint data, plus
``--extra-regions`` for a region AWS opened after the installed botocore was released. The
controller (:mod:`.controller`) asks it before the rate limiter or AWS ever see a region.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from datasync_operator.arn import ExecutionArn


@dataclass(frozen=True, slots=True)
class KnownRegions:
    """Regions per partition, and extra regions accepted in every partition."""

    partitions: Mapping[str, frozenset[str]]
    extra: frozenset[str] = field(default_factory=frozenset)

    def problem(self, arn: ExecutionArn) -> str | None:
        """Why no call about ``arn`` can succeed (its region is unknown), or None."""
        region, partition = arn.region, arn.partition
        if region in self.extra:
            return None
        known = self.partitions.get(partition)
        if known is None:
            return (
                f"spec.executionArn names partition {partition!r}, which this operator's AWS "
                "endpoint data does not have; no AWS call is made"
            )
        if region in known:
            return None
        where = next((name for name, regions in self.partitions.items() if region in regions), None)
        hint = f" (it is a region of partition {where!r})" if where else ""
        return (
            f"spec.executionArn names region {region!r}, which partition {partition!r} does not "
            f"have{hint}; no AWS call is made. If AWS opened this region after the operator's "
            "botocore was released, add it with --extra-regions"
        )

    @classmethod
    def from_botocore(cls, extra: Iterable[str] = (), loader: Any = None) -> KnownRegions:
        """The regions of the installed botocore's endpoint data (``endpoints.json``), read
        with ``loader`` (the AWS adapter's, so the data is loaded once per process)."""
        if loader is None:
            import botocore.loaders

            loader = botocore.loaders.create_loader()
        data = loader.load_data("endpoints")
        partitions = {
            str(partition["partition"]): frozenset(partition.get("regions") or {})
            for partition in data.get("partitions", [])
        }
        return cls(partitions, frozenset(extra))
