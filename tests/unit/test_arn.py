"""ARN parsing: every partition accepted, malformed ARNs refused with the rule they break."""

from __future__ import annotations

import re

import pytest

from datasync_operator.arn import (
    EXECUTION_ARN_PATTERN,
    MAX_LENGTH,
    PARTITIONS,
    ExecutionArnError,
    parse_execution_arn,
)

TASK = "task-0123456789abcdef0"
EXEC = "exec-0123456789abcdef1"


def arn(partition: str = "aws", region: str = "us-east-1", account: str = "111122223333") -> str:
    return f"arn:{partition}:datasync:{region}:{account}:task/{TASK}/execution/{EXEC}"


@pytest.mark.parametrize(
    ("partition", "region"),
    [
        ("aws", "us-east-1"),
        ("aws-cn", "cn-north-1"),
        ("aws-us-gov", "us-gov-west-1"),
        ("aws-eusc", "eusc-de-east-1"),
        ("aws-iso", "us-iso-east-1"),
        ("aws-iso-b", "us-isob-east-1"),
    ],
)
def test_valid_arn_in_every_partition(partition: str, region: str) -> None:
    parsed = parse_execution_arn(arn(partition, region))
    assert parsed.partition == partition
    assert parsed.region == region
    assert parsed.account == "111122223333"
    assert parsed.task_id == TASK
    assert parsed.execution_id == EXEC
    assert str(parsed) == arn(partition, region)
    assert parsed.task_arn == f"arn:{partition}:datasync:{region}:111122223333:task/{TASK}"


def test_partitions_cover_the_api_pattern() -> None:
    alternatives = re.search(r"\^arn:\(([^)]*)\)", EXECUTION_ARN_PATTERN)
    assert alternatives is not None
    assert tuple(alternatives.group(1).split("|")) == PARTITIONS


INVALID = {
    "empty": ("", "required"),
    "not a string": (12345, "must be a string"),
    "none": (None, "must be a string"),
    "not an arn": ("exec-0123456789abcdef1", "is not an ARN"),
    "bad partition": (arn("aws-mars"), "unknown partition"),
    "uppercase partition": (arn("AWS"), "unknown partition"),
    "wrong service": (arn().replace(":datasync:", ":s3:"), "service 's3'"),
    "empty region": (arn(region=""), "region"),
    "uppercase region": (arn(region="US-EAST-1"), "region"),
    "short account": (arn(account="12345"), "account id"),
    "letters in account": (arn(account="11112222333a"), "account id"),
    "short task hex": (arn().replace(TASK, "task-0123"), "invalid resource"),
    "uppercase task hex": (arn().replace(TASK, "task-0123456789ABCDEF0"), "invalid resource"),
    "short exec hex": (arn().replace(EXEC, "exec-01234"), "invalid resource"),
    "uppercase exec hex": (arn().replace(EXEC, "exec-0123456789ABCDEF1"), "invalid resource"),
    "non-hex exec": (arn().replace(EXEC, "exec-0123456789abcdefg"), "invalid resource"),
    "task arn only": (arn().split("/execution/")[0], "invalid resource"),
    "trailing slash": (arn() + "/", "invalid resource"),
    "leading space": (" " + arn(), "is not an ARN"),
    "trailing newline": (arn() + "\n", "invalid resource"),
    "location arn": (
        "arn:aws:datasync:us-east-1:111122223333:location/loc-0123456789abcdef0",
        "invalid resource",
    ),
    "too long": (arn(region="us-" + "x" * 100 + "-1"), f"at most {MAX_LENGTH}"),
}


@pytest.mark.parametrize(("value", "rule"), INVALID.values(), ids=INVALID.keys())
def test_invalid_arn_names_field_and_rule(value: object, rule: str) -> None:
    with pytest.raises(ExecutionArnError) as caught:
        parse_execution_arn(value)
    message = str(caught.value)
    assert "spec.executionArn" in message
    assert rule in message


@pytest.mark.parametrize("value", [v for v, _ in INVALID.values() if isinstance(v, str)])
def test_parser_and_api_pattern_agree_on_invalid(value: str) -> None:
    assert re.fullmatch(EXECUTION_ARN_PATTERN.strip("^$"), value) is None or len(value) > MAX_LENGTH


def test_parser_and_api_pattern_agree_on_valid() -> None:
    for partition in PARTITIONS:
        assert re.match(EXECUTION_ARN_PATTERN, arn(partition))
