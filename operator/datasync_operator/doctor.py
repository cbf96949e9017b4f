"""``datasync-operator doctor``: checks an installation the way the operator will use it.

Run in the operator's pod (``kubectl exec``), as the chart's ``helm test`` hook, or on a laptop
with the same kubeconfig and AWS profile the operator would use. Each check prints one line and
says what to fix; the command exits 1 when any check fails:

- **Kubernetes API**: logs in as the operator does and asks who it is (``SelfSubjectReview``);
- **CRD**: the DataSyncExecution CRD is installed, Established and has every spec field this
  operator reads (an older CRD left behind by ``helm upgrade`` shows here); the list of CRDs
  needs ``rbac.discovery``, else the check falls back to listing DataSyncExecutions;
- **RBAC**: every permission the operator needs, where it needs it, asked with
  ``SelfSubjectAccessReview`` (which every authenticated identity may ask);
- **AWS identity**: STS ``GetCallerIdentity`` with the standard credential chain (IRSA, EKS Pod
  Identity, environment, profile): the principal DataSync will see. With ``--execution-arn``,
  also ``DescribeTaskExecution`` of that execution (and with ``--role-arn``, assuming that role
  first, as ``spec.roleArn`` does).

Nothing is written but the two review objects, which the API server does not store.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from datasync_operator import GROUP, KIND, PLURAL, VERSION
from datasync_operator.access import POLICY_PLURAL
from datasync_operator.kube import KubeApiError, KubeClient, NotFound, ResourceRef

__all__ = ["Check", "DoctorSettings", "Status", "needed_permissions", "run_checks"]

logger = logging.getLogger("datasync_operator.doctor")

CRD_NAME = f"{PLURAL}.{GROUP}"
CRDS = ResourceRef("apiextensions.k8s.io", "v1", "customresourcedefinitions")
DSE = ResourceRef(GROUP, VERSION, PLURAL)
SELF_SUBJECT_REVIEWS = ResourceRef("authentication.k8s.io", "v1", "selfsubjectreviews")
ACCESS_REVIEWS = ResourceRef("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
#: The spec fields the operator reads; a CRD without one of them is older than the operator.
SPEC_FIELDS = frozenset({"executionArn", "desiredState", "deletionPolicy", "roleArn"})


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check: its name, status and a line a person can act on."""

    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"[{self.status.value:^4}] {self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class DoctorSettings:
    """What the operator is configured to do (the same flags and variables as ``run``)."""

    all_namespaces: bool
    namespaces: tuple[str, ...] = ()
    leader_election: bool = False
    lease_name: str = "datasync-operator"
    lease_namespace: str = "default"
    execution_arn: str | None = None
    role_arn: str | None = None


@dataclass(frozen=True, slots=True)
class Permission:
    group: str
    resource: str
    verb: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    def text(self) -> str:
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        if self.group:
            what += f".{self.group}"
        if self.name:
            what += f" {self.name}"
        return f"{self.verb} {what}"


def needed_permissions(settings: DoctorSettings) -> list[tuple[str, list[Permission]]]:
    """Every permission the operator uses, grouped by where it needs it (see the chart's RBAC)."""
    scopes: list[str | None] = [None] if settings.all_namespaces else [
        n for n in settings.namespaces if not any(c in n for c in "*?[!")
    ]
    groups: list[tuple[str, list[Permission]]] = []
    for namespace in scopes:
        where = "all namespaces" if namespace is None else f"namespace {namespace}"
        groups.append((where, [
            *(Permission(GROUP, PLURAL, verb, namespace)
              for verb in ("list", "watch", "get", "patch")),
            Permission(GROUP, PLURAL, "patch", namespace, subresource="status"),
            Permission("", "events", "create", namespace),
            Permission("", "events", "patch", namespace),
        ]))
    # The access decision, cluster-wide in every mode: without these nothing is ever decided.
    groups.append(("access policies and namespace labels", [
        Permission(GROUP, POLICY_PLURAL, "list", None),
        Permission(GROUP, POLICY_PLURAL, "watch", None),
        Permission("", "namespaces", "list", None),
        Permission("", "namespaces", "watch", None),
    ]))
    if settings.leader_election:
        namespace, name = settings.lease_namespace, settings.lease_name
        groups.append((f"Lease {namespace}/{name}", [
            Permission("coordination.k8s.io", "leases", "get", namespace, name),
            Permission("coordination.k8s.io", "leases", "update", namespace, name),
            Permission("coordination.k8s.io", "leases", "create", namespace),
        ]))
    return groups


async def check_identity(kube: KubeClient) -> Check:
    try:
        review = await kube.create(SELF_SUBJECT_REVIEWS, None, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
        })
    except KubeApiError as exc:
        if exc.status is None:
            return Check("Kubernetes API", Status.FAIL, f"cannot reach the API server: {exc}")
        # Older API servers, or SelfSubjectReview turned off: reachable and authenticated anyway.
        return Check("Kubernetes API", Status.OK, f"reachable (who am I: {exc})")
    user = ((review.get("status") or {}).get("userInfo") or {}).get("username") or "unknown"
    return Check("Kubernetes API", Status.OK, f"reachable, authenticated as {user}")


async def check_crd(kube: KubeClient, settings: DoctorSettings) -> Check:
    name = f"CRD {CRD_NAME}"
    try:
        page = await kube.list_page(CRDS, None, field_selector=f"metadata.name={CRD_NAME}")
    except KubeApiError as exc:
        if exc.status != 403:
            return Check(name, Status.FAIL, f"cannot list CRDs: {exc}")
        return await _check_crd_by_listing(kube, settings, name)
    items = page.get("items") or []
    if not items:
        return Check(name, Status.FAIL, "not installed: install it with the chart "
                     "(crds.enabled=true) or `kubectl apply --server-side -f crds/`")
    crd = items[0]
    status = crd.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Established") != "True":
        return Check(name, Status.FAIL, "installed but not Established yet")
    versions = {v.get("name"): v for v in (crd.get("spec") or {}).get("versions") or []}
    version = versions.get(VERSION)
    if version is None or not version.get("served"):
        return Check(name, Status.FAIL, f"does not serve {VERSION} (serves {sorted(versions)})")
    schema = ((version.get("schema") or {}).get("openAPIV3Schema") or {})
    spec = ((schema.get("properties") or {}).get("spec") or {}).get("properties") or {}
    missing = sorted(SPEC_FIELDS - set(spec))
    if missing:
        fields = ", ".join(f"spec.{field}" for field in missing)
        return Check(name, Status.FAIL, f"is older than this operator (no {fields}): upgrade "
                     "it (see the README's upgrade notes)")
    return Check(name, Status.OK, f"Established, serves {KIND} {VERSION} with every field this "
                 "operator reads")


async def _check_crd_by_listing(kube: KubeClient, settings: DoctorSettings, name: str) -> Check:
    namespace = None if settings.all_namespaces else next(iter(settings.namespaces), "default")
    try:
        await kube.list_page(DSE, namespace)
    except NotFound:
        return Check(name, Status.FAIL, "not installed (DataSyncExecutions are not served)")
    except KubeApiError as exc:
        return Check(name, Status.FAIL, f"cannot list CRDs or DataSyncExecutions: {exc}")
    return Check(name, Status.WARN, "served, but its schema was not checked (no list on CRDs: "
                 "rbac.discovery=false)")


async def _allowed(kube: KubeClient, permission: Permission) -> tuple[bool, str]:
    attributes: dict[str, Any] = {
        "group": permission.group, "resource": permission.resource, "verb": permission.verb,
    }
    for key, value in (("namespace", permission.namespace), ("name", permission.name),
                       ("subresource", permission.subresource)):
        if value:
            attributes[key] = value
    review = await kube.create(ACCESS_REVIEWS, None, {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    })
    status = review.get("status") or {}
    return bool(status.get("allowed")), str(status.get("reason") or "")


async def check_rbac(kube: KubeClient, settings: DoctorSettings) -> list[Check]:
    checks: list[Check] = []
    groups = needed_permissions(settings)
    if not groups:
        return [Check("RBAC", Status.WARN, "only namespace patterns are watched: nothing to check")]
    for where, permissions in groups:
        denied: list[str] = []
        try:
            for permission in permissions:
                allowed, _ = await _allowed(kube, permission)
                if not allowed:
                    denied.append(permission.text())
        except KubeApiError as exc:
            checks.append(Check(f"RBAC in {where}", Status.FAIL, f"cannot ask: {exc}"))
            continue
        if denied:
            checks.append(Check(f"RBAC in {where}", Status.FAIL, "denied: " + "; ".join(denied)))
        else:
            verbs = ", ".join(p.text() for p in permissions)
            checks.append(Check(f"RBAC in {where}", Status.OK, f"allowed: {verbs}"))
    return checks


def check_aws(settings: DoctorSettings) -> list[Check]:
    """The AWS principal of the standard credential chain, and optionally one execution."""
    import boto3
    import botocore.exceptions

    from datasync_operator.errors import sanitize

    session = boto3.Session()
    region = session.region_name or "us-east-1"
    checks: list[Check] = []
    try:
        identity = session.client("sts", region_name=region).get_caller_identity()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        why = sanitize(str(exc))
        return [Check("AWS identity", Status.FAIL, f"no usable AWS credentials: {why}")]
    checks.append(Check("AWS identity", Status.OK,
                        f"{identity.get('Arn')} (account {identity.get('Account')})"))
    if settings.execution_arn:
        checks.append(_check_execution(session, settings))
    return checks


def _check_execution(session: Any, settings: DoctorSettings) -> Check:
    import botocore.exceptions

    from datasync_operator.arn import parse_execution_arn
    from datasync_operator.errors import sanitize

    name = "DataSync"
    try:
        arn = parse_execution_arn(settings.execution_arn or "")
    except ValueError as exc:
        return Check(name, Status.FAIL, f"--execution-arn: {exc}")
    try:
        if settings.role_arn:
            credentials = session.client("sts", region_name=arn.region).assume_role(
                RoleArn=settings.role_arn, RoleSessionName="datasync-operator-doctor",
            )["Credentials"]
            session = type(session)(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
        answer = session.client("datasync", region_name=arn.region).describe_task_execution(
            TaskExecutionArn=str(arn)
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        return Check(name, Status.FAIL, f"DescribeTaskExecution refused: {sanitize(str(exc))}")
    via = f" as {settings.role_arn}" if settings.role_arn else ""
    return Check(name, Status.OK, f"DescribeTaskExecution{via}: {answer.get('Status')}")


async def run_checks(
    settings: DoctorSettings,
    kube: KubeClient,
    *,
    aws: Callable[[DoctorSettings], Sequence[Check]] = check_aws,
) -> list[Check]:
    """Every check, in order; the Kubernetes ones stop after the API server cannot be reached."""
    checks = [await check_identity(kube)]
    if checks[0].status is not Status.FAIL:
        checks.append(await check_crd(kube, settings))
        checks.extend(await check_rbac(kube, settings))
    checks.extend(await asyncio.to_thread(aws, settings))
    return checks
