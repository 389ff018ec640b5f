"""`current_run()`: the run whose code is executing here, as a small frozen
value — to log its id, link to its trace, or tag your own telemetry.

    from otel_runnables import current_run

    @RunnableLambda
    def step(x):
        run = current_run()
        log.info("working", extra={"run_id": str(run.run_id), "trace_id": run.trace_id})
        return x

Outside any run it returns None. The answer is a snapshot: it does not follow
the run (tags or metadata added later are not in it).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from otel_runnables._config import RunScope, current_child_config

__all__ = ["RunInfo", "current_run"]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What identifies a run and where to find it: ``run_id`` is the id
    handlers and ``astream_events`` see; ``trace_id`` (32 hex digits) and
    ``span_id`` (16) find its span in Jaeger, Tempo or the local store, and
    are None when OpenTelemetry gives the run no valid span (SDK disabled)."""

    run_id: uuid.UUID
    parent_run_id: uuid.UUID | None
    trace_id: str | None
    span_id: str | None
    name: str
    run_type: str
    tags: tuple[str, ...]
    metadata: Mapping[str, Any]


def current_run() -> RunInfo | None:
    """The innermost run in progress in this context (thread, task, or a
    worker the run was carried into), or None outside any run."""
    config = current_child_config()
    scope = None if config is None else config.get("callbacks")
    if not isinstance(scope, RunScope) or scope.parent is None:
        return None
    run = scope.parent
    context = run.span.get_span_context()
    valid = context.is_valid
    return RunInfo(
        run_id=run.id,
        parent_run_id=run.parent_id,
        trace_id=f"{context.trace_id:032x}" if valid else None,
        span_id=f"{context.span_id:016x}" if valid else None,
        name=run.name,
        run_type=run.run_type,
        tags=tuple(run.tags),
        metadata=MappingProxyType(dict(run.metadata)),
    )
