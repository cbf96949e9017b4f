"""The ``datasync-operator`` command line (also ``python -m datasync_operator``).

Every option has an environment variable (shown in ``--help``), so the Helm chart configures the
operator through ``env`` alone. ``run`` starts kopf in-process through :mod:`.runner`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import click

from datasync_operator import GROUP, PLURAL, VERSION, __version__
from datasync_operator.config import DEFAULTS, LeaderElection, LogFormat, OperatorConfig
from datasync_operator.datasync import ClientSettings

ENV_PREFIX = "DATASYNC_OPERATOR"


def _env(name: str) -> str:
    return f"{ENV_PREFIX}_{name}"


def _split(values: Sequence[str]) -> tuple[str, ...]:
    """``-n a -n b`` and ``DATASYNC_OPERATOR_NAMESPACES="a b"`` / ``"a,b"`` alike."""
    found: list[str] = []
    for value in values:
        found.extend(part for part in value.replace(",", " ").split() if part)
    return tuple(dict.fromkeys(found))


positive = click.FloatRange(min=0, min_open=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, "--version", prog_name="datasync-operator")
def main() -> None:
    """Kubernetes operator that manages AWS DataSync task executions declaratively.

    It watches DataSyncExecution resources and cancels their executions when
    spec.desiredState is Cancelled, writing the outcome as status conditions.
    """


@main.command()
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    envvar=_env("NAMESPACES"),
    show_envvar=True,
    help="Namespace to watch (repeatable; globs like 'team-*' allowed; the variable takes a "
    "comma- or space-separated list). Mutually exclusive with --all-namespaces.",
)
@click.option(
    "-A",
    "--all-namespaces",
    is_flag=True,
    envvar=_env("ALL_NAMESPACES"),
    show_envvar=True,
    help="Watch DataSyncExecutions in every namespace (needs cluster-wide RBAC).",
)
@click.option(
    "--liveness-endpoint",
    envvar=_env("LIVENESS_ENDPOINT"),
    show_envvar=True,
    default=None,
    metavar="URL",
    help="Serve kopf's liveness probe at this URL, e.g. http://0.0.0.0:8080/healthz. "
    "Off when unset.",
)
@click.option(
    "--readiness-endpoint",
    envvar=_env("READINESS_ENDPOINT"),
    show_envvar=True,
    default=None,
    metavar="URL",
    help="Serve the readiness probe at this URL, e.g. http://0.0.0.0:8081/readyz: ready once "
    "kopf watches, DataSyncExecutions can be listed and (with leader election) the Lease could "
    "be read; standbys are ready too. Off when unset.",
)
@click.option(
    "--standalone/--leader-elect",
    "standalone",
    default=DEFAULTS.standalone,
    envvar=_env("STANDALONE"),
    show_envvar=True,
    help="Standalone: act alone, no coordination. Leader election: replicas elect one active "
    "replica through a coordination.k8s.io Lease; the others keep a warm cache and take over "
    "when it stops renewing (for more than one replica).",
)
@click.option(
    "--lease-name",
    envvar=_env("LEASE_NAME"),
    show_envvar=True,
    default=DEFAULTS.leader_election.lease_name,
    help="Name of the Lease used with --leader-elect.",
)
@click.option(
    "--lease-namespace",
    envvar=_env("LEASE_NAMESPACE"),
    show_envvar=True,
    default=None,
    help="Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else "
    "'default').",
)
@click.option(
    "--lease-duration",
    type=positive,
    envvar=_env("LEASE_DURATION"),
    show_envvar=True,
    default=DEFAULTS.leader_election.lease_duration,
    metavar="SECONDS",
    help="How long a Lease not renewed stays with its holder: the failover time after a "
    "crash (a graceful stop hands over at once).",
)
@click.option(
    "--lease-renew-deadline",
    type=positive,
    envvar=_env("LEASE_RENEW_DEADLINE"),
    show_envvar=True,
    default=DEFAULTS.leader_election.renew_deadline,
    metavar="SECONDS",
    help="The leader stops acting when it could not renew for this long (< lease duration).",
)
@click.option(
    "--lease-retry-period",
    type=positive,
    envvar=_env("LEASE_RETRY_PERIOD"),
    show_envvar=True,
    default=DEFAULTS.leader_election.retry_period,
    metavar="SECONDS",
    help="How often the Lease is renewed or, by standbys, checked.",
)
@click.option(
    "--log-level",
    envvar=_env("LOG_LEVEL"),
    show_envvar=True,
    default=DEFAULTS.log_level,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Minimum level of log lines.",
)
@click.option(
    "--log-format",
    envvar=_env("LOG_FORMAT"),
    show_envvar=True,
    default=DEFAULTS.log_format.value,
    type=click.Choice([f.value for f in LogFormat], case_sensitive=False),
    help="text for people, json for log pipelines (one JSON object per line, with the "
    "resource reference).",
)
@click.option(
    "--retry-base-delay",
    type=positive,
    envvar=_env("RETRY_BASE_DELAY"),
    show_envvar=True,
    default=DEFAULTS.retry_base_delay,
    metavar="SECONDS",
    help="First delay of the exponential backoff after a transient AWS failure.",
)
@click.option(
    "--retry-max-delay",
    type=positive,
    envvar=_env("RETRY_MAX_DELAY"),
    show_envvar=True,
    default=DEFAULTS.retry_max_delay,
    metavar="SECONDS",
    help="Cap of the exponential backoff.",
)
@click.option(
    "--stalled-recheck-interval",
    type=click.FloatRange(min=0),
    show_envvar=True,
    envvar=_env("STALLED_RECHECK_INTERVAL"),
    default=DEFAULTS.stalled_recheck_interval,
    metavar="SECONDS",
    help="How often a resource Stalled on AccessDenied or a rejected request is re-checked, "
    "so it heals once fixed in AWS. 0 disables re-checks.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    show_envvar=True,
    envvar=_env("POLL_INTERVAL"),
    default=DEFAULTS.poll_interval,
    metavar="SECONDS",
    help="How often DescribeTaskExecution refreshes status.execution while the execution is "
    "not finished (never once it is). Stretched automatically so that polling uses at most "
    "--poll-share of a region's rate limit. 0 disables polling.",
)
@click.option(
    "--poll-share",
    type=click.FloatRange(min=0, max=1, min_open=True),
    envvar=_env("POLL_SHARE"),
    show_envvar=True,
    default=DEFAULTS.poll_share,
    metavar="FRACTION",
    help="Most of a region's --aws-rate-limit that polling may use; the rest is kept for "
    "cancels, which never wait behind polls.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=256),
    envvar=_env("WORKERS"),
    show_envvar=True,
    default=DEFAULTS.workers,
    help="Reconciles running at once (one object is never reconciled by two at a time).",
)
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=0),
    envvar=_env("RESYNC_INTERVAL"),
    show_envvar=True,
    default=DEFAULTS.resync_interval,
    metavar="SECONDS",
    help="How often remembered objects are checked against a fresh list, so that one deleted "
    "while the watch was away is forgotten (also done after every relist). 0: only after "
    "relists.",
)
@click.option(
    "--metrics/--no-metrics",
    "metrics_enabled",
    default=DEFAULTS.metrics_enabled,
    envvar=_env("METRICS_ENABLED"),
    show_envvar=True,
    help="Serve Prometheus metrics at /metrics.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    envvar=_env("METRICS_PORT"),
    show_envvar=True,
    default=DEFAULTS.metrics_port,
    help="Port of the metrics endpoint.",
)
@click.option(
    "--metrics-address",
    envvar=_env("METRICS_ADDRESS"),
    show_envvar=True,
    default=DEFAULTS.metrics_address,
    metavar="ADDRESS",
    help="Address the metrics endpoint binds to, e.g. 127.0.0.1 or :: (the liveness and "
    "readiness endpoints take theirs in their URL).",
)
@click.option(
    "--account-id",
    envvar=_env("ACCOUNT_ID"),
    show_envvar=True,
    default=None,
    metavar="ACCOUNT",
    help="The operator's own AWS account (12 digits). With no DataSyncAccessPolicy, only "
    "executions in it are allowed; unset, the operator does not check (its identity cannot "
    "act in other accounts anyway, but the call is made and refused by AWS).",
)
@click.option(
    "--extra-regions",
    "extra_regions",
    multiple=True,
    envvar=_env("EXTRA_REGIONS"),
    show_envvar=True,
    metavar="REGION",
    help="Regions to accept besides those of botocore's endpoint data, for a region AWS "
    "opened after this operator's botocore was released (repeatable; the variable takes a "
    "comma- or space-separated list). An execution in any other unknown region ends Stalled "
    "InvalidSpec with no AWS call.",
)
@click.option(
    "--aws-rate-limit",
    type=positive,
    envvar=_env("AWS_RATE_LIMIT"),
    show_envvar=True,
    default=DEFAULTS.aws.rate_limit,
    metavar="CALLS_PER_SECOND",
    help="DataSync calls per second per region, shared by all resources.",
)
@click.option(
    "--aws-rate-burst",
    type=click.FloatRange(min=1),
    envvar=_env("AWS_RATE_BURST"),
    show_envvar=True,
    default=DEFAULTS.aws.rate_burst,
    metavar="CALLS",
    help="Calls allowed at once above the rate after a quiet period.",
)
@click.option(
    "--aws-connect-timeout",
    type=positive,
    envvar=_env("AWS_CONNECT_TIMEOUT"),
    show_envvar=True,
    default=DEFAULTS.aws.connect_timeout,
    metavar="SECONDS",
    help="Timeout to connect to the DataSync endpoint.",
)
@click.option(
    "--aws-read-timeout",
    type=positive,
    envvar=_env("AWS_READ_TIMEOUT"),
    show_envvar=True,
    default=DEFAULTS.aws.read_timeout,
    metavar="SECONDS",
    help="Timeout to read a DataSync answer.",
)
@click.option(
    "--aws-concurrency",
    type=click.IntRange(min=1, max=256),
    envvar=_env("AWS_CONCURRENCY"),
    show_envvar=True,
    default=DEFAULTS.aws.max_pool_connections,
    help="Threads (and pooled connections per region) for concurrent DataSync calls.",
)
def run(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    liveness_endpoint: str | None,
    readiness_endpoint: str | None,
    standalone: bool,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: float,
    lease_renew_deadline: float,
    lease_retry_period: float,
    log_level: str,
    log_format: str,
    retry_base_delay: float,
    retry_max_delay: float,
    stalled_recheck_interval: float,
    poll_interval: float,
    poll_share: float,
    workers: int,
    resync_interval: float,
    metrics_enabled: bool,
    metrics_port: int,
    metrics_address: str,
    account_id: str | None,
    extra_regions: tuple[str, ...],
    aws_rate_limit: float,
    aws_rate_burst: float,
    aws_connect_timeout: float,
    aws_read_timeout: float,
    aws_concurrency: int,
) -> None:
    """Run the operator until interrupted (SIGINT/SIGTERM stop it gracefully).

    AWS credentials come from the standard chain (IRSA, EKS Pod Identity, environment,
    profile). AWS_ENDPOINT_URL_DATASYNC overrides the DataSync endpoint.
    """
    watched = _split(namespaces)
    if all_namespaces and watched:
        raise click.UsageError("--namespace and --all-namespaces are mutually exclusive")
    if account_id and not re.fullmatch(r"[0-9]{12}", account_id):
        raise click.BadParameter("must be a 12-digit AWS account id", param_hint="--account-id")
    regions = _split(extra_regions)
    for region in regions:
        if not re.fullmatch(r"[a-z]{2,4}(-[a-z0-9]+)+-[0-9]+", region):
            raise click.BadParameter(
                f"{region!r} is not a region name like us-east-1", param_hint="--extra-regions"
            )
    if not all_namespaces and not watched:
        raise click.UsageError(
            "say which namespaces to watch: --namespace NAME (repeatable) or --all-namespaces"
        )
    if retry_max_delay < retry_base_delay:
        raise click.BadParameter(
            f"must be >= --retry-base-delay ({retry_base_delay})", param_hint="--retry-max-delay"
        )
    if not lease_retry_period < lease_renew_deadline < lease_duration:
        raise click.BadParameter(
            "must hold: --lease-retry-period < --lease-renew-deadline < --lease-duration",
            param_hint="--lease-renew-deadline",
        )
    config = OperatorConfig(
        namespaces=watched,
        all_namespaces=all_namespaces,
        liveness_endpoint=liveness_endpoint or None,
        readiness_endpoint=readiness_endpoint or None,
        standalone=standalone,
        leader_election=LeaderElection(
            lease_name=lease_name,
            lease_namespace=lease_namespace or None,
            lease_duration=lease_duration,
            renew_deadline=lease_renew_deadline,
            retry_period=lease_retry_period,
        ),
        log_level=log_level.upper(),
        log_format=LogFormat(log_format.lower()),
        retry_base_delay=retry_base_delay,
        retry_max_delay=retry_max_delay,
        stalled_recheck_interval=stalled_recheck_interval,
        poll_interval=poll_interval,
        poll_share=poll_share,
        workers=workers,
        resync_interval=resync_interval,
        metrics_enabled=metrics_enabled,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        account_id=account_id or None,
        extra_regions=regions,
        aws=ClientSettings(
            connect_timeout=aws_connect_timeout,
            read_timeout=aws_read_timeout,
            max_pool_connections=aws_concurrency,
            rate_limit=aws_rate_limit,
            rate_burst=aws_rate_burst,
        ),
    )
    from datasync_operator.runner import run as run_operator  # kopf import only when running

    run_operator(config)


@main.command()
@click.option("-n", "--namespace", "namespaces", multiple=True, envvar=_env("NAMESPACES"),
              show_envvar=True, help="A namespace the operator watches (as for run).")
@click.option("-A", "--all-namespaces", is_flag=True, envvar=_env("ALL_NAMESPACES"),
              show_envvar=True, help="The operator watches every namespace (as for run).")
@click.option("--standalone/--leader-elect", "standalone", default=DEFAULTS.standalone,
              envvar=_env("STANDALONE"), show_envvar=True,
              help="Whether the operator elects a leader (then the Lease RBAC is checked).")
@click.option("--lease-name", envvar=_env("LEASE_NAME"), show_envvar=True,
              default=DEFAULTS.leader_election.lease_name, help="The Lease (as for run).")
@click.option("--lease-namespace", envvar=_env("LEASE_NAMESPACE"), show_envvar=True,
              default=None, help="Its namespace (default: POD_NAMESPACE, else 'default').")
@click.option("--execution-arn", default=None, metavar="ARN",
              help="Also call DescribeTaskExecution on this execution (checks DataSync "
              "permissions and reachability).")
@click.option("--role-arn", default=None, metavar="ARN",
              help="With --execution-arn: assume this role first, as spec.roleArn does.")
def doctor(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    standalone: bool,
    lease_name: str,
    lease_namespace: str | None,
    execution_arn: str | None,
    role_arn: str | None,
) -> None:
    """Check an installation: API access, the CRD, RBAC and the AWS identity.

    Reads the same flags and environment variables as run (so in the operator's pod it checks
    exactly what the operator will use). Exits 1 when a check fails.
    """
    import asyncio
    import logging
    import os

    from datasync_operator.doctor import DoctorSettings, Status, run_checks
    from datasync_operator.handlers import login
    from datasync_operator.kube import KubeClient

    watched = _split(namespaces)
    if not all_namespaces and not watched:
        raise click.UsageError("say which namespaces the operator watches: -n NAME or -A")
    settings = DoctorSettings(
        all_namespaces=all_namespaces,
        namespaces=watched,
        leader_election=not standalone,
        lease_name=lease_name,
        lease_namespace=lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
        execution_arn=execution_arn,
        role_arn=role_arn,
    )
    quiet = logging.getLogger("doctor")

    async def check() -> list[Any]:
        kube = KubeClient(lambda: login(quiet))
        try:
            return await run_checks(settings, kube)
        finally:
            await kube.close()

    click.echo(f"datasync-operator {__version__} doctor")
    checks = asyncio.run(check())
    for item in checks:
        click.echo(item.line())
    failed = sum(item.status is Status.FAIL for item in checks)
    warned = sum(item.status is Status.WARN for item in checks)
    click.echo(f"{len(checks) - failed - warned} passed, {failed} failed, {warned} warnings")
    if failed:
        sys.exit(1)


@main.command()
def version() -> None:
    """Print the operator version and the API it serves."""
    click.echo(f"datasync-operator {__version__} ({GROUP}/{VERSION} {PLURAL})")
    click.echo(f"python {sys.version.split()[0]}")


if __name__ == "__main__":  # pragma: no cover
    main()
