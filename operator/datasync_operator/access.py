"""Who may act on which executions: the DataSyncAccessPolicy decision, made before any AWS call.

Pure, no I/O. An administrator grants namespaces access with cluster-scoped
``DataSyncAccessPolicy`` objects (``crds/datasyncaccesspolicy.yaml``): for the namespaces a
policy selects (by name and/or label selector), which AWS accounts and regions their executions
may be in, which IAM role the operator assumes for them (with an optional ExternalId), and which
``spec.roleArn`` values their users may name. :func:`decide` turns the policies, the labels of
the resource's namespace and the spec into a :data:`Verdict`:

- :class:`Granted`: act, as the operator itself or through the role it names;
- :class:`Refused`: no AWS call; the message names what was refused and the policies considered;
- :class:`Undecided`: a policy needs the namespace's labels and they are not known yet.

The rules, in one place (the CRD descriptions and the README say the same):

- **No policy objects at all**: executions in the operator's own account (``--account-id``;
  when it is not configured, AWS itself refuses other accounts, since the operator's identity
  can only act in its own) are allowed from every namespace, as the operator itself, and
  ``spec.roleArn`` is refused: naming a role always needs an administrator's grant.
- **At least one policy**: a namespace that no policy selects may do nothing. Policies combine by
  union: an execution is allowed when one selecting policy allows its account and region (and its
  ``spec.roleArn``, when set). When several do, the first by name decides the role: the
  ``spec.roleArn`` it lets the user name, else its own ``roleArn``, else the operator's own
  identity; its ``externalId`` goes with whichever role is assumed.
- Comparisons are exact and case-sensitive; a role prefix is an IAM path ending in ``/``.

The controller (:mod:`.controller`) keeps the policies and namespace labels in a
:class:`AccessDirectory` fed by watch events, and asks it before every AWS call.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasync_operator.arn import ROLE_ARN_PATTERN
from datasync_operator.spec import Spec

#: The policy resource (cluster-scoped, in the operator's API group and version).
POLICY_PLURAL = "datasyncaccesspolicies"
POLICY_KIND = "DataSyncAccessPolicy"

#: Seconds after the last policy went before the rules of a cluster without policies apply:
#: replacing a policy by deleting and creating it (as Helm hooks do) never opens a window in
#: which the more permissive rules would apply.
EMPTY_GRACE = 5.0

#: Most policies named in a refusal message (the rest are counted).
MAX_NAMED = 10

_ACCOUNT = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2,4}(-[a-z0-9]+)+-[0-9]+")
_ROLE_ARN = re.compile(ROLE_ARN_PATTERN)
#: A role prefix is an IAM path: at least one path element after ``role/``, ending in ``/``.
_ROLE_PREFIX = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov|aws-eusc|aws-iso|aws-iso-b):iam::[0-9]{12}"
    r":role/([A-Za-z0-9+=,.@_-]+/)+"
)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class PolicyError(ValueError):
    """A policy object that slipped past the CRD schema; the message names the field."""


# --- label selectors (metav1.LabelSelector semantics) -------------------------------------------


class Operator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case Operator.IN:
                return self.key in labels and labels[self.key] in self.values
            case Operator.NOT_IN:
                return self.key not in labels or labels[self.key] not in self.values
            case Operator.EXISTS:
                return self.key in labels
            case Operator.DOES_NOT_EXIST:
                return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """``matchLabels`` and ``matchExpressions``, all of which must hold; empty matches all."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    @classmethod
    def parse(cls, raw: object, path: str) -> LabelSelector:
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{path} must be a label selector object")
        requirements: list[Requirement] = []
        match_labels = raw.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise PolicyError(f"{path}.matchLabels must be a map of strings")
        for key, value in match_labels.items():
            if not isinstance(value, str):
                raise PolicyError(f"{path}.matchLabels[{key!r}] must be a string")
            requirements.append(Requirement(str(key), Operator.IN, frozenset({value})))
        expressions = raw.get("matchExpressions") or []
        if not isinstance(expressions, list):
            raise PolicyError(f"{path}.matchExpressions must be a list")
        for index, expression in enumerate(expressions):
            where = f"{path}.matchExpressions[{index}]"
            if not isinstance(expression, Mapping) or not isinstance(expression.get("key"), str):
                raise PolicyError(f"{where} must have a key")
            try:
                operator = Operator(str(expression.get("operator")))
            except ValueError:
                allowed = ", ".join(op.value for op in Operator)
                raise PolicyError(f"{where}.operator must be one of {allowed}") from None
            values = expression.get("values") or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise PolicyError(f"{where}.values must be a list of strings")
            needs_values = operator in (Operator.IN, Operator.NOT_IN)
            if needs_values != bool(values):
                rule = "must not be empty" if needs_values else "must be empty"
                raise PolicyError(f"{where}.values {rule} for operator {operator.value}")
            requirements.append(Requirement(expression["key"], operator, frozenset(values)))
        return cls(tuple(requirements))


# --- policies -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssumedRole:
    """The IAM role the operator assumes for an execution, and the ExternalId it sends."""

    role_arn: str
    external_id: str | None = None

    def __repr__(self) -> str:  # the ExternalId stays out of logs
        return f"AssumedRole({self.role_arn!r})"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """One valid DataSyncAccessPolicy, parsed once when it is seen."""

    name: str
    namespaces: frozenset[str] = frozenset()
    selector: LabelSelector | None = None
    accounts: frozenset[str] = frozenset()
    #: None: every region (of the partition the ARN names).
    regions: frozenset[str] | None = None
    #: The role the operator assumes for these namespaces' executions (None: its own identity).
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    allowed_role_arns: frozenset[str] = frozenset()
    allowed_role_arn_prefixes: tuple[str, ...] = ()

    @property
    def needs_labels(self) -> bool:
        return self.selector is not None

    def selects(self, namespace: str, labels: Mapping[str, str] | None) -> bool | None:
        """Whether the policy applies to ``namespace``; None when that needs unknown labels."""
        if namespace in self.namespaces:
            return True
        if self.selector is None:
            return False
        if labels is None:
            return None
        return self.selector.matches(labels)

    def allows_role(self, role_arn: str) -> bool:
        return role_arn in self.allowed_role_arns or any(
            role_arn.startswith(prefix) for prefix in self.allowed_role_arn_prefixes
        )

    def mismatch(self, request: Request) -> str | None:
        """What this policy does not grant of ``request`` (the first thing), or None."""
        if request.account not in self.accounts:
            return f"account {request.account}"
        if self.regions is not None and request.region not in self.regions:
            return f"region {request.region}"
        if request.role_arn is not None and not self.allows_role(request.role_arn):
            return f"roleArn {request.role_arn}"
        return None

    def role_for(self, request: Request) -> AssumedRole | None:
        role_arn = request.role_arn or self.role_arn
        return None if role_arn is None else AssumedRole(role_arn, self.external_id)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AccessPolicy | InvalidPolicy:
        """Parse a DataSyncAccessPolicy object; never raises."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        try:
            return _parse_policy(name, body.get("spec"))
        except PolicyError as error:
            return InvalidPolicy(name, str(error))


@dataclass(frozen=True, slots=True)
class InvalidPolicy:
    """A policy object that slipped past the CRD schema: it grants nothing."""

    name: str
    message: str


def _strings(raw: object, path: str, pattern: re.Pattern[str], what: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PolicyError(f"{path} must be a list")
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise PolicyError(f"{path}[{index}] {value!r} is not {what}")
    return list(raw)


def _parse_policy(name: str, spec: object) -> AccessPolicy:
    if not isinstance(spec, Mapping):
        raise PolicyError("spec is required and must be an object")
    namespaces = _strings(spec.get("namespaces"), "spec.namespaces", _NAMESPACE, "a namespace")
    raw_selector = spec.get("namespaceSelector")
    selector = None
    if raw_selector is not None:
        selector = LabelSelector.parse(raw_selector, "spec.namespaceSelector")
    if not namespaces and selector is None:
        raise PolicyError("spec must select namespaces: set namespaces, namespaceSelector or both")
    accounts = _strings(spec.get("accounts"), "spec.accounts", _ACCOUNT, "a 12-digit account id")
    if not accounts:
        raise PolicyError("spec.accounts must name at least one account")
    raw_regions = spec.get("regions")
    regions = _strings(raw_regions, "spec.regions", _REGION, "a region name")
    role_arn = spec.get("roleArn")
    if role_arn is not None and (not isinstance(role_arn, str) or not _ROLE_ARN.match(role_arn)):
        raise PolicyError(f"spec.roleArn {role_arn!r} is not an IAM role ARN")
    external_id = spec.get("externalId")
    if external_id is not None and (
        not isinstance(external_id, str) or not _EXTERNAL_ID.fullmatch(external_id)
    ):
        raise PolicyError("spec.externalId must be 2 to 1224 characters of [\\w+=,.@:/-]")
    allowed = _strings(
        spec.get("allowedRoleArns"), "spec.allowedRoleArns", _ROLE_ARN, "an IAM role ARN"
    )
    prefixes = _strings(
        spec.get("allowedRoleArnPrefixes"),
        "spec.allowedRoleArnPrefixes",
        _ROLE_PREFIX,
        "a role ARN prefix ending in an IAM path (arn:<partition>:iam::<account>:role/<path>/)",
    )
    return AccessPolicy(
        name=name,
        namespaces=frozenset(namespaces),
        selector=selector,
        accounts=frozenset(accounts),
        regions=None if raw_regions is None else frozenset(regions),
        role_arn=role_arn,
        external_id=external_id,
        allowed_role_arns=frozenset(allowed),
        allowed_role_arn_prefixes=tuple(prefixes),
    )


Policy = AccessPolicy | InvalidPolicy


# --- the decision -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """What a DataSyncExecution asks for: where its execution is, and the role it names."""

    namespace: str
    account: str
    region: str
    role_arn: str | None = None

    @classmethod
    def of(cls, namespace: str, spec: Spec) -> Request:
        return cls(namespace, spec.arn.account, spec.arn.region, spec.role_arn)


@dataclass(frozen=True, slots=True)
class Granted:
    """Act: as the operator itself (``role`` None) or through ``role``."""

    #: The policy that granted it (None: the rule for a cluster without policies).
    policy: str | None = None
    role: AssumedRole | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """No AWS call; ``message`` names what was refused and the policies considered."""

    message: str
    considered: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Undecided:
    """Not decidable yet: the namespace's labels are needed (a policy has a namespaceSelector)
    and not known, or the last policy just went (see :data:`EMPTY_GRACE`)."""

    namespace: str


Verdict = Granted | Refused | Undecided


def decide(
    request: Request,
    policies: Sequence[Policy],
    labels: Mapping[str, str] | None,
    *,
    own_account: str | None = None,
) -> Verdict:
    """The verdict on ``request`` under ``policies`` (in any order) for a namespace with
    ``labels`` (None: not known yet)."""
    if not policies:
        return _without_policies(request, own_account)
    ordered = sorted(policies, key=lambda p: p.name)
    valid = [p for p in ordered if isinstance(p, AccessPolicy)]
    if labels is None and any(p.needs_labels for p in valid):
        return Undecided(request.namespace)
    selecting = [p for p in valid if p.selects(request.namespace, labels)]
    if not selecting:
        return _refuse_unselected(request, ordered)
    mismatches: list[tuple[str, str]] = []
    for policy in selecting:
        missing = policy.mismatch(request)
        if missing is None:
            return Granted(policy.name, policy.role_for(request))
        mismatches.append((policy.name, missing))
    refused = list(dict.fromkeys(missing for _, missing in mismatches))
    details = [f"{name} does not grant {missing}" for name, missing in mismatches]
    message = (
        f"not permitted for namespace {request.namespace!r}: {_join(refused)}; "
        f"policies considered: {_named(details)}"
    )
    return Refused(message, tuple(name for name, _ in mismatches))


def _without_policies(request: Request, own_account: str | None) -> Verdict:
    if request.role_arn is not None:
        return Refused(
            f"not permitted: spec.roleArn {request.role_arn} is refused because no "
            "DataSyncAccessPolicy exists; naming a role needs an administrator's grant "
            "(allowedRoleArns or allowedRoleArnPrefixes of a policy that selects namespace "
            f"{request.namespace!r})"
        )
    if own_account is not None and request.account != own_account:
        return Refused(
            f"not permitted: account {request.account} is refused because no "
            "DataSyncAccessPolicy exists, and then only the operator's own account "
            f"({own_account}) is allowed"
        )
    return Granted()


def _refuse_unselected(request: Request, ordered: Sequence[Policy]) -> Refused:
    names = [
        p.name if isinstance(p, AccessPolicy) else f"{p.name} (invalid: {p.message})"
        for p in ordered
    ]
    return Refused(
        f"not permitted: no DataSyncAccessPolicy selects namespace {request.namespace!r}; "
        f"policies considered: {_named(names)}",
        tuple(p.name for p in ordered),
    )


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _named(items: Sequence[str]) -> str:
    shown = list(items[:MAX_NAMED])
    if len(items) > MAX_NAMED:
        shown.append(f"and {len(items) - MAX_NAMED} more")
    return "; ".join(shown)


# --- the directory the controller keeps -------------------------------------------------------


def _version(meta: Mapping[str, Any]) -> int | None:
    raw = str(meta.get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else None


def _labels(meta: Mapping[str, Any]) -> dict[str, str]:
    raw = meta.get("labels") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


#: Which namespaces a change concerns (called with a namespace name).
Affected = Callable[[str], bool]


def _nothing(_: str) -> bool:
    return False


def _everything(_: str) -> bool:
    return True


@dataclass(slots=True)
class _Entry:
    version: int | None
    policy: Policy


class AccessDirectory:
    """The policies and namespace labels the operator has seen, and the verdicts they give.

    Fed by watch events (:meth:`observe_policy`, :meth:`observe_namespace`) and by one list of
    the policies at startup (:meth:`listed`): until that list is in, nothing is decided
    (:attr:`synced` is False), so that a restart never acts on an empty view of the policies.
    Copies are applied in resourceVersion order, and a deletion is remembered, so a list that
    was read before a change cannot bring back an older copy. When the last policy goes, the
    rules of a cluster without policies apply only after ``empty_grace`` seconds.
    """

    def __init__(
        self,
        *,
        own_account: str | None = None,
        synced: bool = False,
        empty_grace: float = EMPTY_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.own_account = own_account
        self.synced = synced
        self.empty_grace = empty_grace
        self.clock = clock
        #: When the last policy went (None: there are policies, or there never were any).
        self._emptied_at: float | None = None
        self._policies: dict[str, _Entry] = {}
        self._deleted: dict[str, int | None] = {}
        self._namespaces: dict[str, dict[str, str]] = {}
        self._ordered: tuple[Policy, ...] | None = ()

    @property
    def policies(self) -> tuple[Policy, ...]:
        if self._ordered is None:
            entries = sorted(self._policies.values(), key=lambda e: e.policy.name)
            self._ordered = tuple(entry.policy for entry in entries)
        return self._ordered

    def labels(self, namespace: str) -> dict[str, str] | None:
        return self._namespaces.get(namespace)

    def verdict(self, namespace: str, spec: Spec) -> Verdict:
        if self._emptied_at is not None and not self._policies:
            if self.clock() - self._emptied_at < self.empty_grace:
                return Undecided(namespace)
            self._emptied_at = None
        return decide(
            Request.of(namespace, spec),
            self.policies,
            self._namespaces.get(namespace),
            own_account=self.own_account,
        )

    # --- policies ---

    def observe_policy(self, event_type: str | None, body: Mapping[str, Any]) -> Affected:
        """Apply a watch event of a policy; return which namespaces it may concern."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        version = _version(meta)
        old = self._policies.get(name)
        if old is not None and not _newer(version, old.version):
            return _nothing
        if event_type == "DELETED":
            if old is None:
                return _nothing
            del self._policies[name]
            self._deleted[name] = version
            self._ordered = None
            if not self._policies and self.synced:
                self._emptied_at = self.clock()
            return self._affected(old.policy, None)
        if old is None and name in self._deleted and not _newer(version, self._deleted[name]):
            return _nothing  # a copy from before its deletion
        self._deleted.pop(name, None)
        new = AccessPolicy.from_body(body)
        self._policies[name] = _Entry(version, new)
        self._ordered = None
        return self._affected(old.policy if old else None, new)

    def listed(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        """The policies as one list showed them; from now on verdicts are given."""
        for body in bodies:
            self.observe_policy("ADDED", body)
        self.synced = True

    def _affected(self, old: Policy | None, new: Policy | None) -> Affected:
        if (old is None) != (new is None) and len(self._policies) <= 1:
            return _everything  # the first policy came or the last went: the rules changed
        chosen = [p for p in (old, new) if p is not None]
        if any(not isinstance(p, AccessPolicy) for p in chosen):
            return _everything

        def concerns(namespace: str) -> bool:
            labels = self._namespaces.get(namespace)
            return any(
                p.selects(namespace, labels) is not False
                for p in chosen
                if isinstance(p, AccessPolicy)
            )

        return concerns

    # --- namespaces ---

    def observe_namespace(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """Apply a watch event of a namespace; True if its labels changed (or became known)."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        if event_type == "DELETED":
            return self._namespaces.pop(name, None) is not None
        labels = _labels(meta)
        if self._namespaces.get(name) == labels:
            return False
        self._namespaces[name] = labels
        return True

    @property
    def needs_labels(self) -> bool:
        return any(isinstance(p, AccessPolicy) and p.needs_labels for p in self.policies)


def _newer(version: int | None, than: int | None) -> bool:
    if version is None or than is None:
        return True
    return version > than
