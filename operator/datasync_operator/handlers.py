"""The kopf shell: what kopf does for the operator, and the one handler that feeds the queue.

kopf logs in and watches DataSyncExecution objects, and serves liveness. Its resource
handler, ``observe`` (``@kopf.on.event``), hands every watch event to
:meth:`.controller.Controller.observe`, which records the latest copy and enqueues the key;
the controller's workers do everything else. Two more event handlers feed the access decision:
``access-policy`` (the cluster-scoped DataSyncAccessPolicy objects) and ``namespace-labels``
(the labels of namespaces, for the policies' ``namespaceSelector``); each re-enqueues the keys
a change concerns. No handler of kopf's change-detecting kinds
(create/update/delete/timers) is registered, so kopf writes nothing to the objects: no
annotations, no finalizers; the operator's own finalizer (``deletionPolicy: Cancel``) and the
status are written by the controller alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from datasync_operator import GROUP, PLURAL, VERSION
from datasync_operator.access import POLICY_PLURAL
from datasync_operator.controller import Controller

logger = logging.getLogger("datasync_operator")

_LOGIN_SETTINGS = kopf.OperatorSettings()  # kopf's login functions take (and ignore) settings

#: Component name of the operator's Events (``reportingController``/``source.component``).
EVENT_COMPONENT = "datasync-operator"


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base (the last-handled state of an object) for an operator that needs none.

    kopf builds and compares a diff base on every watch event, by deep-copying the object, to
    detect changes for create/update handlers. The operator has no such handler (the controller
    compares spec with ``status.observedGeneration``), so nothing is built, stored or read.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


def login(logger: logging.Logger | logging.LoggerAdapter[Any]) -> kopf.ConnectionInfo | None:
    """kopf's usual logins (in-cluster service account or kubeconfig): the first that works.

    Used by kopf (the login activity) and by the operator's own client (:mod:`.kube`), which
    logs in again the same way when the API server answers 401.
    """
    for attempt in (kopf.login_via_pykube, kopf.login_via_client):
        try:
            found = attempt(logger=logger, settings=_LOGIN_SETTINGS)
        except Exception as exc:
            logger.debug("login via %s failed: %s", attempt.__name__, exc)
            continue
        if found is not None:
            return found
    return None


def register(
    registry: kopf.OperatorRegistry,
    controller: Controller,
    *,
    on_startup: Callable[[], None] | None = None,
    on_cleanup: Callable[[], Any] | None = None,
) -> None:
    """Register the operator's kopf handlers in ``registry``."""

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # Events are the controller's (:mod:`.events`)
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        # kopf's per-object event workers only hand events over: let idle ones go quickly.
        settings.queueing.idle_timeout = 1.0
        if on_startup is not None:
            on_startup()

    @kopf.on.login(registry=registry, errors=kopf.ErrorsMode.IGNORED)
    def log_in(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return login(kwargs["logger"])

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="observe")
    async def observe(**kwargs: Any) -> None:
        controller.observe(kwargs["type"], kwargs["body"])

    @kopf.on.event(GROUP, VERSION, POLICY_PLURAL, registry=registry, id="access-policy")
    async def observe_policy(**kwargs: Any) -> None:
        controller.observe_policy(kwargs["type"], kwargs["body"])

    # Watched rather than read on demand: a label removed from a namespace revokes its grant
    # at once (and the operator's own client would need one GET per namespace anyway).
    @kopf.on.event("", "v1", "namespaces", registry=registry, id="namespace-labels")
    async def observe_namespace(**kwargs: Any) -> None:
        controller.observe_namespace(kwargs["type"], kwargs["body"])

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        if on_cleanup is not None:
            await on_cleanup()
