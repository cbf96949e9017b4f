"""Classification of AWS failures into what the operator does about them.

Pure: the AWS adapter (:mod:`.datasync`) turns botocore exceptions into :class:`AwsError`
values; this module says which of them are transient (retry with backoff), which need a
human (stalled) and which are a verdict about the request (find out why).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    """What an AWS failure means for the reconcile loop."""

    SERVER = "server"  # HTTP 5xx, InternalException: transient
    THROTTLED = "throttled"  # throttling / rate exceeded: transient
    NETWORK = "network"  # timeouts, refused or reset connections: transient
    INVALID_REQUEST = "invalid-request"  # InvalidRequestException: find out why, never blind-retry
    ACCESS_DENIED = "access-denied"  # credentials or permissions: needs a human
    REJECTED = "rejected"  # any other 4xx: needs a change
    INVALID_INPUT = "invalid-input"  # botocore refused to build the request: terminal for the spec
    UNEXPECTED = "unexpected"  # not an AWS answer at all (a bug or an unknown failure)

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {ErrorKind.SERVER, ErrorKind.THROTTLED, ErrorKind.NETWORK, ErrorKind.UNEXPECTED}
)

#: Error codes botocore's own retry handler treats as throttling, plus DataSync-style variants.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

#: Error codes that mean the caller's identity or permissions are wrong.
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "NoCredentials",
        "NotAuthorized",
    }
)

INVALID_REQUEST_CODE = "InvalidRequestException"

#: Longest AWS message copied into status, events and logs.
MAX_MESSAGE = 1024

#: IAM unique-id prefixes: access keys (AKIA, ASIA), roles, users, groups, ... (12+ more chars).
_ACCESS_KEY = re.compile(
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AROA|AIDA|AGPA|ANPA|ANVA|APKA|AIPA|ABIA|ACCA)[A-Z0-9]{12,}"
    r"(?![A-Za-z0-9])"
)
#: A run of 40 or more base64 characters, raw or URL-encoded: secret access keys (40), session
#: tokens (hundreds, any length), signatures. Only runs with both upper- and lower-case letters
#: are redacted (random base64 of this length has both), so ARNs, paths and ids stay readable.
_B64_CHAR = r"(?:[A-Za-z0-9+/]|%2[BbFf])"
_SECRET_RUN = re.compile(
    rf"(?<![A-Za-z0-9+/%]){_B64_CHAR}{{40,}}(?:=|%3[Dd]){{0,2}}(?![A-Za-z0-9+/%=])"
)
#: A value named as secret, of any length: ``SessionToken": "..."``, ``aws_secret_access_key=...``,
#: ``X-Amz-Security-Token: ...``, ``Signature=...``, ``password=...``.
_NAMED_SECRET = re.compile(
    r"(?i)((?:aws_)?secret_?access_?key|secret_?key|(?:aws_)?session_?token|security-?token"
    r"|x-amz-security-token|x-amz-signature|signature|password|credentials?)"
    r"([\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}]+)"
)


def _redact_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if any(c.isupper() for c in run) and any(c.islower() for c in run):
        return "<redacted>"
    return run


def sanitize(message: str) -> str:
    """Make an AWS message safe to store: no key ids, nothing secret-shaped, bounded length.

    Redacts access key ids (and other IAM unique ids), values named as secrets of any length,
    and base64 runs of 40 characters or more (secret keys, session tokens of any length, raw or
    URL-encoded).
    """
    cleaned = " ".join(message.split())
    cleaned = _NAMED_SECRET.sub(lambda m: m.group(1) + m.group(2) + "<redacted>", cleaned)
    cleaned = _ACCESS_KEY.sub("<redacted-key-id>", cleaned)
    cleaned = _SECRET_RUN.sub(_redact_run, cleaned)
    if len(cleaned) > MAX_MESSAGE:
        cleaned = cleaned[: MAX_MESSAGE - 3] + "..."
    return cleaned


def classify(code: str | None, http_status: int | None) -> ErrorKind:
    """The kind of an AWS error answer from its error code and HTTP status."""
    if code in THROTTLING_CODES or http_status == 429:
        return ErrorKind.THROTTLED
    if code in ACCESS_DENIED_CODES or http_status in (401, 403):
        return ErrorKind.ACCESS_DENIED
    if code == INVALID_REQUEST_CODE:
        return ErrorKind.INVALID_REQUEST
    if code == "InternalException" or (http_status is not None and http_status >= 500):
        return ErrorKind.SERVER
    if http_status is not None and 400 <= http_status < 500:
        return ErrorKind.REJECTED
    return ErrorKind.UNEXPECTED


@dataclass(eq=True)
class AwsError(Exception):
    """A failed AWS call, reduced to what status, events and decisions need."""

    kind: ErrorKind
    code: str
    message: str
    http_status: int | None = None
    request_id: str | None = None

    def __str__(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"{self.code}{status}: {self.message}"

    def as_status(self) -> dict[str, object]:
        """The ``status.retry.lastError`` shape."""
        entry: dict[str, object] = {"code": self.code, "message": self.message}
        if self.http_status is not None:
            entry["httpStatus"] = self.http_status
        if self.request_id:
            entry["requestId"] = self.request_id
        return entry
