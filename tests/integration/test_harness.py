"""Proof that the integration harness works end to end, independent of the real operator.

- kmock's emulator (``tests/support/kube_emulator.py``) serves a throwaway kopf operator
  defined here, in-process with ``kopf.testing.KopfRunner`` (two ways to log in) and as a
  ``python -m kopf run`` subprocess through ``KUBECONFIG``; and it behaves like an API server
  where the operator depends on it (generation, status subresource, resourceVersion, 422).
- boto3 reaches moto's server through the ``FaultProxy`` (``tests/support/fault_proxy.py``),
  and each fault produces the botocore exception the operator has to classify.

Fixtures ``moto``, ``proxy`` and ``kube`` come from ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import kopf
import pytest
import yaml
from botocore.config import Config
from kopf.testing import KopfRunner

from tests.support.fault_proxy import FaultKind, FaultProxy
from tests.support.kube_emulator import DATASYNC_EXECUTIONS, KubeApiError, KubeEmulator
from tests.support.moto_server import EXECUTION_ARN_PATTERN, MotoServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "datasync.operator.io", "v1alpha1", "datasyncexecutions"
FINALIZER = "datasync.operator.io/harness"
CANCEL = "CancelTaskExecution"
DESCRIBE = "DescribeTaskExecution"
NO_RETRIES = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10)

# A throwaway operator for the subprocess test: kopf's default registry logs in with pykube,
# which reads KUBECONFIG when it logs in.
SUBPROCESS_OPERATOR = f'''
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.persistence.finalizer = "{FINALIZER}"

@kopf.on.create("{GROUP}", "{VERSION}", "{PLURAL}")
def created(meta, patch, **_):
    patch.status["phase"] = "SeenBySubprocess"
    patch.status["observedGeneration"] = meta["generation"]
'''


def build_registry(login: Callable[..., Any]) -> kopf.OperatorRegistry:
    """A throwaway operator: on create it patches status and posts an Event."""
    # NB: a plain OperatorRegistry has no login handlers (kopf's default registry has).
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def created(body: kopf.Body, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Seen"
        patch.status["observedGeneration"] = meta["generation"]
        kopf.info(body, reason="Seen", message="seen by the harness operator")

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)  # makes kopf add a finalizer
    def deleted(**_: Any) -> None:
        pass

    return registry


def phase_of(kube: KubeEmulator, name: str) -> Callable[[], str | None]:
    return lambda: (kube.find(name) or {}).get("status", {}).get("phase")


# -- kmock: the Kubernetes emulator -----------------------------------------------------------


@pytest.mark.parametrize("login", ["kubeconfig-env", "login-handler"])
def test_kopf_in_process_against_the_emulator(
    kube: KubeEmulator, monkeypatch: pytest.MonkeyPatch, login: str
) -> None:
    if login == "kubeconfig-env":
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
        registry = build_registry(kopf.login_with_kubeconfig)  # reads KUBECONFIG at login time
    else:
        monkeypatch.delenv("KUBECONFIG", raising=False)
        registry = build_registry(kube.login)
    args = ["run", "--standalone", "--namespace", kube.namespace, "--verbose"]
    with KopfRunner(args, registry=registry, timeout=30) as runner:
        kube.create("first", {"executionArn": "arn:x", "desiredState": "Cancelled"})
        wait_for(phase_of(kube, "first"), 10, message=lambda: runner_log(runner))
        obj = kube.get("first")
        assert obj["status"] == {"phase": "Seen", "observedGeneration": 1}
        assert obj["metadata"]["finalizers"] == [FINALIZER]  # kopf's JSON-patch with a test op
        events: list[dict[str, Any]] = wait_for(
            lambda: kube.events(involved_name="first", reason="Seen"), 10
        )
        assert events[0]["involvedObject"]["uid"] == obj["metadata"]["uid"]

        kube.delete("first")
        wait_for(lambda: kube.find("first") is None, 10, message="the finalizer was not removed")
    assert runner.exit_code == 0, runner.output[-3000:]
    assert "Traceback" not in runner.output
    assert kube.server_errors() == []


def runner_log(runner: KopfRunner) -> str:
    try:  # the output exists only once the runner has exited
        return runner.output[-3000:]
    except Exception:
        return "(kopf is still running; its output is available after it exits)"


def test_kopf_subprocess_against_the_emulator(kube: KubeEmulator, tmp_path: Path) -> None:
    operator_file = tmp_path / "harness_operator.py"
    operator_file.write_text(SUBPROCESS_OPERATOR)
    log_path = tmp_path / "kopf.log"
    with (
        log_path.open("wb") as log,
        running_process(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "--namespace",
                kube.namespace,
                "--verbose",
                str(operator_file),
            ],
            env={**os.environ, **kube.env()},
            log=log,
        ) as process,
    ):
        kube.create("second", {"executionArn": "arn:x", "desiredState": "Cancelled"})
        wait_for(
            phase_of(kube, "second"),
            20,
            message=lambda: f"exit code {process.poll()}:\n{log_path.read_text()[-3000:]}",
        )
        assert kube.get("second")["status"] == {
            "phase": "SeenBySubprocess",
            "observedGeneration": 1,
        }
    assert process.returncode == 0, log_path.read_text()[-3000:]
    assert "Activity 'login_via_pykube' succeeded" in log_path.read_text()


@contextlib.contextmanager
def running_process(
    args: list[str], env: dict[str, str], log: Any
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        args,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # kopf stops gracefully on SIGTERM
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def test_emulator_behaves_like_an_api_server_where_the_operator_depends_on_it(
    kube: KubeEmulator,
) -> None:
    created = kube.create("obj", {"desiredState": "Running"})
    meta = created["metadata"]
    assert meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    with_status = kube.request(
        "POST",
        DATASYNC_EXECUTIONS.path(kube.namespace),
        {"metadata": {"name": "with-status"}, "spec": {}, "status": {"phase": "Forged"}},
    )
    assert "status" not in with_status  # dropped on create, as with a status subresource

    # Spec changes bump the generation; metadata and status changes do not.
    assert kube.patch_spec("obj", {"desiredState": "Cancelled"})["metadata"]["generation"] == 2
    annotated = kube.patch("obj", {"metadata": {"annotations": {"a": "b"}}})
    assert annotated["metadata"]["generation"] == 2

    # The status subresource is isolated both ways.
    both = {"spec": {"desiredState": "Running"}, "status": {"phase": "X"}}
    via_status = kube.patch("obj", both, subresource="status")
    assert via_status["spec"]["desiredState"] == "Cancelled"
    assert via_status["status"] == {"phase": "X"}
    via_main = kube.patch("obj", {"spec": {"desiredState": "Cancelled"}, "status": {"phase": "Y"}})
    assert via_main["status"] == {"phase": "X"}

    # resourceVersion moves on every change, not on a no-op; a stale JSON-patch test is a 422.
    version = kube.get("obj")["metadata"]["resourceVersion"]
    assert (
        kube.patch("obj", {"metadata": {"annotations": {"a": "b"}}})["metadata"]["resourceVersion"]
        == version
    )
    kube.patch_status("obj", {"phase": "Z"})
    with pytest.raises(KubeApiError) as caught:
        kube.request(
            "PATCH",
            DATASYNC_EXECUTIONS.path(kube.namespace, "obj"),
            [{"op": "test", "path": "/metadata/resourceVersion", "value": version}],
            content_type="application/json-patch+json",
        )
    assert caught.value.status == 422

    # Deleting with a finalizer marks the object (and bumps the generation), like the API server.
    kube.patch("obj", {"metadata": {"finalizers": ["x/y"]}})
    marked = kube.delete("obj")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["generation"] == 3
    kube.patch("obj", {"metadata": {"finalizers": None}})
    assert kube.find("obj") is None

    # generateName works (every kopf Event relies on it).
    for _ in range(2):
        kube.request(
            "POST",
            "/api/v1/namespaces/default/events",
            {"metadata": {"generateName": "e-"}, "involvedObject": {"name": "obj"}},
        )
    assert len({e["metadata"]["name"] for e in kube.events(involved_name="obj")}) == 2
    assert kube.server_errors() == []


def test_emulator_knows_the_crd_as_the_crd_file_declares_it() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "datasyncexecution.yaml").read_text())
    names = crd["spec"]["names"]
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    assert (crd["spec"]["group"], version["name"]) == (
        DATASYNC_EXECUTIONS.group,
        DATASYNC_EXECUTIONS.version,
    )
    assert names["plural"] == DATASYNC_EXECUTIONS.plural
    assert names["kind"] == DATASYNC_EXECUTIONS.kind
    assert names["singular"] == DATASYNC_EXECUTIONS.singular
    assert set(names.get("shortNames", [])) == DATASYNC_EXECUTIONS.short_names
    assert set(names.get("categories", [])) == DATASYNC_EXECUTIONS.categories
    assert (crd["spec"]["scope"] == "Namespaced") == DATASYNC_EXECUTIONS.namespaced
    assert set(version.get("subresources", {})) == DATASYNC_EXECUTIONS.subresources


# -- moto behind the fault proxy ---------------------------------------------------------------


def test_moto_executions_and_their_arns(moto: MotoServer) -> None:
    arn = moto.create_execution()
    assert EXECUTION_ARN_PATTERN.match(arn), arn
    assert EXECUTION_ARN_PATTERN.match(moto.create_execution(region="eu-west-1"))
    steps = [moto.describe_status(arn) for _ in range(5)]  # every describe advances one step
    assert steps == ["INITIALIZING", "PREPARING", "TRANSFERRING", "VERIFYING", "SUCCESS"]
    assert moto.finish_execution(moto.create_execution()) == "SUCCESS"

    other = moto.create_execution()
    moto.cancel_execution(other)  # someone else cancels it
    assert moto.describe_status(other) == "ERROR"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        moto.cancel_execution(other)
    assert caught.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "cannot be cancelled in its current status: ERROR" in str(caught.value)


def test_three_server_errors_then_success_is_four_calls(
    moto: MotoServer, proxy: FaultProxy
) -> None:
    arn = moto.create_execution()
    client = proxy.client(config=NO_RETRIES)
    proxy.fail(CANCEL, times=3)
    for _ in range(3):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.cancel_task_execution(TaskExecutionArn=arn)
        error = caught.value.response
        assert error["Error"]["Code"] == "InternalException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert error["ResponseMetadata"]["RequestId"]
        assert isinstance(caught.value, client.exceptions.InternalException)  # modelled error
    client.cancel_task_execution(TaskExecutionArn=arn)
    assert proxy.calls(CANCEL) == 4
    assert [r.fault for r in proxy.requests(CANCEL)] == [FaultKind.ERROR] * 3 + [None]
    assert all(r.body == {"TaskExecutionArn": arn} for r in proxy.requests(CANCEL))
    assert moto.describe_status(arn) == "ERROR"  # the fourth call reached moto


def test_botocore_standard_retries_show_up_in_the_counts(
    moto: MotoServer, proxy: FaultProxy
) -> None:
    arn = moto.create_execution()
    client = proxy.client()  # botocore's default: standard mode, 3 attempts in total
    proxy.fail(CANCEL, times=1)
    proxy.throttle(CANCEL, times=1)
    client.cancel_task_execution(TaskExecutionArn=arn)  # both faults retried inside botocore
    assert proxy.calls(CANCEL) == 3


def test_throttling_is_a_client_error_with_a_throttling_code(
    moto: MotoServer, proxy: FaultProxy
) -> None:
    arn = moto.create_execution()
    proxy.throttle(CANCEL)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        proxy.client(config=NO_RETRIES).cancel_task_execution(TaskExecutionArn=arn)
    assert type(caught.value) is botocore.exceptions.ClientError  # not a modelled DataSync error
    assert caught.value.response["Error"] == {
        "Code": "ThrottlingException",
        "Message": "Rate exceeded",
    }
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert moto.describe_status(arn) == "INITIALIZING"  # never reached moto


def test_connection_reset_is_connection_closed_error(moto: MotoServer, proxy: FaultProxy) -> None:
    arn = moto.create_execution()
    proxy.reset_connection(CANCEL)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        proxy.client(config=NO_RETRIES).cancel_task_execution(TaskExecutionArn=arn)
    assert proxy.calls(CANCEL) == 1
    assert moto.describe_status(arn) == "INITIALIZING"  # never reached moto


def test_forward_then_reset_cancels_but_the_client_sees_a_closed_connection(
    moto: MotoServer, proxy: FaultProxy
) -> None:
    arn = moto.create_execution()
    client = proxy.client(config=NO_RETRIES)
    proxy.forward_then_reset(CANCEL)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.cancel_task_execution(TaskExecutionArn=arn)
    assert moto.describe_status(arn) == "ERROR"  # it took effect
    with pytest.raises(botocore.exceptions.ClientError) as caught:  # so a blind retry fails
        client.cancel_task_execution(TaskExecutionArn=arn)
    assert caught.value.response["Error"]["Code"] == "InvalidRequestException"


def test_slow_answer_is_read_timeout_error(moto: MotoServer, proxy: FaultProxy) -> None:
    arn = moto.create_execution()
    proxy.delay(DESCRIBE, seconds=2.0)
    config = Config(retries={"total_max_attempts": 1}, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        proxy.client(config=config).describe_task_execution(TaskExecutionArn=arn)
    assert time.monotonic() - started < 1.5
    assert proxy.calls(DESCRIBE) == 1


@pytest.mark.parametrize("deliver", [False, True])
def test_forward_then_hang_cancels_while_the_client_waits(
    moto: MotoServer, proxy: FaultProxy, deliver: bool
) -> None:
    arn = moto.create_execution()
    proxy.forward_then_hang(CANCEL)
    outcome: list[object] = []

    def cancel() -> None:
        try:
            outcome.append(
                proxy.client(config=NO_RETRIES).cancel_task_execution(TaskExecutionArn=arn)
            )
        except Exception as exc:
            outcome.append(exc)

    caller = threading.Thread(target=cancel)
    caller.start()
    wait_for(lambda: proxy.held(CANCEL) == 1, 10, message="the cancel never reached the proxy")
    assert moto.describe_status(arn) == "ERROR"  # AWS accepted it; the caller knows nothing
    assert not outcome
    assert proxy.release(deliver=deliver) == 1
    caller.join(10)
    if deliver:
        assert isinstance(outcome[0], dict)
        assert outcome[0]["ResponseMetadata"]["HTTPStatusCode"] == 200
    else:
        assert isinstance(outcome[0], botocore.exceptions.ConnectionClosedError)


def test_faulted_answers_look_like_aws_json_errors(proxy: FaultProxy) -> None:
    proxy.fail(
        CANCEL,
        status=400,
        code="InvalidRequestException",
        message="nope",
        extra={"errorCode": "OPERATION_NOT_PERMITTED"},
    )
    request = urllib.request.Request(
        proxy.url,
        data=b"{}",
        method="POST",
        headers={
            "X-Amz-Target": f"FmrsService.{CANCEL}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    answer = caught.value
    assert answer.code == 400
    assert answer.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert answer.headers["x-amzn-RequestId"]
    assert json.loads(answer.read()) == {
        "__type": "InvalidRequestException",
        "message": "nope",
        "errorCode": "OPERATION_NOT_PERMITTED",
    }
    assert proxy.calls(CANCEL) == 1
    proxy.reset_counts()
    assert proxy.calls(CANCEL) == 0
    assert proxy.pending_faults(CANCEL) == 0


def test_given_answers_reach_botocore_as_sent(moto: MotoServer, proxy: FaultProxy) -> None:
    arn = moto.create_execution()
    client = proxy.client(config=NO_RETRIES)
    proxy.answer(DESCRIBE, {"Status": "HIBERNATING", "TaskExecutionArn": arn})
    described = client.describe_task_execution(TaskExecutionArn=arn)
    assert described["Status"] == "HIBERNATING"  # an unknown enum value passes through
    assert described["ResponseMetadata"]["HTTPStatusCode"] == 200
    proxy.answer(CANCEL, b"\xff\xfe not UTF-8")
    with pytest.raises(UnicodeDecodeError):  # botocore cannot parse it: not a botocore error
        client.cancel_task_execution(TaskExecutionArn=arn)
    assert proxy.calls(DESCRIBE) == 1 and proxy.calls(CANCEL) == 1
    assert moto.describe_status(arn) == "INITIALIZING"  # neither reached moto
