"""The pure parts of issue 9 outside access.py: NotPermitted and terminal input in the decision
core, regions per partition, and the redaction of secrets of any length."""

from __future__ import annotations

import base64
import random
import re
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest

from datasync_operator import FINALIZER
from datasync_operator.arn import parse_execution_arn
from datasync_operator.backoff import Backoff
from datasync_operator.datasync import to_aws_error
from datasync_operator.errors import AwsError, ErrorKind, sanitize
from datasync_operator.execution import Description
from datasync_operator.reconcile import (
    Action,
    CallFailed,
    CancelAccepted,
    Described,
    NotPermitted,
    Outcome,
    Policy,
    Resource,
    SpecInvalid,
    Wake,
    conclude,
    plan,
)
from datasync_operator.regions import KnownRegions

ARN = "arn:aws:datasync:{region}:111122223333:task/task-0123456789abcdef0/execution/exec-0123456789abcdef1"
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
POLICY = Policy(backoff=Backoff(base=2.0, cap=60.0), stalled_recheck=600.0)
REFUSAL = "not permitted for namespace 'ns': account 111122223333; policies considered: p does not grant account 111122223333"


def resource(desired: str = "Cancelled", *, status: dict[str, Any] | None = None,
             deleting: bool = False, finalized: bool = False, **spec: Any) -> Resource:
    meta: dict[str, Any] = {"name": "x", "namespace": "ns", "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T11:00:00Z"
    if finalized:
        meta["finalizers"] = [FINALIZER]
    return Resource.from_body({
        "metadata": meta,
        "spec": {"executionArn": ARN.format(region="us-east-1"), "desiredState": desired, **spec},
        "status": status or {},
    })


def decide(res: Resource, outcome: Outcome) -> Any:
    return conclude(res, outcome, now=NOW, policy=POLICY, rng=random.Random(0))


def summary(decision: Any) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in decision.status["conditions"]}


def settled(decision: Any, res: Resource) -> Resource:
    """The resource as it is after the decision's status was written."""
    return Resource(res.spec, res.generation, {**res.status, **decision.changes(res.status)},
                    res.namespace, res.name, res.deleting, res.finalized, res.skip_cancel)


# --- NotPermitted in the decision core ------------------------------------------------------------


@pytest.mark.parametrize("desired", ["Cancelled", "Running"])
def test_a_refusal_stalls_not_permitted_with_a_warning_and_no_wake_up(desired: str) -> None:
    decision = decide(resource(desired), NotPermitted(REFUSAL))
    assert summary(decision)["Stalled"] == ("True", "NotPermitted")
    assert summary(decision)["Ready"] == ("False", "NotPermitted")
    stalled = next(c for c in decision.status["conditions"] if c["type"] == "Stalled")
    assert stalled["message"] == REFUSAL
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "NotPermitted")]
    assert decision.wake is Wake.NEVER  # re-decided when a policy or namespace changes
    assert decision.outcome == "not-permitted"


def test_a_refusal_is_announced_once_not_on_every_redecision() -> None:
    first = decide(resource(), NotPermitted(REFUSAL))
    again = decide(settled(first, resource()), NotPermitted(REFUSAL))
    assert again.events == ()
    assert again.changes(settled(first, resource()).status) == {}  # nothing to write


@pytest.mark.parametrize("desired", ["Cancelled", "Running"])
def test_a_resource_stalled_not_permitted_is_decided_again_whenever_reconciled(desired: str) -> None:
    stalled = settled(decide(resource(desired), NotPermitted(REFUSAL)), resource(desired))
    expected = Action.CANCEL if desired == "Cancelled" else Action.DESCRIBE
    assert plan(stalled).action is expected  # the call is planned; the access check refuses it


def test_granting_heals_a_resource_stalled_not_permitted() -> None:
    stalled = settled(decide(resource(), NotPermitted(REFUSAL)), resource())
    healed = decide(stalled, CancelAccepted())
    assert summary(healed)["Cancelled"] == ("True", "CancelAccepted")
    assert summary(healed)["Stalled"] == ("False", "Idle")


def test_a_cancel_already_accepted_stays_accepted_when_access_is_revoked() -> None:
    accepted = settled(decide(resource(), CancelAccepted()), resource())
    decision = decide(accepted, NotPermitted(REFUSAL))
    assert summary(decision)["Cancelled"] == ("True", "CancelAccepted")
    assert summary(decision)["Ready"] == ("True", "CancelAccepted")
    assert decision.wake is Wake.NEVER  # its refreshes stop
    assert [e.reason for e in decision.events] == ["NotPermitted"]


def test_a_refused_deletion_keeps_the_finalizer_until_granted_or_skipped() -> None:
    deleting = resource(deleting=True, finalized=True, deletionPolicy="Cancel")
    assert plan(deleting).action is Action.CANCEL
    decision = decide(deleting, NotPermitted(REFUSAL))
    assert decision.finalizer is True
    assert summary(decision)["Stalled"] == ("True", "NotPermitted")


# --- terminal input -------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [
    botocore.exceptions.InvalidRegionError(region_name="-"),
    botocore.exceptions.ParamValidationError(report="Invalid length for parameter TaskExecutionArn"),
    botocore.exceptions.NoRegionError(),
])
def test_requests_botocore_refuses_to_build_are_terminal_invalid_spec(exc: Exception) -> None:
    error = to_aws_error(exc)
    assert error.kind is ErrorKind.INVALID_INPUT
    assert not error.kind.transient
    decision = decide(resource(), CallFailed(error))
    assert summary(decision)["Stalled"] == ("True", "InvalidSpec")
    assert decision.wake is Wake.NEVER and decision.retry_reason is None
    assert "retry" not in {k for k, v in decision.status.items() if v is not None}
    assert decision.outcome == "invalid-spec"


def test_an_unknown_region_is_invalid_spec_with_no_wake_up() -> None:
    decision = decide(resource("Running"), SpecInvalid("region 'xx' ..."))
    assert summary(decision)["Stalled"] == ("True", "InvalidSpec")
    assert decision.wake is Wake.NEVER


def test_running_resources_stalled_invalid_spec_are_decided_again_after_a_restart() -> None:
    """With --extra-regions added, a Running resource of a new region heals on restart."""
    stalled = settled(decide(resource("Running"), SpecInvalid("unknown region")), resource("Running"))
    assert plan(stalled).action is Action.DESCRIBE
    healed = decide(stalled, Described(Description("TRANSFERRING")))
    assert summary(healed)["Stalled"] == ("False", "Idle")


# --- regions --------------------------------------------------------------------------------------


REGIONS = KnownRegions.from_botocore()


@pytest.mark.parametrize(("arn_region", "partition"), [
    ("us-east-1", "aws"), ("eu-west-1", "aws"), ("cn-north-1", "aws-cn"),
    ("us-gov-west-1", "aws-us-gov"), ("us-iso-east-1", "aws-iso"), ("us-isob-east-1", "aws-iso-b"),
    ("eusc-de-east-1", "aws-eusc"),
])
def test_regions_of_the_partition_are_known(arn_region: str, partition: str) -> None:
    arn = parse_execution_arn(ARN.format(region=arn_region).replace("arn:aws:", f"arn:{partition}:"))
    assert REGIONS.problem(arn) is None


@pytest.mark.parametrize(("arn_region", "partition", "hint"), [
    ("-", "aws", "does not have"), ("a-", "aws", "does not have"), ("xx", "aws", "does not have"),
    ("us-east-9", "aws", "--extra-regions"),
    ("cn-north-1", "aws", "it is a region of partition 'aws-cn'"),
    ("us-east-1", "aws-cn", "it is a region of partition 'aws'"),
    ("us-east-1", "aws-us-gov", "partition 'aws-us-gov'"),
])
def test_regions_the_partition_does_not_have_are_named(arn_region: str, partition: str, hint: str) -> None:
    arn = parse_execution_arn(ARN.format(region=arn_region).replace("arn:aws:", f"arn:{partition}:"))
    problem = REGIONS.problem(arn)
    assert problem is not None
    assert repr(arn_region) in problem and hint in problem
    assert "no AWS call is made" in problem


def test_extra_regions_are_accepted() -> None:
    arn = parse_execution_arn(ARN.format(region="us-east-9"))
    assert KnownRegions.from_botocore(["us-east-9"]).problem(arn) is None


# --- secrets of any length ------------------------------------------------------------------------


def session_token(length: int, seed: int) -> str:
    """An STS session token's shape: base64 with '/' and '+' runs, starting IQoJb3JpZ2lu..."""
    rng = random.Random(seed)
    raw = bytes(rng.randrange(256) for _ in range(length * 3 // 4))
    return "IQoJb3JpZ2luX2VjE" + base64.b64encode(raw).decode()[: length - 17]


SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKENS = [session_token(n, n) for n in (44, 100, 356, 812, 1200, 2048)]


@pytest.mark.parametrize("token", [*TOKENS, SECRET_KEY], ids=lambda t: f"len{len(t)}")
@pytest.mark.parametrize("shape", [
    "{t}",
    "The security token included in the request is invalid: {t}",
    '{{"SessionToken": "{t}", "Expiration": "2026"}}',
    "X-Amz-Security-Token: {t}\r\nHost: x",
    "aws_session_token={t}",
    "token={q}&next=1",
    "'{t}'",
    "(token {t}).",
])
def test_session_tokens_and_secret_keys_of_any_length_are_redacted(token: str, shape: str) -> None:
    message = shape.format(t=token, q=urllib.parse.quote(token, safe=""))
    cleaned = sanitize(message)
    for piece in re.findall(r"[A-Za-z0-9+/]{16,}", token):
        assert piece not in cleaned, cleaned
    assert "<redacted>" in cleaned


@pytest.mark.parametrize("short", ["abc", "0123456789", "x" * 30])
def test_secrets_named_as_such_are_redacted_whatever_their_length(short: str) -> None:
    for shape in ("aws_secret_access_key={s}", '"SecretAccessKey": "{s}"', "password: {s}",
                  "Credential={s}/20261129/us-east-1/sts/aws4_request"):
        cleaned = sanitize(shape.format(s=short))
        assert short not in cleaned, cleaned


@pytest.mark.parametrize("key_id", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A", "AROA3XFRBF535PLBIFPI4"])
def test_key_ids_are_redacted(key_id: str) -> None:
    assert key_id not in sanitize(f"The access key {key_id} is invalid")


@pytest.mark.parametrize("kept", [
    "Sync task arn:aws:datasync:us-east-1:111222333444:task/task-00000000000000003/execution/exec-00000000000000004 is not found.",
    "Request 3f1c2a9e-5b7d-4c1e-9f8a-0b1c2d3e4f5a failed",
    "User: arn:aws:sts::111122223333:assumed-role/datasync-team-a/dse@team-a is not authorized to perform: datasync:CancelTaskExecution",
    "/data/very/long/lowercase/path/segments/that/are/not/secret/at/all/file.txt",
    "Sync task cannot be cancelled in its current status: ERROR",
])
def test_ordinary_messages_stay_readable(kept: str) -> None:
    assert sanitize(kept) == kept


def test_a_redacted_error_keeps_its_code() -> None:
    token = TOKENS[2]
    response: Any = {"Error": {"Code": "InvalidClientTokenId", "Message": f"bad token {token}"},
                     "ResponseMetadata": {"HTTPStatusCode": 403}}
    error = to_aws_error(botocore.exceptions.ClientError(response, "CancelTaskExecution"))
    assert error == AwsError(ErrorKind.ACCESS_DENIED, "InvalidClientTokenId", "bad token <redacted>", 403)
