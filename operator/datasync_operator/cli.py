"""The ``datasync-operator`` command line (also ``python -m datasync_operator``).

Every option has an environment variable (shown in ``--help``), so the Helm chart configures the
operator through ``env`` alone. ``run`` starts kopf in-process through :mod:`.runner`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from datasync_operator import GROUP, PLURAL, VERSION, __version__
from datasync_operator.config import LogFormat, OperatorConfig
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
    "--standalone/--peering",
    "standalone",
    default=True,
    envvar=_env("STANDALONE"),
    show_envvar=True,
    help="Standalone: act alone, no coordination. Peering: coordinate replicas through kopf "
    "peering objects so that exactly one acts (for more than one replica).",
)
@click.option(
    "--peering-name",
    envvar=_env("PEERING_NAME"),
    show_envvar=True,
    default="datasync-operator",
    help="Name of the KopfPeering/ClusterKopfPeering object used with --peering.",
)
@click.option(
    "--priority",
    type=int,
    envvar=_env("PRIORITY"),
    show_envvar=True,
    default=None,
    help="Peering priority of this replica (highest acts). Random per replica when unset, "
    "because kopf pauses replicas of equal priority.",
)
@click.option(
    "--log-level",
    envvar=_env("LOG_LEVEL"),
    show_envvar=True,
    default="INFO",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Minimum level of log lines.",
)
@click.option(
    "--log-format",
    envvar=_env("LOG_FORMAT"),
    show_envvar=True,
    default=LogFormat.TEXT.value,
    type=click.Choice([f.value for f in LogFormat], case_sensitive=False),
    help="text for people, json for log pipelines (one JSON object per line, with the "
    "resource reference).",
)
@click.option(
    "--retry-base-delay",
    type=positive,
    envvar=_env("RETRY_BASE_DELAY"),
    show_envvar=True,
    default=2.0,
    metavar="SECONDS",
    help="First delay of the exponential backoff after a transient AWS failure.",
)
@click.option(
    "--retry-max-delay",
    type=positive,
    envvar=_env("RETRY_MAX_DELAY"),
    show_envvar=True,
    default=300.0,
    metavar="SECONDS",
    help="Cap of the exponential backoff.",
)
@click.option(
    "--stalled-recheck-interval",
    type=click.FloatRange(min=0),
    show_envvar=True,
    envvar=_env("STALLED_RECHECK_INTERVAL"),
    default=600.0,
    metavar="SECONDS",
    help="How often a resource Stalled on AccessDenied or a rejected request is re-checked, "
    "so it heals once fixed in AWS. 0 disables re-checks.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    show_envvar=True,
    envvar=_env("POLL_INTERVAL"),
    default=60.0,
    metavar="SECONDS",
    help="How often DescribeTaskExecution refreshes status.execution while the execution is "
    "not finished (never once it is). 0 disables polling.",
)
@click.option(
    "--metrics/--no-metrics",
    "metrics_enabled",
    default=True,
    envvar=_env("METRICS_ENABLED"),
    show_envvar=True,
    help="Serve Prometheus metrics at /metrics.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    envvar=_env("METRICS_PORT"),
    show_envvar=True,
    default=9090,
    help="Port of the metrics endpoint.",
)
@click.option(
    "--aws-rate-limit",
    type=positive,
    envvar=_env("AWS_RATE_LIMIT"),
    show_envvar=True,
    default=5.0,
    metavar="CALLS_PER_SECOND",
    help="DataSync calls per second per region, shared by all resources.",
)
@click.option(
    "--aws-rate-burst",
    type=click.FloatRange(min=1),
    envvar=_env("AWS_RATE_BURST"),
    show_envvar=True,
    default=10.0,
    metavar="CALLS",
    help="Calls allowed at once above the rate after a quiet period.",
)
@click.option(
    "--aws-connect-timeout",
    type=positive,
    envvar=_env("AWS_CONNECT_TIMEOUT"),
    show_envvar=True,
    default=10.0,
    metavar="SECONDS",
    help="Timeout to connect to the DataSync endpoint.",
)
@click.option(
    "--aws-read-timeout",
    type=positive,
    envvar=_env("AWS_READ_TIMEOUT"),
    show_envvar=True,
    default=30.0,
    metavar="SECONDS",
    help="Timeout to read a DataSync answer.",
)
@click.option(
    "--aws-concurrency",
    type=click.IntRange(min=1, max=256),
    envvar=_env("AWS_CONCURRENCY"),
    show_envvar=True,
    default=16,
    help="Threads (and pooled connections per region) for concurrent DataSync calls.",
)
def run(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    liveness_endpoint: str | None,
    standalone: bool,
    peering_name: str,
    priority: int | None,
    log_level: str,
    log_format: str,
    retry_base_delay: float,
    retry_max_delay: float,
    stalled_recheck_interval: float,
    poll_interval: float,
    metrics_enabled: bool,
    metrics_port: int,
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
    if not all_namespaces and not watched:
        raise click.UsageError(
            "say which namespaces to watch: --namespace NAME (repeatable) or --all-namespaces"
        )
    if retry_max_delay < retry_base_delay:
        raise click.BadParameter(
            f"must be >= --retry-base-delay ({retry_base_delay})", param_hint="--retry-max-delay"
        )
    config = OperatorConfig(
        namespaces=watched,
        all_namespaces=all_namespaces,
        liveness_endpoint=liveness_endpoint or None,
        standalone=standalone,
        peering_name=peering_name,
        priority=priority,
        log_level=log_level.upper(),
        log_format=LogFormat(log_format.lower()),
        retry_base_delay=retry_base_delay,
        retry_max_delay=retry_max_delay,
        stalled_recheck_interval=stalled_recheck_interval,
        poll_interval=poll_interval,
        metrics_enabled=metrics_enabled,
        metrics_port=metrics_port,
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
def version() -> None:
    """Print the operator version and the API it serves."""
    click.echo(f"datasync-operator {__version__} ({GROUP}/{VERSION} {PLURAL})")
    click.echo(f"python {sys.version.split()[0]}")


if __name__ == "__main__":  # pragma: no cover
    main()
