"""Step progress of runs, read back from the embedded store, Jaeger or Tempo.

from otel_runnables import progress

tree = progress.get(run_id)                       # the embedded store (default)
tree = progress.get(trace_id, backend="jaeger", url="http://localhost:16686")
node = tree.roots[0]
node.status, node.progress.percent, node.progress.message, node.events
progress.runs(last=10)                             # recent root runs
"""

from otel_runnables.progress.backend import (
    Backend,
    BackendError,
    BackendUnavailableError,
    InvalidOptionError,
    MalformedResponseError,
    ResponseTooLargeError,
    TraceNotFoundError,
)
from otel_runnables.progress.model import (
    Progress,
    RunEvent,
    RunNode,
    RunStatus,
    RunSummary,
    RunTree,
    build_tree,
    progress_of,
)
from otel_runnables.progress.query import (
    BACKENDS,
    InvalidIdError,
    UnknownBackendError,
    events,
    events_not_stored,
    get,
    make_backend,
    runs,
    tree_events,
)
from otel_runnables.progress.records import EventRecord, SpanRecord

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "EventRecord",
    "InvalidIdError",
    "InvalidOptionError",
    "MalformedResponseError",
    "Progress",
    "RunEvent",
    "RunNode",
    "RunStatus",
    "RunSummary",
    "ResponseTooLargeError",
    "RunTree",
    "SpanRecord",
    "TraceNotFoundError",
    "UnknownBackendError",
    "build_tree",
    "events",
    "events_not_stored",
    "get",
    "make_backend",
    "progress_of",
    "runs",
    "tree_events",
]
