"""The spec of a DataSyncExecution, parsed once at the boundary into typed values.

Pure. The controller parses every object it sees (:func:`parse_spec`) when it records it; the
decision core then works on :class:`Spec` (or on the :class:`InvalidSpec` that says which field
broke which rule) and never looks at raw dicts or string literals again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from datasync_operator.arn import (
    ExecutionArn,
    ExecutionArnError,
    RoleArnError,
    parse_execution_arn,
    parse_role_arn,
)

E = TypeVar("E", bound=enum.StrEnum)


class DesiredState(enum.StrEnum):
    """``spec.desiredState``: what the owner wants of the execution (one-way)."""

    RUNNING = "Running"
    CANCELLED = "Cancelled"


class DeletionPolicy(enum.StrEnum):
    """``spec.deletionPolicy``: what deleting the resource does to the execution."""

    ORPHAN = "Orphan"  # leave the execution alone (the default)
    CANCEL = "Cancel"  # cancel it before the resource goes (the operator holds a finalizer)


@dataclass(frozen=True, slots=True)
class Spec:
    """A valid spec."""

    arn: ExecutionArn
    desired: DesiredState = DesiredState.RUNNING
    deletion_policy: DeletionPolicy = DeletionPolicy.ORPHAN
    #: The IAM role to assume for the calls about this execution (``spec.roleArn``).
    role_arn: str | None = None

    @property
    def region(self) -> str:
        return self.arn.region


@dataclass(frozen=True, slots=True)
class InvalidSpec:
    """A spec that slipped past the CRD schema; the message names the field and the rule."""

    message: str


def parse_spec(raw: object) -> Spec | InvalidSpec:
    """Parse ``spec`` of an object; never raises."""
    if not isinstance(raw, Mapping):
        return InvalidSpec("spec is required and must be an object")
    try:
        arn = parse_execution_arn(raw.get("executionArn"))
    except ExecutionArnError as exc:
        return InvalidSpec(str(exc))
    desired = _enum(DesiredState, raw.get("desiredState", DesiredState.RUNNING.value))
    if desired is None:
        return InvalidSpec(_enum_message("spec.desiredState", DesiredState, raw["desiredState"]))
    policy = _enum(DeletionPolicy, raw.get("deletionPolicy", DeletionPolicy.ORPHAN.value))
    if policy is None:
        return InvalidSpec(
            _enum_message("spec.deletionPolicy", DeletionPolicy, raw["deletionPolicy"])
        )
    role_arn = raw.get("roleArn")
    if role_arn is not None:
        try:
            role_arn = parse_role_arn(role_arn)
        except RoleArnError as exc:
            return InvalidSpec(str(exc))
    return Spec(arn=arn, desired=desired, deletion_policy=policy, role_arn=role_arn)


def _enum(kind: type[E], value: object) -> E | None:
    if not isinstance(value, str):
        return None
    try:
        return kind(value)
    except ValueError:
        return None


def _enum_message(field_path: str, kind: type[enum.StrEnum], got: object) -> str:
    allowed = ", ".join(member.value for member in kind)
    return f"{field_path} must be one of {allowed}, got {got!r}"
