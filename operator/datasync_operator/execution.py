"""What DataSync says about a task execution, and what the operator makes of it.

Pure. DataSync's status set is open-ended (moto says INITIALIZING, AWS adds values over time):
unknown values are carried and shown as they are, never crashed on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.Enum):
    """The operator's reading of a DataSync execution status."""

    ACTIVE = "active"  # queued or doing work: can still be cancelled
    CANCELLING = "cancelling"  # a cancel was accepted and is taking effect
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # ERROR: ended without completing (a cancelled execution ends here too)
    UNKNOWN = "unknown"  # a status string this operator does not know

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


#: DataSync's documented statuses, plus moto's INITIALIZING.
_PHASES: dict[str, Phase] = {
    "QUEUED": Phase.ACTIVE,
    "LAUNCHING": Phase.ACTIVE,
    "INITIALIZING": Phase.ACTIVE,
    "PREPARING": Phase.ACTIVE,
    "TRANSFERRING": Phase.ACTIVE,
    "VERIFYING": Phase.ACTIVE,
    "CANCELLING": Phase.CANCELLING,
    "SUCCESS": Phase.SUCCEEDED,
    "ERROR": Phase.FAILED,
}


def phase_of(status: str | None) -> Phase:
    if not status:
        return Phase.UNKNOWN
    return _PHASES.get(status.upper(), Phase.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Description:
    """The parts of ``DescribeTaskExecution`` the operator uses and mirrors into status."""

    status: str
    error_code: str | None = None
    error_detail: str | None = None
    start_time: str | None = None
    estimated_files_to_transfer: int | None = None
    estimated_bytes_to_transfer: int | None = None
    files_transferred: int | None = None
    bytes_transferred: int | None = None
    bytes_written: int | None = None
    prepare_status: str | None = None
    transfer_status: str | None = None
    verify_status: str | None = None

    @property
    def phase(self) -> Phase:
        return phase_of(self.status)

    @property
    def ended_by_cancel(self) -> bool:
        """Whether an ERROR execution ended because it was cancelled.

        DataSync has no CANCELLED status: a cancelled execution ends in ERROR. An ERROR whose
        result names a cancellation, or carries no error at all (what a cancel leaves behind,
        and all that moto reports), is taken as cancelled; an ERROR with any other error code is
        a failure of the transfer itself.
        """
        if self.phase is not Phase.FAILED:
            return False
        words = f"{self.error_code or ''} {self.error_detail or ''}".lower()
        return not words.strip() or "cancel" in words

    def summary(self) -> str:
        details = ", ".join(part for part in (self.error_code, self.error_detail) if part)
        return f"{self.status} ({details})" if details else self.status

    def as_status(self) -> dict[str, object]:
        """``status.execution``: what DataSync reported, omitting what it did not."""
        result = {
            key: value
            for key, value in (
                ("prepareStatus", self.prepare_status),
                ("transferStatus", self.transfer_status),
                ("verifyStatus", self.verify_status),
                ("errorCode", self.error_code),
                ("errorDetail", self.error_detail),
            )
            if value is not None
        }
        mirrored: dict[str, object] = {
            key: value
            for key, value in (
                ("status", self.status),
                ("startTime", self.start_time),
                ("estimatedFilesToTransfer", self.estimated_files_to_transfer),
                ("estimatedBytesToTransfer", self.estimated_bytes_to_transfer),
                ("filesTransferred", self.files_transferred),
                ("bytesTransferred", self.bytes_transferred),
                ("bytesWritten", self.bytes_written),
            )
            if value is not None
        }
        if result:
            mirrored["result"] = result
        return mirrored
