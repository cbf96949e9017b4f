"""The work-queue core in the real operator process (issue 8): one writer per key, status writes
guarded by resourceVersion, no AWS call for a deleted object, ghosts dropped after a relist or a
resync, and a graceful stop while calls are in flight.

moto advances an execution one step per describe and finishes it after five, which would end
polling; the tests that need polling to go on answer every describe at the proxy instead
(``keep_polling``), so that each call still counts but the execution never finishes.

``DATASYNC_TEST_OPERATOR_PATH`` (unset in normal runs) puts another source tree of the operator
first on the operator process's ``PYTHONPATH``: ``test_a_stale_describe_cannot_undo_cancelled``
was run that way against the design before the work queue (commit 5df0b8f), where it fails.

A relist that lists nothing (every object deleted while the watch was away) calls no kopf
handler, so nothing tells the controller it happened: such ghosts go at the next periodic resync
(``test_the_periodic_resync_drops_a_ghost``), as the README says.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import kmock
import pytest

from tests.integration.conftest import OperatorFactory, wait_condition
from tests.integration.test_cancel_scenarios import CANCEL, DESCRIBE, NAME, assert_cancelled, create
from tests.support.fault_proxy import FaultProxy
from tests.support.kube_emulator import KubeEmulator, WriteRecord
from tests.support.moto_server import MotoServer
from tests.support.objects import condition_summary
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FINALIZER = "datasync.operator.io/finalizer"
#: Polls fast, and a rate limit high enough that polling is not stretched (share 0.5 -> 10/s).
FAST_POLLS = ("--poll-interval", "0.2", "--aws-rate-limit", "20")
#: Never in a log of a clean run or a graceful stop.
BAD_LOG_MARKERS = ("ERROR", "Traceback", "cannot schedule new futures")
#: What the operator logs when it forgets an object that no longer exists.
DROPPED = "dropping {namespace}/{name}: deleted while the watch was away"


# --- helpers ---------------------------------------------------------------------------------


def operator_env() -> dict[str, str]:
    """The operator's extra environment: another operator tree first, when asked for."""
    tree = os.environ.get("DATASYNC_TEST_OPERATOR_PATH")
    return {"PYTHONPATH": tree} if tree else {}


def keep_polling(proxy: FaultProxy, status: str = "TRANSFERRING") -> None:
    """From now on the proxy answers every describe itself: the execution stays ``status``."""
    proxy.answer(DESCRIBE, {"Status": status}, times=None)


def describes_of(proxy: FaultProxy, arn: str) -> int:
    """DescribeTaskExecution calls for one execution that reached the proxy."""
    return sum(1 for r in proxy.requests(DESCRIBE) if r.body.get("TaskExecutionArn") == arn)


def summary(kube: KubeEmulator, name: str, namespace: str) -> dict[str, tuple[str, str]]:
    found = kube.find(name, namespace=namespace)
    return condition_summary(found) if found else {}


def is_cancelled(kube: KubeEmulator, name: str, namespace: str) -> bool:
    return summary(kube, name, namespace).get("Cancelled", ("", ""))[0] == "True"


def stays(predicate: Callable[[], object], seconds: float, message: Callable[[], str]) -> None:
    """Assert that ``predicate`` holds at every look during a whole observation window."""
    deadline = time.monotonic() + seconds
    while True:
        if not predicate():
            raise AssertionError(message())
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def settle(predicate: Callable[[], object], seconds: float) -> bool:
    """Give something up to ``seconds`` to happen (or not); whether it did. Never fails."""
    try:
        wait_for(predicate, seconds)
    except AssertionError:
        return False
    return True


def assert_clean_log(operator: OperatorProcess) -> None:
    log = operator.log()
    for marker in BAD_LOG_MARKERS:
        assert marker not in log, f"{marker!r} in the operator's log:\n{log[-4000:]}"


def status_writes(kube: KubeEmulator, name: str) -> list[WriteRecord]:
    return [
        w for w in kube.writes() if w.method == "PATCH" and w.path.endswith(f"/{name}/status")
    ]


def _lists(kube: KubeEmulator, agent: str) -> int:
    return sum(
        1
        for r in list(kube.handler)
        if r.action == kmock.action.LIST
        and r.url.path.endswith("/datasyncexecutions")
        and str(r.headers.get("User-Agent", "")).startswith(agent)
    )


def kopf_lists(kube: KubeEmulator) -> int:
    """How often kopf listed the objects (once at start, again after each watch expiry)."""
    return _lists(kube, "kopf/")


def sweeps(kube: KubeEmulator) -> int:
    """How often the operator's ghost sweep listed the objects."""
    return _lists(kube, "datasync-operator/")


def wait_gone(kube: KubeEmulator, name: str, namespace: str, operator: OperatorProcess) -> None:
    wait_for(
        lambda: kube.find(name, namespace=namespace) is None,
        30,
        message=lambda: f"{name} was never deleted\n{operator.log()[-3000:]}",
    )


# --- a stale describe ------------------------------------------------------------------------


def test_a_stale_describe_cannot_undo_cancelled(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """A describe answered after the cancel was accepted never puts Cancelled=False back."""
    arn = moto.create_execution()
    operator = start_operator("--poll-interval", "0.3", env=operator_env())
    create(kube, namespace, arn, desired="Running")
    wait_condition(kube, NAME, namespace, "Ready", "True", "ExecutionActive", process=operator)
    proxy.forward_then_hang(DESCRIBE)  # the next poll reaches moto; its answer is held
    keep_polling(proxy, "CANCELLING")  # later polls: the cancel is taking effect
    wait_for(lambda: proxy.held(DESCRIBE) == 1, 10, message=lambda: operator.log()[-3000:])

    kube.patch_spec(NAME, {"desiredState": "Cancelled"}, namespace=namespace)
    # A design that cancels beside the poll in flight writes Cancelled=True now; let it.
    settle(lambda: is_cancelled(kube, NAME, namespace), 1.0)
    assert proxy.release(DESCRIBE) == 1  # the stale answer (execution still active) lands

    wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    polls = proxy.calls(DESCRIBE)
    stays(
        lambda: is_cancelled(kube, NAME, namespace),
        3.0,
        lambda: f"Cancelled=True was undone: {summary(kube, NAME, namespace)}",
    )
    assert proxy.calls(DESCRIBE) >= polls + 3, "polling did not go on after the cancel"
    obj = kube.get(NAME, namespace=namespace)
    assert condition_summary(obj)["Cancelled"] == ("True", "CancelAccepted")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2
    assert obj["status"]["executionStatus"] == "CANCELLING"
    assert proxy.calls(CANCEL) == 1


# --- no AWS call after deletion --------------------------------------------------------------


def test_no_aws_call_after_an_orphan_deletion(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """A polled Orphan object gets no describe once it is deleted (its poll timer is gone)."""
    arn = moto.create_execution()
    keep_polling(proxy)
    operator = start_operator(*FAST_POLLS)
    create(kube, namespace, arn, desired="Running")
    wait_for(lambda: proxy.calls(DESCRIBE) >= 2, 10, message=lambda: operator.log()[-3000:])
    # Delete just after a poll arrived, so that the next one is due a whole interval later:
    # a poll that starts before the watch event reaches the operator is not the operator's fault.
    seen = proxy.calls(DESCRIBE)
    wait_for(lambda: proxy.calls(DESCRIBE) > seen, 5, interval=0.005)
    kube.delete(NAME, namespace=namespace)
    wait_gone(kube, NAME, namespace, operator)
    after = proxy.calls(DESCRIBE)
    stays(
        lambda: proxy.calls(DESCRIBE) == after,
        2.0,
        lambda: f"described after deletion ({proxy.calls(DESCRIBE)} > {after})",
    )
    assert proxy.calls(CANCEL) == 0
    assert_clean_log(operator)


def test_no_aws_call_after_a_deletion_during_a_poll(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """A poll in flight when the object is deleted finishes without arming another."""
    arn = moto.create_execution()
    keep_polling(proxy)
    operator = start_operator(*FAST_POLLS)
    create(kube, namespace, arn, desired="Running")
    wait_for(lambda: proxy.calls(DESCRIBE) >= 2, 10, message=lambda: operator.log()[-3000:])
    proxy.clear_faults(DESCRIBE)
    proxy.forward_then_hang(DESCRIBE)
    keep_polling(proxy)
    wait_for(lambda: proxy.held(DESCRIBE) == 1, 10, message=lambda: operator.log()[-3000:])
    kube.delete(NAME, namespace=namespace)
    wait_gone(kube, NAME, namespace, operator)
    after = proxy.calls(DESCRIBE)
    assert proxy.release(DESCRIBE) == 1
    stays(
        lambda: proxy.calls(DESCRIBE) == after,
        2.0,
        lambda: f"described after deletion ({proxy.calls(DESCRIBE)} > {after})",
    )
    assert proxy.calls(CANCEL) == 0
    assert_clean_log(operator)


def test_no_aws_call_after_a_cancel_policy_deletion(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """deletionPolicy Cancel: one cancel, the finalizer released, then no AWS call at all."""
    arn = moto.create_execution()
    keep_polling(proxy)
    operator = start_operator(*FAST_POLLS)
    kube.create(
        NAME, {"executionArn": arn, "desiredState": "Running", "deletionPolicy": "Cancel"},
        namespace=namespace,
    )
    wait_for(lambda: proxy.calls(DESCRIBE) >= 2, 10, message=lambda: operator.log()[-3000:])
    assert FINALIZER in kube.get(NAME, namespace=namespace)["metadata"].get("finalizers", [])
    kube.delete(NAME, namespace=namespace)
    wait_gone(kube, NAME, namespace, operator)
    assert proxy.calls(CANCEL) == 1
    total = proxy.total_calls()
    stays(
        lambda: proxy.total_calls() == total,
        2.0,
        lambda: f"AWS called after deletion: {[r.operation for r in proxy.requests()][-5:]}",
    )
    assert moto.describe_status(arn) == "ERROR"  # cancelled (moto's word), once
    assert_clean_log(operator)


# --- ghosts ----------------------------------------------------------------------------------


def test_a_relist_drops_a_ghost(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """An object deleted while the watch was away stops being polled after a 410 relist."""
    neighbour = True  # a relist that lists nothing is the periodic resync's (see the docstring)
    arn = moto.create_execution()
    other = moto.create_execution()
    keep_polling(proxy)
    create(kube, namespace, arn, desired="Running")
    if neighbour:
        kube.create("neighbour", {"executionArn": other, "desiredState": "Running"},
                    namespace=namespace)
    operator = start_operator(*FAST_POLLS)  # the periodic resync (600 s) stays out of it
    wait_for(
        lambda: describes_of(proxy, arn) >= 2 and (not neighbour or describes_of(proxy, other) >= 2),
        10, message=lambda: operator.log()[-3000:],
    )
    # A design may sweep once after the initial list (1 s later): let that pass first, so that
    # only a sweep after the relist below can drop the ghost.
    settle(lambda: sweeps(kube) >= 1, 2.5)
    kube.delete_silently(NAME, namespace=namespace)
    dropped = DROPPED.format(namespace=namespace, name=NAME)
    polled = describes_of(proxy, arn)
    stays(lambda: dropped not in operator.log(), 1.5, lambda: "dropped with no relist or resync")
    assert describes_of(proxy, arn) >= polled + 3, "the ghost should still be polled until then"

    relists = kopf_lists(kube)
    kube.expire_watches()
    wait_for(lambda: kopf_lists(kube) > relists, 10, message="kopf did not list again after 410")
    wait_for(lambda: dropped in operator.log(), 10,
             message=lambda: f"the ghost was never dropped\n{operator.log()[-3000:]}")
    after = describes_of(proxy, arn)
    stays(lambda: describes_of(proxy, arn) == after, 2.0,
          lambda: f"the ghost is still polled ({describes_of(proxy, arn)} > {after})")
    if neighbour:  # the sweep confirmed before dropping: the live object is still polled
        polled = describes_of(proxy, other)
        wait_for(lambda: describes_of(proxy, other) >= polled + 2, 10,
                 message="the neighbour is no longer polled")
        assert DROPPED.format(namespace=namespace, name="neighbour") not in operator.log()
    assert_clean_log(operator)


def test_the_periodic_resync_drops_a_ghost(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """Without any relist, the --resync-interval sweep drops an object the watch missed."""
    arn = moto.create_execution()
    keep_polling(proxy)
    create(kube, namespace, arn, desired="Running")
    operator = start_operator(*FAST_POLLS, "--resync-interval", "1")
    wait_for(lambda: sweeps(kube) >= 1 and describes_of(proxy, arn) >= 2, 10,
             message=lambda: operator.log()[-3000:])
    relists = kopf_lists(kube)
    kube.delete_silently(NAME, namespace=namespace)
    dropped = DROPPED.format(namespace=namespace, name=NAME)
    wait_for(lambda: dropped in operator.log(), 10,
             message=lambda: f"the ghost was never dropped\n{operator.log()[-3000:]}")
    assert kopf_lists(kube) == relists  # no relist: the periodic sweep did it
    after = describes_of(proxy, arn)
    stays(lambda: describes_of(proxy, arn) == after, 2.0,
          lambda: f"the ghost is still polled ({describes_of(proxy, arn)} > {after})")
    assert_clean_log(operator)


# --- graceful stop ---------------------------------------------------------------------------


def test_sigterm_with_a_cancel_in_flight_finishes_it(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """SIGTERM during a slow cancel: exit 0, no error logged, the result written (or redone)."""
    arn = moto.create_execution()
    proxy.delay(CANCEL, 2.0)
    operator = start_operator()
    create(kube, namespace, arn)
    wait_for(lambda: proxy.calls(CANCEL) == 1, 30, message=lambda: operator.log()[-3000:])
    stopping = time.monotonic()
    code = operator.stop(timeout=20)
    took = time.monotonic() - stopping
    assert code == 0, f"exit code {code}:\n{operator.log()[-4000:]}"
    assert took < 10, f"took {took:.1f}s to stop"
    assert_clean_log(operator)

    obj = kube.get(NAME, namespace=namespace)
    if is_cancelled(kube, NAME, namespace):  # finished before exit: written, once
        assert_cancelled(obj, "CancelAccepted")
        assert proxy.calls(CANCEL) == 1
    else:  # requeued and lost with the process: the next one completes it, cancelling no more
        restarted = start_operator()
        obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=restarted)
        assert_cancelled(obj, "AlreadyCancelled")  # DataSync refused the second: cancelled once
        assert proxy.calls(CANCEL) <= 2
    assert moto.describe_status(arn) == "ERROR"


def test_a_graceful_stop_posts_the_last_event_and_exits_promptly(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """SIGTERM during a slow cancel: its Event is posted too, and the process exits soon after."""
    arn = moto.create_execution()
    proxy.fail(CANCEL)  # a retry first: its acceptance then ends with a CancelAccepted Event
    proxy.delay(CANCEL, 1.0)
    operator = start_operator("--log-level", "DEBUG")
    create(kube, namespace, arn)
    wait_for(lambda: proxy.calls(CANCEL) == 2, 30, message=lambda: operator.log()[-3000:])
    stopping = time.monotonic()
    assert operator.stop(timeout=20) == 0, operator.log()[-4000:]
    took = time.monotonic() - stopping
    assert is_cancelled(kube, NAME, namespace)
    assert "could not post Event" not in operator.log(), "an Event was cut off by the stop"
    assert kube.events(namespace=namespace, involved_name=NAME, reason="CancelAccepted")
    assert took < 4.0, f"took {took:.1f}s to stop with 1s of work left"


# --- one writer per key ----------------------------------------------------------------------


def test_one_writer_per_key_while_the_object_keeps_changing(
    kube: KubeEmulator, moto: MotoServer, proxy: FaultProxy, namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """Metadata edits during a slow cancel: one cancel, status writes never overlap."""
    arn = moto.create_execution()
    proxy.delay(CANCEL, 1.0)
    kube.set_status_write_delay(0.2)  # two writers of one object would overlap visibly
    operator = start_operator()
    create(kube, namespace, arn)
    wait_for(lambda: proxy.calls(CANCEL) == 1, 30, message=lambda: operator.log()[-3000:])
    for n in range(6):
        edit: dict[str, Any] = (
            {"labels": {"touched": str(n)}} if n % 2 else {"annotations": {"touched": str(n)}}
        )
        kube.patch(NAME, {"metadata": edit}, namespace=namespace)
    assert not is_cancelled(kube, NAME, namespace), "the cancel was not in flight during the edits"

    obj = wait_condition(kube, NAME, namespace, "Cancelled", "True", process=operator)
    assert_cancelled(obj, "CancelAccepted")
    assert obj["metadata"]["generation"] == 1  # metadata edits leave the generation alone
    assert obj["metadata"]["labels"] == {"touched": "5"}
    stays(lambda: proxy.calls(CANCEL) == 1, 1.0, lambda: f"{proxy.calls(CANCEL)} cancels")
    writes = sorted(status_writes(kube, NAME), key=lambda w: w.started)
    assert 1 <= len(writes) <= 4, writes
    assert sum(w.status == 409 for w in writes) <= 3, writes
    for first, second in itertools.pairwise(writes):
        assert second.started >= first.finished, f"two status writes overlapped: {writes}"
    assert_clean_log(operator)
