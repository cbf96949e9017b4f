"""Memory of assumed-role credentials: N ``roleArn`` resources over R roles, above a baseline.

The AWS adapter (``datasync_operator.datasync``) keeps one botocore session and loader for the
process, and one set of STS credentials (and one DataSync client per region) per (role,
namespace). This measures what N resources spread over R roles and R namespaces cost: it
creates N executions in moto, makes the gateway describe one as the operator itself (the
baseline: the session, its loader and one client exist), then describes all N through their
roles at once, and reports the memory added (``tracemalloc``, and RSS) and the AssumeRole
calls made::

    python benchmarks/bench_credentials.py                      # starts moto's server itself
    python benchmarks/bench_credentials.py --endpoint URL --json  # moto (or a proxy) given

``--namespaces N`` puts every resource in its own namespace: N (role, namespace) pairs, the
worst case of the sharing. ``--per-resource-sessions`` measures the design this replaced (a
botocore session per resource) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

ACCOUNT = "111222333444"  # the account moto writes into every DataSync ARN
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20


def create_executions(endpoint: str, count: int) -> list[str]:
    """``count`` executions in moto's account ``ACCOUNT`` (reached through an assumed role)."""
    import boto3

    base: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    sts: Any = boto3.client("sts", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                            aws_secret_access_key="setup", **base)
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/setup", RoleSessionName="setup"
    )["Credentials"]
    client: Any = boto3.client(
        "datasync",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        **base,
    )
    arns = []
    for _ in range(count):
        suffix = uuid.uuid4().hex[:8]
        source = client.create_location_s3(
            S3BucketArn=f"arn:aws:s3:::source-{suffix}", Subdirectory="/data",
            S3Config={"BucketAccessRoleArn": f"arn:aws:iam::{ACCOUNT}:role/datasync"},
        )["LocationArn"]
        target = client.create_location_s3(
            S3BucketArn=f"arn:aws:s3:::target-{suffix}", Subdirectory="/data",
            S3Config={"BucketAccessRoleArn": f"arn:aws:iam::{ACCOUNT}:role/datasync"},
        )["LocationArn"]
        task = client.create_task(SourceLocationArn=source, DestinationLocationArn=target)
        arns.append(client.start_task_execution(TaskArn=task["TaskArn"])["TaskExecutionArn"])
    return arns


def measure(
    endpoint: str,
    resources: int = 100,
    roles: int = 20,
    namespaces: int | None = None,
    per_resource_sessions: bool = False,
) -> dict[str, Any]:
    """Describe ``resources`` executions through ``roles`` roles; what it added to memory."""
    os.environ.update({
        "AWS_ENDPOINT_URL_DATASYNC": endpoint,
        "AWS_ENDPOINT_URL_STS": endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    })
    import botocore.session

    from datasync_operator.access import AssumedRole
    from datasync_operator.arn import parse_execution_arn
    from datasync_operator.datasync import ClientSettings, DataSyncGateway, Target
    from datasync_operator.metrics import Metrics

    arns = [parse_execution_arn(arn) for arn in create_executions(endpoint, resources)]
    spread = namespaces or roles
    targets = [
        Target(arn, AssumedRole(f"arn:aws:iam::{ACCOUNT}:role/tenant-{n % roles}"),
               f"tenant-{n % spread}")
        for n, arn in enumerate(arns)
    ]
    metrics = Metrics()

    def gateway() -> DataSyncGateway:
        return DataSyncGateway(ClientSettings(max_pool_connections=16), metrics=metrics,
                               session=botocore.session.get_session())

    shared = gateway()
    # The baseline: the session, its loader and a client as the operator itself (moto answers
    # "not valid": the operator's own account is another one there).
    asyncio.run(_describe_all(shared, [Target(arns[0])], check=False))
    gc.collect()
    rss_before = rss_mib()
    tracemalloc.start()
    kept: list[DataSyncGateway] = []
    if per_resource_sessions:  # the old design: a botocore session per resource
        kept = [gateway() for _ in targets]
        for one, target in zip(kept, targets, strict=True):
            asyncio.run(_describe_all(one, [target]))
    else:
        asyncio.run(_describe_all(shared, targets))
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assume_calls = sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == "datasync_operator_aws_calls"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("operation") == "AssumeRole"
    )
    result = {
        "resources": resources,
        "roles": roles,
        "pairs": len({(t.role, t.namespace) for t in targets}),
        "traced_mib": round(traced / 2**20, 2),
        "rss_mib": round(rss_mib() - rss_before, 2),
        "assume_role_calls": int(assume_calls),
        "design": "session per resource" if per_resource_sessions else "shared session",
    }
    for one in [shared, *kept]:
        one.close()
    return result


async def _describe_all(gateway: Any, targets: list[Any], check: bool = True) -> None:
    results = await asyncio.gather(*(gateway.describe(t) for t in targets), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed and check:
        raise RuntimeError(f"{len(failed)} describes failed, e.g. {failed[0]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="moto's server (or a proxy); default: start one")
    parser.add_argument("--resources", type=int, default=100)
    parser.add_argument("--roles", type=int, default=20)
    parser.add_argument("--namespaces", type=int, default=None)
    parser.add_argument("--per-resource-sessions", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.endpoint:
        result = measure(args.endpoint, args.resources, args.roles, args.namespaces,
                         args.per_resource_sessions)
    else:
        from tests.support.moto_server import MotoServer

        with MotoServer() as moto:
            result = measure(moto.url, args.resources, args.roles, args.namespaces,
                             args.per_resource_sessions)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['resources']} roleArn resources over {result['roles']} roles "
          f"({result['pairs']} role/namespace pairs, {result['design']}): "
          f"+{result['traced_mib']} MiB traced, +{result['rss_mib']} MiB RSS, "
          f"{result['assume_role_calls']} AssumeRole calls")


if __name__ == "__main__":
    main()
