"""Parsing and validation of DataSync task execution ARNs.

Pure functions, no I/O. The CRD validates the same pattern on the API server; this module is
the operator's own guard for resources that slipped past the schema (for example when the CRD
was installed without validation), and the source of the region and partition of every AWS call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Partitions accepted by the DataSync API reference (CancelTaskExecution, TaskExecutionArn).
PARTITIONS: tuple[str, ...] = ("aws", "aws-cn", "aws-us-gov", "aws-eusc", "aws-iso", "aws-iso-b")

#: Maximum length of TaskExecutionArn in the DataSync API.
MAX_LENGTH = 128

#: The exact pattern of the DataSync API reference; the CRD carries the same string.
EXECUTION_ARN_PATTERN = (
    r"^arn:(aws|aws-cn|aws-us-gov|aws-eusc|aws-iso|aws-iso-b):datasync:[a-z\-0-9]+:[0-9]{12}"
    r":task/task-[0-9a-f]{17}/execution/exec-[0-9a-f]{17}$"
)

_EXECUTION_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov|aws-eusc|aws-iso|aws-iso-b)"
    r":datasync:(?P<region>[a-z\-0-9]+):(?P<account>[0-9]{12})"
    r":task/(?P<task>task-[0-9a-f]{17})/execution/(?P<execution>exec-[0-9a-f]{17})"
)


class ExecutionArnError(ValueError):
    """The value is not a DataSync task execution ARN; the message says which rule it breaks."""


@dataclass(frozen=True, slots=True)
class ExecutionArn:
    """A parsed DataSync task execution ARN."""

    partition: str
    region: str
    account: str
    task_id: str
    execution_id: str

    @property
    def task_arn(self) -> str:
        return f"arn:{self.partition}:datasync:{self.region}:{self.account}:task/{self.task_id}"

    def __str__(self) -> str:
        return f"{self.task_arn}/execution/{self.execution_id}"


def parse_execution_arn(value: object) -> ExecutionArn:
    """Parse ``value`` or raise :class:`ExecutionArnError` naming the rule that failed."""
    if not isinstance(value, str):
        raise ExecutionArnError(f"spec.executionArn must be a string, got {type(value).__name__}")
    if not value:
        raise ExecutionArnError("spec.executionArn is required and must not be empty")
    if len(value) > MAX_LENGTH:
        raise ExecutionArnError(
            f"spec.executionArn must be at most {MAX_LENGTH} characters, got {len(value)}"
        )
    match = _EXECUTION_ARN.fullmatch(value)
    if match is None:
        raise ExecutionArnError(f"spec.executionArn {value!r} {_explain(value)}")
    return ExecutionArn(
        partition=match["partition"],
        region=match["region"],
        account=match["account"],
        task_id=match["task"],
        execution_id=match["execution"],
    )


def _explain(value: str) -> str:
    """Say, as precisely as cheaply possible, which part of an ARN is wrong."""
    parts = value.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return (
            "is not an ARN: expected arn:<partition>:datasync:<region>:<account>:"
            "task/task-<17 hex>/execution/exec-<17 hex>"
        )
    _, partition, service, region, account, resource = parts
    if partition not in PARTITIONS:
        return f"has unknown partition {partition!r}: must be one of {', '.join(PARTITIONS)}"
    if service != "datasync":
        return f"names service {service!r}: must be datasync"
    if not re.fullmatch(r"[a-z\-0-9]+", region):
        return "has an empty or invalid region: must match [a-z0-9-]+"
    if not re.fullmatch(r"[0-9]{12}", account):
        return "has an invalid account id: must be 12 digits"
    return (
        f"has an invalid resource {resource!r}: must be "
        "task/task-<17 lowercase hex>/execution/exec-<17 lowercase hex>"
    )


#: IAM role ARN accepted in ``spec.roleArn`` (the CRD carries the same pattern).
ROLE_ARN_PATTERN = (
    r"^arn:(aws|aws-cn|aws-us-gov|aws-eusc|aws-iso|aws-iso-b):iam::[0-9]{12}"
    r":role/[A-Za-z0-9+=,.@_/-]{1,512}$"
)
ROLE_ARN_MAX_LENGTH = 2048
_ROLE_ARN = re.compile(ROLE_ARN_PATTERN)


class RoleArnError(ValueError):
    """``spec.roleArn`` is not an IAM role ARN."""


def parse_role_arn(value: object) -> str:
    """``value`` if it is an IAM role ARN, else :class:`RoleArnError` naming the rule."""
    if not isinstance(value, str):
        raise RoleArnError(f"spec.roleArn must be a string, got {type(value).__name__}")
    if len(value) > ROLE_ARN_MAX_LENGTH:
        raise RoleArnError(f"spec.roleArn must be at most {ROLE_ARN_MAX_LENGTH} characters")
    if not _ROLE_ARN.match(value):
        raise RoleArnError(
            f"spec.roleArn {value!r} must be an IAM role ARN: "
            "arn:<partition>:iam::<12-digit account>:role/<name>"
        )
    return value
