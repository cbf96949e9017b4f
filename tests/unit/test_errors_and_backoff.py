"""Error classification (AWS answers and botocore exceptions) and the backoff schedule."""

from __future__ import annotations

import random
from typing import Any

import botocore.exceptions
import pytest

from datasync_operator.backoff import Backoff
from datasync_operator.datasync import to_aws_error
from datasync_operator.errors import AwsError, ErrorKind, classify, sanitize


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("InternalException", 500, ErrorKind.SERVER),
        ("InternalException", None, ErrorKind.SERVER),
        ("ServiceUnavailable", 503, ErrorKind.SERVER),
        ("BadGateway", 502, ErrorKind.SERVER),
        ("Whatever", 504, ErrorKind.SERVER),
        ("ThrottlingException", 400, ErrorKind.THROTTLED),
        ("Throttling", 400, ErrorKind.THROTTLED),
        ("TooManyRequestsException", 400, ErrorKind.THROTTLED),
        ("RequestLimitExceeded", 400, ErrorKind.THROTTLED),
        ("Anything", 429, ErrorKind.THROTTLED),
        ("InvalidRequestException", 400, ErrorKind.INVALID_REQUEST),
        ("AccessDeniedException", 400, ErrorKind.ACCESS_DENIED),
        ("AccessDenied", 403, ErrorKind.ACCESS_DENIED),
        ("UnrecognizedClientException", 400, ErrorKind.ACCESS_DENIED),
        ("InvalidSignatureException", 400, ErrorKind.ACCESS_DENIED),
        ("ExpiredTokenException", 400, ErrorKind.ACCESS_DENIED),
        ("Unknown", 403, ErrorKind.ACCESS_DENIED),
        ("ValidationException", 400, ErrorKind.REJECTED),
        ("Weird", None, ErrorKind.UNEXPECTED),
    ],
)
def test_classify(code: str, status: int | None, kind: ErrorKind) -> None:
    assert classify(code, status) is kind


def test_transient_kinds() -> None:
    assert {k for k in ErrorKind if k.transient} == {
        ErrorKind.SERVER, ErrorKind.THROTTLED, ErrorKind.NETWORK, ErrorKind.UNEXPECTED
    }


def client_error(code: str, status: int, message: str = "m") -> botocore.exceptions.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "rid-9"},
    }
    return botocore.exceptions.ClientError(response, "CancelTaskExecution")


def test_client_error_mapping_keeps_code_status_message_and_request_id() -> None:
    error = to_aws_error(client_error("InternalException", 500, "try later"))
    assert error == AwsError(ErrorKind.SERVER, "InternalException", "try later", 500, "rid-9")
    assert error.as_status() == {
        "code": "InternalException", "message": "try later", "httpStatus": 500, "requestId": "rid-9"
    }


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), ErrorKind.NETWORK),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), ErrorKind.NETWORK),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), ErrorKind.NETWORK),
        (botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"), ErrorKind.NETWORK),
        (botocore.exceptions.NoCredentialsError(), ErrorKind.ACCESS_DENIED),
        (botocore.exceptions.PartialCredentialsError(provider="env", cred_var="x"),
         ErrorKind.ACCESS_DENIED),
        (RuntimeError("bug"), ErrorKind.UNEXPECTED),
    ],
)
def test_exception_mapping(exc: Exception, kind: ErrorKind) -> None:
    error = to_aws_error(exc)
    assert error.kind is kind
    assert error.code == type(exc).__name__


def test_sanitize_redacts_keys_and_bounds_length() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    cleaned = sanitize(f"key AKIAIOSFODNN7EXAMPLE secret {secret} " + "x" * 3000)
    assert "AKIAIOSFODNN7EXAMPLE" not in cleaned
    assert secret not in cleaned
    assert len(cleaned) <= 1024
    assert sanitize("Sync task  arn:aws:x\n is not found.") == "Sync task arn:aws:x is not found."


def test_backoff_nominal_schedule_and_cap() -> None:
    backoff = Backoff(base=2.0, cap=60.0)
    assert [backoff.nominal(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff.nominal(10_000) == 60.0


def test_backoff_jitter_stays_within_half_and_full_nominal() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        for _ in range(50):
            delay = backoff.delay(attempt, rng)
            assert backoff.nominal(attempt) / 2 <= delay <= backoff.nominal(attempt)


def test_backoff_jitter_spreads() -> None:
    delays = {round(Backoff().delay(3, random.Random(seed)), 6) for seed in range(20)}
    assert len(delays) > 10


@pytest.mark.parametrize(("base", "cap"), [(0, 10), (-1, 10), (5, 1)])
def test_backoff_rejects_bad_settings(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        Backoff(base=base, cap=cap)


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().nominal(0)
