"""datasync-operator: manage AWS DataSync task executions declaratively from Kubernetes.

The package is layered (lower layers never import higher ones):

* pure core, no I/O: :mod:`.arn`, :mod:`.conditions`, :mod:`.errors`, :mod:`.backoff`,
  :mod:`.reconcile` (the decision function) and :mod:`.config`;
* adapters: :mod:`.datasync` (boto3) and :mod:`.logs`;
* the kopf shell: :mod:`.handlers` (handler registrations), :mod:`.runner` (starting kopf)
  and :mod:`.cli` (the ``datasync-operator`` command).
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("datasync-operator")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

GROUP = "datasync.operator.io"
VERSION = "v1alpha1"
PLURAL = "datasyncexecutions"
KIND = "DataSyncExecution"
#: The finalizer the operator holds on objects with ``deletionPolicy: Cancel``.
FINALIZER = f"{GROUP}/finalizer"
#: Set to "true" on a resource to delete it without the cancel of ``deletionPolicy: Cancel``
#: (the escape hatch for a finalizer stuck on an unreachable or forbidding AWS).
SKIP_CANCEL_ANNOTATION = f"{GROUP}/skip-cancel-on-delete"

__all__ = [
    "FINALIZER",
    "GROUP",
    "KIND",
    "PLURAL",
    "SKIP_CANCEL_ANNOTATION",
    "VERSION",
    "__version__",
]
