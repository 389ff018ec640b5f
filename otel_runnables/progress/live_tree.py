"""The run tree of a followed run, kept from what ``follow()`` has taken: what
``progress --follow`` draws after each change, without reading the tree again."""

from __future__ import annotations

from otel_runnables.progress.facts import RecordedEvent, RecordedRun
from otel_runnables.progress.model import RunEvent, RunNode, RunStatus, RunTree, progress_of
from otel_runnables.progress.replay import Replayer

__all__ = ["tree_of"]

_STATUSES: dict[str, RunStatus] = {"running": "running", "ok": "ok", "error": "error", "lost": "lost"}


def _node(record: RecordedRun, events: list[RecordedEvent], children: tuple[RunNode, ...]) -> RunNode:
    kept = sorted(
        (RunEvent(event.name, event.time_ns, event.data) for event in events),
        key=lambda event: (event.time_ns, event.name),
    )
    found = next((p for p in map(progress_of, reversed(kept)) if p is not None), None)
    return RunNode(
        run_id=record.run_id,
        parent_run_id=record.parent_run_id,
        trace_id=record.trace_id,
        span_id=record.span_id,
        name=record.name,
        run_type=record.run_type,
        status=_STATUSES.get(record.status, "error"),
        status_message=record.status_message,
        start_ns=record.start_ns,
        end_ns=record.end_ns,
        tags=list(record.tags),
        metadata=dict(record.metadata),
        events=kept,
        progress=found,
        children=children,
    )


def tree_of(replayer: Replayer, trace_id: str = "") -> RunTree:
    """The runs the replayer has taken, as a tree rooted at the followed run."""
    taken = replayer.runs_in_scope()
    known = {record.run_id for record, _ in taken}
    kids: dict[str | None, list[tuple[RecordedRun, list[RecordedEvent]]]] = {}
    for record, events in taken:
        is_root = record.run_id == replayer.root or record.parent_run_id not in known
        kids.setdefault(None if is_root else record.parent_run_id, []).append((record, events))
    built: dict[str, RunNode] = {}
    # children before parents, without recursion: a tree may be deeper than Python's stack
    order: list[tuple[RecordedRun, list[RecordedEvent]]] = []
    stack = list(kids.get(None, []))
    while stack:
        pair = stack.pop()
        order.append(pair)
        stack.extend(kids.get(pair[0].run_id, []))
    for record, events in reversed(order):
        children = tuple(built[child.run_id] for child, _ in kids.get(record.run_id, []))
        built[record.run_id] = _node(record, events, children)
    roots = tuple(built[record.run_id] for record, _ in kids.get(None, []))
    if not trace_id and taken:
        trace_id = taken[0][0].trace_id
    return RunTree(trace_id=trace_id, roots=roots)
