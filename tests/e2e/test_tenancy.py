"""Issue 9 on the real control plane: two tenant namespaces, two accounts, a DataSyncAccessPolicy
per tenant, the real operator process, moto's STS and DataSync behind the fault proxy.

moto writes its own account (111222333444) into every DataSync ARN, so account A is that one:
tenant A's executions are real, created in moto through a role of account A. Account B's ARNs
are written by hand: a refused one is never sent anywhere, and tenant B's granted describes are
answered by the fault proxy (moto could not hold an execution whose ARN names account B).

Then a corpus of bad input: policies and specs that must never reach AWS. Each case is refused by
the API server with the field named, or accepted by it and then ends Stalled with a clear message
from the operator, with no AWS call at all (DataSync or STS) and the operator never restarting:
unknown regions, foreign accounts, lookalike role ARNs, prefixes that would match too much,
Unicode and maximal lengths.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.controlplane import REPO_ROOT, ControlPlane
from tests.support.fault_proxy import UNKNOWN_OPERATION, FaultProxy
from tests.support.moto_server import MotoServer, free_port
from tests.support.objects import condition, condition_summary
from tests.support.operator_process import FAST_RETRIES, OperatorProcess, aws_env
from tests.support.waiting import wait_for

CANCEL = "CancelTaskExecution"
DESCRIBE = "DescribeTaskExecution"
ACCOUNT_A = "111222333444"
ACCOUNT_B = "444455556666"
ROLE_A = f"arn:aws:iam::{ACCOUNT_A}:role/tenant-a/datasync"
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/tenant-b/datasync"
POLICY_CRD = REPO_ROOT / "crds" / "datasyncaccesspolicy.yaml"
EXEC_B = f"arn:aws:datasync:us-east-1:{ACCOUNT_B}:task/task-0b0b0b0b0b0b0b0b0/execution/exec-0b0b0b0b0b0b0b0b{{}}"


# --- fixtures and helpers (also used by test_bad_input.py) -----------------------------------------


@pytest.fixture(scope="module")
def policy_crd(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane with the DataSyncAccessPolicy CRD; no policy survives a test module."""
    control_plane.apply_crd(POLICY_CRD)
    yield control_plane
    control_plane.kubectl("delete", "dsap", "--all", "--wait=false", check=False)


@pytest.fixture
def plane(policy_crd: ControlPlane) -> Iterator[ControlPlane]:
    """No policy before or after a test: they are cluster-wide and would leak into the next."""
    policy_crd.kubectl("delete", "dsap", "--all")
    yield policy_crd
    policy_crd.kubectl("delete", "dsap", "--all")


def namespace(plane: ControlPlane, prefix: str, **labels: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", name)
    if labels:
        plane.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))
    return name


def apply_policy(plane: ControlPlane, name: str, **spec: Any) -> None:
    body = {"apiVersion": "datasync.operator.io/v1alpha1", "kind": "DataSyncAccessPolicy",
            "metadata": {"name": name}, "spec": spec}
    plane.kubectl("apply", "-f", "-", input=json.dumps(body))


def apply_dse(plane: ControlPlane, ns: str, name: str, **spec: Any) -> None:
    body = {"apiVersion": "datasync.operator.io/v1alpha1", "kind": "DataSyncExecution",
            "metadata": {"name": name}, "spec": spec}
    plane.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))


def get_dse(plane: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        plane.kubectl("get", "dse", name, "-n", ns, "-o", "json").stdout)
    return found


def wait_reason(plane: ControlPlane, ns: str, name: str, type_: str, reason: str,
                process: OperatorProcess, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        assert process.running, process.log()[-3000:]
        obj = get_dse(plane, ns, name)
        return obj if condition_summary(obj).get(type_) == ("True", reason) else None

    return wait_for(check, timeout, message=lambda: (
        f"{ns}/{name}: {get_dse(plane, ns, name).get('status')}\n{process.log()[-3000:]}"))


def events_of(plane: ControlPlane, ns: str, name: str) -> list[dict[str, Any]]:
    listed = json.loads(plane.kubectl("get", "events", "-n", ns, "-o", "json").stdout)
    return [e for e in listed["items"] if e["involvedObject"].get("name") == name]


def warned(plane: ControlPlane, ns: str, name: str) -> bool:
    return any(e["type"] == "Warning" and e["reason"] == "NotPermitted"
               for e in events_of(plane, ns, name))


def arns_sent(proxy: FaultProxy) -> set[str]:
    """Every execution ARN a DataSync request named (whatever the answer)."""
    return {str(r.body.get("TaskExecutionArn")) for r in proxy.requests()
            if r.operation in (CANCEL, DESCRIBE)}


def assume_role_requests(proxy: FaultProxy) -> list[dict[str, Any]]:
    return [dict(r.body) for r in proxy.requests(UNKNOWN_OPERATION)
            if r.body.get("Action") == "AssumeRole"]


def create_execution(moto: MotoServer, account: str, region: str = "us-east-1") -> str:
    """A real execution in moto's ``account`` (through a role there), in ``region``."""
    base: dict[str, Any] = {"endpoint_url": moto.url, "region_name": region}
    sts: Any = boto3.client("sts", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                            aws_secret_access_key="setup", **base)
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/setup",
                                  RoleSessionName="setup")["Credentials"]
    client: Any = boto3.client(
        "datasync", aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"], **base)
    suffix = uuid.uuid4().hex[:8]
    locations = [
        client.create_location_s3(
            S3BucketArn=f"arn:aws:s3:::{side}-{suffix}", Subdirectory="/data",
            S3Config={"BucketAccessRoleArn": f"arn:aws:iam::{account}:role/datasync"},
        )["LocationArn"]
        for side in ("source", "target")
    ]
    task = client.create_task(SourceLocationArn=locations[0], DestinationLocationArn=locations[1])
    arn: str = client.start_task_execution(TaskArn=task["TaskArn"])["TaskExecutionArn"]
    return arn


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(
    plane: ControlPlane, proxy: FaultProxy, tmp_path: Path
) -> Iterator[OperatorFactory]:
    started: list[OperatorProcess] = []

    def start(*namespaces: str, extra: tuple[str, ...] = ()) -> OperatorProcess:
        watched = [arg for ns in namespaces for arg in ("--namespace", ns)]
        process = OperatorProcess(
            [*watched, "--metrics-port", str(free_port()), *FAST_RETRIES, *extra],
            env={"KUBECONFIG": str(plane.kubeconfig), **aws_env(proxy.url),
                 "AWS_ENDPOINT_URL_STS": proxy.url},
            log_path=tmp_path / f"operator-{len(started)}.log",
        )
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


# --- the acceptance scenario ------------------------------------------------------------------------


def test_tenant_a_cannot_reach_beyond_its_grant_and_a_policy_change_heals_at_once(
    plane: ControlPlane, moto: MotoServer, proxy: FaultProxy, start_operator: OperatorFactory,
) -> None:
    ns_a = namespace(plane, "tenant-a", tenant="a")
    ns_b = namespace(plane, "tenant-b", tenant="b")
    apply_policy(plane, "tenant-a", namespaceSelector={"matchLabels": {"tenant": "a"}},
                 accounts=[ACCOUNT_A], regions=["us-east-1"], roleArn=ROLE_A,
                 externalId="tenant-a-7f3c")
    apply_policy(plane, "tenant-b", namespaces=[ns_b], accounts=[ACCOUNT_B],
                 regions=["us-east-1", "eu-west-1"], roleArn=ROLE_B,
                 allowedRoleArnPrefixes=[f"arn:aws:iam::{ACCOUNT_B}:role/tenant-b/"])
    own = create_execution(moto, ACCOUNT_A)
    in_eu = create_execution(moto, ACCOUNT_A, "eu-west-1")
    other = create_execution(moto, ACCOUNT_A)
    process = start_operator(ns_a, ns_b, extra=("--poll-interval", "0"))

    apply_dse(plane, ns_a, "own", executionArn=own, desiredState="Cancelled")
    apply_dse(plane, ns_a, "b-execution", executionArn=EXEC_B.format(1), desiredState="Cancelled")
    apply_dse(plane, ns_a, "eu-region", executionArn=in_eu, desiredState="Cancelled")
    apply_dse(plane, ns_a, "b-role", executionArn=other, desiredState="Cancelled", roleArn=ROLE_B)

    wait_reason(plane, ns_a, "own", "Cancelled", "CancelAccepted", process)
    refused = {
        "b-execution": f"account {ACCOUNT_B}",
        "eu-region": "region eu-west-1",
        "b-role": f"roleArn {ROLE_B}",
    }
    for name, what in refused.items():
        obj = wait_reason(plane, ns_a, name, "Stalled", "NotPermitted", process)
        message = condition(obj, "Stalled")["message"]
        assert what in message and "tenant-a does not grant" in message, message
        assert "tenant-b does not grant" not in message  # it does not select tenant A's namespace
        assert condition_summary(obj)["Cancelled"] == ("False", "NotPermitted")
        wait_for(functools.partial(warned, plane, ns_a, name), 30,
                 message=f"no NotPermitted Event for {name}")
    # no AWS call for any of them: only tenant A's own execution was ever named
    assert arns_sent(proxy) == {own}
    assert proxy.calls(CANCEL) == 1
    [assume] = assume_role_requests(proxy)
    assert assume["RoleArn"] == ROLE_A
    assert assume["RoleSessionName"] == f"dse@{ns_a}"
    assert (assume["Tags.member.1.Key"], assume["Tags.member.1.Value"]) == ("kubernetes-namespace", ns_a)
    assert assume["ExternalId"] == "tenant-a-7f3c"
    [cancel] = proxy.requests(CANCEL)
    assert cancel.access_key_id is not None and cancel.access_key_id.startswith("ASIA")
    assert moto_status(moto, own) == "ERROR"  # cancelled, as role A, in account A

    # The administrator grants eu-west-1: the resource heals at once, untouched.
    before = get_dse(plane, ns_a, "eu-region")["metadata"]
    apply_policy(plane, "tenant-a", namespaceSelector={"matchLabels": {"tenant": "a"}},
                 accounts=[ACCOUNT_A], regions=["us-east-1", "eu-west-1"], roleArn=ROLE_A,
                 externalId="tenant-a-7f3c")
    healed = wait_reason(plane, ns_a, "eu-region", "Cancelled", "CancelAccepted", process, timeout=10)
    assert healed["metadata"]["generation"] == before["generation"] == 1
    assert moto_status(moto, in_eu, "eu-west-1") == "ERROR"
    # the others stay refused, and still nothing of them reached AWS
    for name in ("b-execution", "b-role"):
        assert condition_summary(get_dse(plane, ns_a, name))["Stalled"] == ("True", "NotPermitted")
    assert arns_sent(proxy) == {own, in_eu}
    assert process.running
    assert "tenant-a-7f3c" not in process.log()  # the ExternalId is never logged


def moto_status(moto: MotoServer, arn: str, region: str = "us-east-1") -> str:
    """The execution's status as account A sees it (the describe advances moto by a step)."""
    base: dict[str, Any] = {"endpoint_url": moto.url, "region_name": region}
    sts: Any = boto3.client("sts", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                            aws_secret_access_key="setup", **base)
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT_A}:role/setup",
                                  RoleSessionName="check")["Credentials"]
    client: Any = boto3.client(
        "datasync", aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"], **base)
    status: str = client.describe_task_execution(TaskExecutionArn=arn)["Status"]
    return status


def test_tenant_b_acts_as_its_role_and_a_revocation_stops_its_calls_at_once(
    plane: ControlPlane, proxy: FaultProxy, start_operator: OperatorFactory,
) -> None:
    ns_b = namespace(plane, "tenant-b")
    apply_policy(plane, "tenant-a", namespaces=["elsewhere"], accounts=[ACCOUNT_A])
    apply_policy(plane, "tenant-b", namespaces=[ns_b], accounts=[ACCOUNT_B], roleArn=ROLE_B)
    arn = EXEC_B.format(2)
    # account B's DataSync, played by the proxy: every describe answers "transferring"
    proxy.answer(DESCRIBE, {"TaskExecutionArn": arn, "Status": "TRANSFERRING"}, times=None)
    process = start_operator(ns_b, extra=("--poll-interval", "1"))
    apply_dse(plane, ns_b, "watched", executionArn=arn)
    wait_reason(plane, ns_b, "watched", "Ready", "ExecutionActive", process)
    wait_for(lambda: proxy.calls(DESCRIBE) >= 2, 20, message="no polling")
    [assume] = assume_role_requests(proxy)
    assert (assume["RoleArn"], assume["Tags.member.1.Value"]) == (ROLE_B, ns_b)
    assert "ExternalId" not in assume  # tenant B's policy sets none
    assert all((r.access_key_id or "").startswith("ASIA") for r in proxy.requests(DESCRIBE))

    plane.kubectl("delete", "dsap", "tenant-b")
    obj = wait_reason(plane, ns_b, "watched", "Stalled", "NotPermitted", process, timeout=5)
    assert f"no DataSyncAccessPolicy selects namespace '{ns_b}'" in condition(obj, "Stalled")["message"]
    calls = proxy.calls(DESCRIBE)
    with pytest.raises(AssertionError):  # no describe for 3 polling intervals
        wait_for(lambda: proxy.calls(DESCRIBE) > calls, 3, message="")


def test_without_policy_objects_the_quickstart_works_and_roles_are_refused(
    plane: ControlPlane, moto: MotoServer, proxy: FaultProxy, start_operator: OperatorFactory,
) -> None:
    ns = namespace(plane, "quickstart")
    arn = moto.create_execution()  # as the operator's own identity, as in the quickstart
    process = start_operator(ns, extra=("--poll-interval", "0", "--account-id", ACCOUNT_A))
    apply_dse(plane, ns, "transfer", executionArn=arn, desiredState="Cancelled")
    wait_reason(plane, ns, "transfer", "Cancelled", "CancelAccepted", process)
    assert assume_role_requests(proxy) == []
    assert {r.access_key_id for r in proxy.requests(CANCEL)} == {"AKIAIOSFODNN7EXAMPLE"}
    apply_dse(plane, ns, "named-role", executionArn=moto.create_execution(),
              desiredState="Cancelled", roleArn=ROLE_A)
    obj = wait_reason(plane, ns, "named-role", "Stalled", "NotPermitted", process)
    assert "no DataSyncAccessPolicy exists" in condition(obj, "Stalled")["message"]
    apply_dse(plane, ns, "foreign", executionArn=EXEC_B.format(3), desiredState="Cancelled")
    obj = wait_reason(plane, ns, "foreign", "Stalled", "NotPermitted", process)
    assert f"only the operator's own account ({ACCOUNT_A})" in condition(obj, "Stalled")["message"]
    assert proxy.calls(CANCEL) == 1


# --- the corpus of bad input ------------------------------------------------------------------------

TASK = "task/task-0123456789abcdef0/execution/exec-0123456789abcdef{}"
ROLE = f"arn:aws:iam::{ACCOUNT_A}:role/team/datasync"
PREFIX = f"arn:aws:iam::{ACCOUNT_A}:role/team/nightly/"


def arn(region: str = "us-east-1", account: str = ACCOUNT_A, partition: str = "aws", n: int = 0) -> str:
    return f"arn:{partition}:datasync:{region}:{account}:{TASK.format(n % 10)}"


def policy_manifest(spec: Any) -> str:
    return json.dumps({"apiVersion": "datasync.operator.io/v1alpha1",
                       "kind": "DataSyncAccessPolicy", "metadata": {"name": "bad"}, "spec": spec})


def dse_manifest(spec: Any) -> str:
    return json.dumps({"apiVersion": "datasync.operator.io/v1alpha1", "kind": "DataSyncExecution",
                       "metadata": {"name": "bad"}, "spec": spec})


GOOD: dict[str, Any] = {"namespaces": ["team"], "accounts": [ACCOUNT_A]}

#: Policies the API server refuses, and the field its message names.
BAD_POLICIES: dict[str, tuple[dict[str, Any], str]] = {
    "no namespaces selected": ({"accounts": [ACCOUNT_A]}, "spec"),
    "no accounts": ({"namespaces": ["team"]}, "spec.accounts"),
    "empty accounts": ({**GOOD, "accounts": []}, "spec.accounts"),
    "11-digit account": ({**GOOD, "accounts": ["11122233344"]}, "spec.accounts[0]"),
    "account with letters": ({**GOOD, "accounts": ["11122233344a"]}, "spec.accounts[0]"),
    "fullwidth-digit account": ({**GOOD, "accounts": ["\uff11" * 12]}, "spec.accounts[0]"),
    "wildcard account": ({**GOOD, "accounts": ["*"]}, "spec.accounts[0]"),
    "uppercase region": ({**GOOD, "regions": ["US-EAST-1"]}, "spec.regions[0]"),
    "dash region": ({**GOOD, "regions": ["-"]}, "spec.regions[0]"),
    "Unicode region": ({**GOOD, "regions": ["us-\u0435ast-1"]}, "spec.regions[0]"),  # Cyrillic e
    "wildcard region": ({**GOOD, "regions": ["*"]}, "spec.regions[0]"),
    "user, not role": ({**GOOD, "roleArn": f"arn:aws:iam::{ACCOUNT_A}:user/x"}, "spec.roleArn"),
    "role of an unlisted account": ({**GOOD, "roleArn": f"arn:aws:iam::{ACCOUNT_B}:role/x"}, "spec.roleArn"),
    "role name too long": ({**GOOD, "roleArn": f"arn:aws:iam::{ACCOUNT_A}:role/" + "r" * 513}, "spec.roleArn"),
    "wildcard allowed role": ({**GOOD, "allowedRoleArns": [f"arn:aws:iam::{ACCOUNT_A}:role/*"]}, "spec.allowedRoleArns[0]"),
    "allowed role of an unlisted account": ({**GOOD, "allowedRoleArns": [f"arn:aws:iam::{ACCOUNT_B}:role/x"]}, "spec.allowedRoleArns"),
    "prefix of a whole account": ({**GOOD, "allowedRoleArnPrefixes": [f"arn:aws:iam::{ACCOUNT_A}:role/"]}, "spec.allowedRoleArnPrefixes[0]"),
    "prefix without a trailing slash": ({**GOOD, "allowedRoleArnPrefixes": [f"arn:aws:iam::{ACCOUNT_A}:role/team"]}, "spec.allowedRoleArnPrefixes[0]"),
    "prefix of any account": ({**GOOD, "allowedRoleArnPrefixes": ["arn:aws:iam::"]}, "spec.allowedRoleArnPrefixes[0]"),
    "prefix with a wildcard": ({**GOOD, "allowedRoleArnPrefixes": [f"arn:aws:iam::{ACCOUNT_A}:role/*/"]}, "spec.allowedRoleArnPrefixes[0]"),
    "externalId without a role": ({**GOOD, "externalId": "abc"}, "spec.externalId"),
    "externalId too short": ({**GOOD, "roleArn": ROLE, "externalId": "a"}, "spec.externalId"),
    "externalId too long": ({**GOOD, "roleArn": ROLE, "externalId": "x" * 1225}, "spec.externalId"),
    "Unicode externalId": ({**GOOD, "roleArn": ROLE, "externalId": "caf\u00e9-tenant"}, "spec.externalId"),
    "In without values": ({"namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "In"}]},
                           "accounts": [ACCOUNT_A]}, "spec.namespaceSelector.matchExpressions[0]"),
    "bad namespace name": ({**GOOD, "namespaces": ["Team_A"]}, "spec.namespaces[0]"),
}

#: DataSyncExecution specs the API server refuses, and the field its message names.
BAD_SPECS: dict[str, tuple[dict[str, Any], str]] = {
    "Unicode region in the ARN": ({"executionArn": arn("us-\u0435ast-1")}, "spec.executionArn"),
    "executionArn of 129 characters": ({"executionArn": arn("us-" + "e" * (129 - len(arn("us-")) + 0))}, "spec.executionArn"),
    "Unicode role ARN": ({"executionArn": arn(), "roleArn": f"arn:aws:iam::{ACCOUNT_A}:role/t\u00e9am"}, "spec.roleArn"),
    "role ARN too long": ({"executionArn": arn(), "roleArn": f"arn:aws:iam::{ACCOUNT_A}:role/" + "r" * 2048}, "spec.roleArn"),
}


@pytest.mark.parametrize(("spec", "field"), BAD_POLICIES.values(), ids=BAD_POLICIES.keys())
def test_bad_policies_are_refused_by_the_api_server_naming_the_field(
    plane: ControlPlane, spec: dict[str, Any], field: str
) -> None:
    done = plane.kubectl("apply", "-f", "-", "--dry-run=server", input=policy_manifest(spec),
                         check=False)
    assert done.returncode != 0, done.stdout
    assert "is invalid" in done.stderr or "Invalid value" in done.stderr, done.stderr
    assert field in done.stderr, done.stderr


def test_a_good_policy_at_the_limits_is_accepted(plane: ControlPlane) -> None:
    longest = f"arn:aws-us-gov:iam::{ACCOUNT_A}:role/" + "r" * 512
    spec = {"namespaces": ["n" * 63], "accounts": [ACCOUNT_A], "regions": ["eusc-de-east-1"],
            "roleArn": longest, "externalId": "x" * 1224, "allowedRoleArns": [longest],
            "allowedRoleArnPrefixes": [f"arn:aws:iam::{ACCOUNT_A}:role/" + "p" * 400 + "/"]}
    done = plane.kubectl("apply", "-f", "-", "--dry-run=server", input=policy_manifest(spec))
    assert "created (server dry run)" in done.stdout


@pytest.fixture(scope="module")
def corpus_namespace(policy_crd: ControlPlane) -> Iterator[str]:
    yield namespace(policy_crd, "corpus")


@pytest.mark.parametrize(("spec", "field"), BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_bad_specs_are_refused_by_the_api_server_naming_the_field(
    plane: ControlPlane, corpus_namespace: str, spec: dict[str, Any], field: str
) -> None:
    done = plane.kubectl("apply", "-n", corpus_namespace, "-f", "-", "--dry-run=server",
                         input=dse_manifest(spec), check=False)
    assert done.returncode != 0, done.stdout
    assert field in done.stderr, done.stderr


LONGEST_REGION = "us-" + "e" * (128 - len(arn("us-")))  # the ARN is exactly 128 characters

#: Specs the API server accepts that the operator must refuse: (spec, reason, words of the message).
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "region -": ({"executionArn": arn("-")}, "InvalidSpec", "region '-'"),
    "region a-": ({"executionArn": arn("a-")}, "InvalidSpec", "region 'a-'"),
    "region xx": ({"executionArn": arn("xx")}, "InvalidSpec", "region 'xx'"),
    "region not yet known": ({"executionArn": arn("us-east-9")}, "InvalidSpec", "--extra-regions"),
    "China region in aws": ({"executionArn": arn("cn-north-1")}, "InvalidSpec", "partition 'aws-cn'"),
    "aws region in aws-cn": ({"executionArn": arn(partition="aws-cn")}, "InvalidSpec", "partition 'aws-cn' does not have"),
    "aws region in aws-us-gov": ({"executionArn": arn(partition="aws-us-gov")}, "InvalidSpec", "partition 'aws-us-gov'"),
    "region of a 128-character ARN": ({"executionArn": arn(LONGEST_REGION)}, "InvalidSpec", "does not have"),
    "foreign account": ({"executionArn": arn(account=ACCOUNT_B)}, "NotPermitted", f"account {ACCOUNT_B}"),
    "account one digit off": ({"executionArn": arn(account="111222333445")}, "NotPermitted", "account 111222333445"),
    "region not granted": ({"executionArn": arn("eu-west-1")}, "NotPermitted", "region eu-west-1"),
    "role of another case": ({"executionArn": arn(), "roleArn": ROLE.replace("datasync", "DataSync")}, "NotPermitted", "roleArn"),
    "role with a suffix": ({"executionArn": arn(), "roleArn": ROLE + "2"}, "NotPermitted", "roleArn"),
    "role beside the path": ({"executionArn": arn(), "roleArn": PREFIX.rstrip("/") + "-evil/x"}, "NotPermitted", "roleArn"),
    "the path itself": ({"executionArn": arn(), "roleArn": PREFIX.rstrip("/")}, "NotPermitted", "roleArn"),
    "role of another account": ({"executionArn": arn(), "roleArn": ROLE.replace(ACCOUNT_A, ACCOUNT_B)}, "NotPermitted", "roleArn"),
    "role of another partition": ({"executionArn": arn(), "roleArn": ROLE.replace("arn:aws:", "arn:aws-cn:")}, "NotPermitted", "roleArn"),
    "longest role name, not granted": ({"executionArn": arn(), "roleArn": PREFIX.replace("nightly/", "") + "r" * 500}, "NotPermitted", "roleArn"),
}


def test_specs_that_can_never_succeed_stall_with_a_clear_message_and_no_aws_call(
    plane: ControlPlane, corpus_namespace: str, proxy: FaultProxy, start_operator: OperatorFactory,
) -> None:
    apply_policy(plane, "corpus", namespaces=[corpus_namespace], accounts=[ACCOUNT_A],
                 regions=["us-east-1"], allowedRoleArns=[ROLE], allowedRoleArnPrefixes=[PREFIX])
    process = start_operator(corpus_namespace)
    pid = process.pid
    names = {case: f"case-{n}" for n, case in enumerate(REFUSED)}
    for case, (spec, _, _) in REFUSED.items():
        apply_dse(plane, corpus_namespace, names[case], **spec, desiredState="Cancelled")
    for case, (_, reason, words) in REFUSED.items():
        name = names[case]

        def stalled(name: str = name, reason: str = reason) -> dict[str, Any] | None:
            assert process.running, process.log()[-3000:]
            obj = get_dse(plane, corpus_namespace, name)
            return obj if condition_summary(obj).get("Stalled") == ("True", reason) else None

        obj = wait_for(stalled, 60, message=f"{case} ({name}) did not stall with {reason}")
        message = condition(obj, "Stalled")["message"]
        assert words in message, (case, message)
        assert "no AWS call" in message or "not permitted" in message, (case, message)
    assert proxy.total_calls() == 0, [(r.operation, r.body) for r in proxy.requests()]
    assert process.running and process.pid == pid
    assert "Traceback" not in process.log()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "examples").glob("datasyncaccesspolicy-*.yaml")),
                         ids=lambda p: p.name)
def test_the_policy_examples_pass_the_api_servers_validation(plane: ControlPlane, path: Path) -> None:
    done = plane.kubectl("apply", "--dry-run=server", "-f", str(path))
    assert "created (server dry run)" in done.stdout, done.stdout
