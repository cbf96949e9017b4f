"""The access decision (access.py): policies + namespace labels + spec -> granted role or refusal."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from datasync_operator.access import (
    AccessDirectory,
    AccessPolicy,
    AssumedRole,
    Granted,
    InvalidPolicy,
    LabelSelector,
    Refused,
    Request,
    Undecided,
    decide,
)
from datasync_operator.spec import Spec, parse_spec

OWN = "111111111111"
A = "222222222222"
B = "333333333333"
ROLE_A = f"arn:aws:iam::{A}:role/tenants/team-a/datasync"
ARN = "arn:aws:datasync:{region}:{account}:task/task-0123456789abcdef0/execution/exec-0123456789abcdef0"


def body(name: str, rv: int = 1, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}, "spec": spec}


def policy(name: str, **spec: Any) -> AccessPolicy:
    parsed = AccessPolicy.from_body(body(name, **spec))
    assert isinstance(parsed, AccessPolicy), parsed
    return parsed


def request(account: str = A, region: str = "us-east-1", role: str | None = None,
            namespace: str = "team-a") -> Request:
    return Request(namespace, account, region, role)


def exec_spec(account: str = A, region: str = "us-east-1", **extra: Any) -> Spec:
    parsed = parse_spec({"executionArn": ARN.format(region=region, account=account), **extra})
    assert isinstance(parsed, Spec)
    return parsed


# --- label selectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ({}, {}, True),
    ({}, {"any": "thing"}, True),
    ({"matchLabels": {"tenant": "a"}}, {"tenant": "a"}, True),
    ({"matchLabels": {"tenant": "a"}}, {"tenant": "b"}, False),
    ({"matchLabels": {"tenant": "a"}}, {}, False),
    ({"matchLabels": {"tenant": "a", "tier": "prod"}}, {"tenant": "a"}, False),
    ({"matchExpressions": [{"key": "tenant", "operator": "In", "values": ["a", "b"]}]}, {"tenant": "b"}, True),
    ({"matchExpressions": [{"key": "tenant", "operator": "In", "values": ["a"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tenant", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tenant", "operator": "NotIn", "values": ["a"]}]}, {"tenant": "a"}, False),
    ({"matchExpressions": [{"key": "tenant", "operator": "Exists"}]}, {"tenant": ""}, True),
    ({"matchExpressions": [{"key": "tenant", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "tenant", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "tenant", "operator": "DoesNotExist"}]}, {"tenant": "a"}, False),
    ({"matchLabels": {"tenant": "a"},
      "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]},
     {"tenant": "a", "tier": "prod"}, False),
])
def test_label_selectors_have_the_kubernetes_semantics(
    selector: dict[str, Any], labels: dict[str, str], matches: bool
) -> None:
    assert LabelSelector.parse(selector, "s").matches(labels) is matches


# --- parsing ------------------------------------------------------------------------------------


def test_a_full_policy_is_parsed_once_into_typed_values() -> None:
    parsed = policy(
        "team-a", namespaces=["team-a"], namespaceSelector={"matchLabels": {"tenant": "a"}},
        accounts=[A], regions=["us-east-1", "eu-west-1"], roleArn=ROLE_A, externalId="ext-123",
        allowedRoleArns=[f"arn:aws:iam::{A}:role/exact"],
        allowedRoleArnPrefixes=[f"arn:aws:iam::{A}:role/team-a/"],
    )
    assert parsed.namespaces == {"team-a"}
    assert parsed.accounts == {A}
    assert parsed.regions == frozenset({"us-east-1", "eu-west-1"})
    assert parsed.role_arn == ROLE_A
    assert parsed.external_id == "ext-123"
    assert "ext-123" not in repr(parsed)  # the ExternalId stays out of logs
    assert "ext-123" not in repr(AssumedRole(ROLE_A, "ext-123"))
    assert policy("p", namespaces=["x"], accounts=[A]).regions is None  # every region


@pytest.mark.parametrize(("spec", "field"), [
    ({"accounts": [A]}, "select namespaces"),
    ({"namespaces": ["x"]}, "spec.accounts"),
    ({"namespaces": ["x"], "accounts": []}, "spec.accounts"),
    ({"namespaces": ["x"], "accounts": ["12345678901"]}, "spec.accounts[0]"),
    ({"namespaces": ["x"], "accounts": ["1234567890123"]}, "spec.accounts[0]"),
    ({"namespaces": ["x"], "accounts": ["\uff11" * 12]}, "spec.accounts[0]"),  # fullwidth digits
    ({"namespaces": ["x"], "accounts": [A], "externalId": "caf\u00e9-id"}, "spec.externalId"),
    ({"namespaces": ["X_y"], "accounts": [A]}, "spec.namespaces[0]"),
    ({"namespaces": ["x"], "accounts": [A], "regions": ["US-EAST-1"]}, "spec.regions[0]"),
    ({"namespaces": ["x"], "accounts": [A], "regions": ["-"]}, "spec.regions[0]"),
    ({"namespaces": ["x"], "accounts": [A], "roleArn": "arn:aws:iam::2:role/x"}, "spec.roleArn"),
    ({"namespaces": ["x"], "accounts": [A], "externalId": "x"}, "spec.externalId"),
    ({"namespaces": ["x"], "accounts": [A], "externalId": "a b"}, "spec.externalId"),
    ({"namespaces": ["x"], "accounts": [A], "allowedRoleArns": ["arn:aws:iam::*:role/x"]}, "spec.allowedRoleArns[0]"),
    ({"namespaces": ["x"], "accounts": [A], "allowedRoleArnPrefixes": [f"arn:aws:iam::{A}:role/"]}, "spec.allowedRoleArnPrefixes[0]"),
    ({"namespaces": ["x"], "accounts": [A], "allowedRoleArnPrefixes": [f"arn:aws:iam::{A}:role/team-a"]}, "spec.allowedRoleArnPrefixes[0]"),
    ({"namespaces": ["x"], "accounts": [A], "allowedRoleArnPrefixes": ["arn:aws:iam::"]}, "spec.allowedRoleArnPrefixes[0]"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}, "accounts": [A]}, "values must not be empty"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}, "accounts": [A]}, "values must be empty"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "Has"}]}, "accounts": [A]}, "operator must be one of"),
    ({"namespaceSelector": "tenant=a", "accounts": [A]}, "spec.namespaceSelector"),
])
def test_a_policy_that_slipped_past_the_schema_is_invalid_and_names_the_field(
    spec: dict[str, Any], field: str
) -> None:
    parsed = AccessPolicy.from_body(body("bad", **spec))
    assert isinstance(parsed, InvalidPolicy)
    assert field in parsed.message


# --- no policies at all ---------------------------------------------------------------------------


def test_without_policies_the_own_account_is_allowed_from_any_namespace() -> None:
    assert decide(request(OWN, namespace="anything"), [], None, own_account=OWN) == Granted()


def test_without_policies_another_account_is_refused_when_the_own_account_is_known() -> None:
    verdict = decide(request(A), [], None, own_account=OWN)
    assert isinstance(verdict, Refused)
    assert f"account {A}" in verdict.message and OWN in verdict.message


def test_without_policies_and_unknown_own_account_aws_decides() -> None:
    assert decide(request(A), [], None, own_account=None) == Granted()


def test_without_policies_naming_a_role_is_always_refused() -> None:
    verdict = decide(request(OWN, role=ROLE_A), [], None, own_account=OWN)
    assert isinstance(verdict, Refused)
    assert f"spec.roleArn {ROLE_A}" in verdict.message
    assert "no DataSyncAccessPolicy exists" in verdict.message


# --- with policies --------------------------------------------------------------------------------


def test_a_namespace_no_policy_selects_may_do_nothing_even_in_the_own_account() -> None:
    policies = [policy("team-b", namespaces=["team-b"], accounts=[B]),
                policy("team-c", namespaceSelector={"matchLabels": {"tenant": "c"}}, accounts=[OWN])]
    verdict = decide(request(OWN), policies, {"tenant": "a"}, own_account=OWN)
    assert isinstance(verdict, Refused)
    assert "no DataSyncAccessPolicy selects namespace 'team-a'" in verdict.message
    assert "team-b; team-c" in verdict.message
    assert verdict.considered == ("team-b", "team-c")


def test_the_granting_policy_names_the_role_and_external_id() -> None:
    p = policy("team-a", namespaces=["team-a"], accounts=[A], roleArn=ROLE_A, externalId="xid-1")
    assert decide(request(A), [p], None) == Granted("team-a", AssumedRole(ROLE_A, "xid-1"))


def test_a_policy_without_a_role_grants_the_operators_own_identity() -> None:
    p = policy("own", namespaceSelector={}, accounts=[OWN])
    assert decide(request(OWN), [p], {}) == Granted("own", None)


@pytest.mark.parametrize(("asked", "refused"), [
    (request(account=B), f"account {B}"),
    (request(region="eu-west-1"), "region eu-west-1"),
    (request(role=f"arn:aws:iam::{A}:role/tenants/team-b/datasync"), "roleArn arn:aws:iam::"),
])
def test_a_refusal_names_what_was_refused_and_the_policies_considered(
    asked: Request, refused: str
) -> None:
    policies = [
        policy("team-a", namespaces=["team-a"], accounts=[A], regions=["us-east-1"],
               allowedRoleArnPrefixes=[f"arn:aws:iam::{A}:role/tenants/team-a/"]),
        policy("zz-other", namespaces=["elsewhere"], accounts=[B]),
    ]
    verdict = decide(asked, policies, None)
    assert isinstance(verdict, Refused)
    assert refused in verdict.message
    assert "namespace 'team-a'" in verdict.message
    assert "team-a does not grant" in verdict.message
    assert verdict.considered == ("team-a",)  # only the policies that select the namespace


EXACT = f"arn:aws:iam::{A}:role/tenants/team-a/datasync"
PREFIX = f"arn:aws:iam::{A}:role/tenants/team-a/"
EXACT_LOOKALIKES = [
    f"arn:aws:iam::{A}:role/tenants/team-a/datasync2",      # a longer name
    f"arn:aws:iam::{A}:role/tenants/team-a/Datasync",       # case differs
    f"arn:aws:iam::{A}:role/tenants/team-a/datasync/",      # a trailing slash
    f"arn:aws:iam::{B}:role/tenants/team-a/datasync",       # another account
    f"arn:aws-cn:iam::{A}:role/tenants/team-a/datasync",    # another partition
    f"arn:aws:iam::{A}:role/x/tenants/team-a/datasync",     # the path deeper down
]
PREFIX_LOOKALIKES = [
    f"arn:aws:iam::{A}:role/tenants/team-admin/datasync",   # a prefix that is not a path
    f"arn:aws:iam::{A}:role/tenants/team-a",                # the path itself, not a role under it
    f"arn:aws:iam::{A}:role/tenants/TEAM-A/x",              # case differs in the path
    f"arn:aws:iam::{B}:role/tenants/team-a/x",              # another account
    f"arn:aws-us-gov:iam::{A}:role/tenants/team-a/x",       # another partition
    f"arn:aws:iam::{A}:role/tenants/team-a-evil/x",         # the path with a suffix
]


@pytest.mark.parametrize("lookalike", EXACT_LOOKALIKES)
def test_lookalikes_of_an_exact_role_arn_are_refused(lookalike: str) -> None:
    p = policy("team-a", namespaces=["team-a"], accounts=[A], allowedRoleArns=[EXACT])
    assert isinstance(decide(request(role=EXACT), [p], None), Granted)
    assert isinstance(decide(request(role=lookalike), [p], None), Refused)


@pytest.mark.parametrize("lookalike", PREFIX_LOOKALIKES)
def test_lookalikes_of_a_role_path_are_refused(lookalike: str) -> None:
    p = policy("team-a", namespaces=["team-a"], accounts=[A], allowedRoleArnPrefixes=[PREFIX])
    assert isinstance(decide(request(role=PREFIX + "nightly/copy"), [p], None), Granted)
    assert isinstance(decide(request(role=lookalike), [p], None), Refused)


def test_a_granted_role_is_assumed_with_the_external_id_of_the_policy_that_granted_it() -> None:
    p = policy("team-a", namespaces=["team-a"], accounts=[A], roleArn=ROLE_A, externalId="xid-a",
               allowedRoleArns=[f"arn:aws:iam::{A}:role/other"])
    verdict = decide(request(role=f"arn:aws:iam::{A}:role/other"), [p], None)
    assert verdict == Granted("team-a", AssumedRole(f"arn:aws:iam::{A}:role/other", "xid-a"))


def test_policies_combine_by_union_but_never_mix_account_of_one_with_region_of_another() -> None:
    policies = [
        policy("p1", namespaces=["team-a"], accounts=[A], regions=["us-east-1"]),
        policy("p2", namespaces=["team-a"], accounts=[B], regions=["eu-west-1"]),
    ]
    assert isinstance(decide(request(A, "us-east-1"), policies, None), Granted)
    assert isinstance(decide(request(B, "eu-west-1"), policies, None), Granted)
    mixed = decide(request(A, "eu-west-1"), policies, None)
    assert isinstance(mixed, Refused)
    assert "region eu-west-1" in mixed.message and f"account {A}" in mixed.message
    assert mixed.considered == ("p1", "p2")


def test_the_first_policy_by_name_decides_the_role_whatever_the_order_they_come_in() -> None:
    later = policy("b-later", namespaces=["team-a"], accounts=[A], roleArn=f"arn:aws:iam::{A}:role/b")
    first = policy("a-first", namespaces=["team-a"], accounts=[A], roleArn=f"arn:aws:iam::{A}:role/a")
    for order in ([later, first], [first, later]):
        verdict = decide(request(), order, None)
        assert verdict == Granted("a-first", AssumedRole(f"arn:aws:iam::{A}:role/a"))
    # a policy that does not allow the request does not take part in the choice
    narrow = policy("0-narrow", namespaces=["team-a"], accounts=[A], regions=["eu-west-1"],
                    roleArn=f"arn:aws:iam::{A}:role/narrow")
    assert decide(request(), [later, narrow, first], None) == Granted(
        "a-first", AssumedRole(f"arn:aws:iam::{A}:role/a"))


def test_labels_are_needed_only_when_a_policy_selects_by_label() -> None:
    by_name = policy("names", namespaces=["team-a"], accounts=[A])
    by_label = policy("labels", namespaceSelector={"matchLabels": {"tenant": "a"}}, accounts=[A])
    assert isinstance(decide(request(), [by_name], None), Granted)
    assert decide(request(), [by_name, by_label], None) == Undecided("team-a")
    assert isinstance(decide(request(), [by_label], {"tenant": "a"}), Granted)
    assert isinstance(decide(request(), [by_label], {"tenant": "b"}), Refused)


def test_an_invalid_policy_grants_nothing_and_is_named_with_its_problem() -> None:
    bad = AccessPolicy.from_body(body("broken", namespaces=["team-a"], accounts=["1"]))
    assert isinstance(bad, InvalidPolicy)
    verdict = decide(request(), [bad], None)
    assert isinstance(verdict, Refused)
    assert "broken (invalid: spec.accounts[0]" in verdict.message


def test_the_message_stays_bounded_with_many_policies() -> None:
    policies = [policy(f"p{n:03}", namespaces=["team-a"], accounts=[B]) for n in range(300)]
    verdict = decide(request(), policies, None)
    assert isinstance(verdict, Refused)
    assert "and 290 more" in verdict.message
    assert len(verdict.message) < 1024
    assert len(verdict.considered) == 300


def test_every_combination_against_a_reference() -> None:
    """Exhaustive over what a request can differ in, against the rule written plainly."""
    grant = policy("team-a", namespaceSelector={"matchLabels": {"tenant": "a"}}, accounts=[A],
                   regions=["us-east-1"], roleArn=ROLE_A,
                   allowedRoleArns=[f"arn:aws:iam::{A}:role/exact"],
                   allowedRoleArnPrefixes=[f"arn:aws:iam::{A}:role/team-a/"])
    roles = [None, f"arn:aws:iam::{A}:role/exact", f"arn:aws:iam::{A}:role/team-a/x",
             f"arn:aws:iam::{A}:role/exact2", f"arn:aws:iam::{A}:role/team-ab/x"]
    granted_roles = {f"arn:aws:iam::{A}:role/exact", f"arn:aws:iam::{A}:role/team-a/x"}
    for account, region, role, labels in itertools.product(
        [A, B, OWN], ["us-east-1", "eu-west-1"], roles,
        [{"tenant": "a"}, {"tenant": "b"}, {}],
    ):
        verdict = decide(request(account, region, role), [grant], labels, own_account=OWN)
        allowed = (labels.get("tenant") == "a" and account == A and region == "us-east-1"
                   and (role is None or role in granted_roles))
        assert isinstance(verdict, Granted) is allowed, (account, region, role, labels, verdict)
        if allowed:
            assert verdict == Granted("team-a", AssumedRole(role or ROLE_A))


# --- the directory --------------------------------------------------------------------------------


def names(directory: AccessDirectory) -> list[str]:
    return [entry.name for entry in directory.policies]


def test_nothing_is_decided_before_the_policies_were_listed_once() -> None:
    assert not AccessDirectory().synced
    directory = AccessDirectory()
    directory.listed([])
    assert directory.synced
    assert directory.verdict("team-a", exec_spec()) == Granted()


def test_older_copies_and_copies_from_before_a_deletion_are_ignored() -> None:
    directory = AccessDirectory(synced=True)
    directory.observe_policy("ADDED", body("p", 5, namespaces=["team-a"], accounts=[A]))
    directory.observe_policy("MODIFIED", body("p", 4, namespaces=["team-a"], accounts=[B]))
    assert isinstance(directory.verdict("team-a", exec_spec(A)), Granted)
    directory.observe_policy("DELETED", body("p", 6, namespaces=["team-a"], accounts=[A]))
    directory.listed([body("p", 5, namespaces=["team-a"], accounts=[A])])  # a list read earlier
    assert names(directory) == []
    directory.observe_policy("ADDED", body("p", 7, namespaces=["team-a"], accounts=[B]))
    assert names(directory) == ["p"]
    assert isinstance(directory.verdict("team-a", exec_spec(B)), Granted)


def test_a_policy_change_concerns_the_namespaces_the_old_or_new_version_selects() -> None:
    directory = AccessDirectory(synced=True)
    directory.observe_namespace("ADDED", {"metadata": {"name": "team-a", "labels": {"tenant": "a"}}})
    directory.observe_namespace("ADDED", {"metadata": {"name": "team-b", "labels": {"tenant": "b"}}})
    first = directory.observe_policy("ADDED", body("other", 1, namespaces=["x"], accounts=[A]))
    assert first("team-a") and first("team-b")  # the first policy: the rules changed everywhere
    affected = directory.observe_policy(
        "ADDED", body("p", 2, namespaceSelector={"matchLabels": {"tenant": "a"}}, accounts=[A]))
    assert affected("team-a") and not affected("team-b")
    moved = directory.observe_policy("MODIFIED", body("p", 3, namespaces=["team-b"], accounts=[A]))
    assert moved("team-a") and moved("team-b")
    assert moved("team-c")  # labels not known yet: it may be concerned
    directory.observe_namespace("ADDED", {"metadata": {"name": "team-d", "labels": {}}})
    assert not moved("team-d")
    assert directory.observe_policy("MODIFIED", body("p", 3, namespaces=["x"], accounts=[A]))("x") is False
    assert directory.observe_policy("ADDED", body("p2", 4, namespaceSelector={}, accounts=[A]))("unknown-ns")


def test_namespace_label_changes_are_reported_and_used() -> None:
    directory = AccessDirectory(synced=True)
    directory.observe_policy("ADDED", body("p", 1, namespaceSelector={"matchLabels": {"tenant": "a"}}, accounts=[A]))
    assert directory.needs_labels
    assert isinstance(directory.verdict("team-a", exec_spec()), Undecided)
    assert directory.observe_namespace("ADDED", {"metadata": {"name": "team-a", "labels": {"tenant": "a"}}})
    assert not directory.observe_namespace("MODIFIED", {"metadata": {"name": "team-a", "labels": {"tenant": "a"}}})
    assert isinstance(directory.verdict("team-a", exec_spec()), Granted)
    assert directory.observe_namespace("MODIFIED", {"metadata": {"name": "team-a", "labels": {}}})
    assert isinstance(directory.verdict("team-a", exec_spec()), Refused)
    assert directory.observe_namespace("DELETED", {"metadata": {"name": "team-a"}})
    assert directory.labels("team-a") is None


def test_when_the_last_policy_goes_the_rules_without_policies_wait_a_grace_period() -> None:
    """Replacing a policy by deleting and creating it (Helm hooks) opens no permissive window."""
    now = [100.0]
    directory = AccessDirectory(synced=True, empty_grace=5.0, clock=lambda: now[0])
    narrow = body("only", 1, namespaces=["elsewhere"], accounts=[A])
    directory.observe_policy("ADDED", narrow)
    assert isinstance(directory.verdict("team-a", exec_spec()), Refused)
    directory.observe_policy("DELETED", body("only", 2, namespaces=["elsewhere"], accounts=[A]))
    assert isinstance(directory.verdict("team-a", exec_spec()), Undecided)
    now[0] += 4.9
    assert isinstance(directory.verdict("team-a", exec_spec()), Undecided)
    directory.observe_policy("ADDED", body("only", 3, namespaces=["elsewhere"], accounts=[A]))
    assert isinstance(directory.verdict("team-a", exec_spec()), Refused)  # replaced in time
    directory.observe_policy("DELETED", body("only", 4, namespaces=["elsewhere"], accounts=[A]))
    now[0] += 5.0
    assert directory.verdict("team-a", exec_spec()) == Granted()  # gone for good: no policies


def test_a_cluster_that_never_had_policies_needs_no_grace_period() -> None:
    directory = AccessDirectory(empty_grace=5.0, clock=lambda: 0.0)
    directory.listed([])
    assert directory.verdict("team-a", exec_spec()) == Granted()
