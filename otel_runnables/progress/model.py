"""The typed run tree a progress query returns, and the rules that build it
from the span records of any backend (``build_tree``, ``summarise``).

- A run is finished iff its real span has an end; a run seen only through its
  pending span (OTLP backends) or as a real span without an end (the local
  store) is ``running`` — or ``lost`` when the local store knows the process
  writing it is gone. Status ok/error comes from the real span.
- Custom events come from the run span's events and its event-mirror spans;
  one event seen both ways counts once (the n-th event of a name and
  timestamp in one is the n-th in the other: events never merge with each
  other, however coarse the clock); time order, whatever order the backend
  returned, ties in the order they happened. The local store counts the
  events it did not keep in ``events_not_stored``. Events the records hold no copy of are
  counted in ``events_not_exported``: from the run span's
  ``otel_runnables.run.custom_events`` (set when the SDK's event limit cut it),
  or, while the run is going, from its mirrors' ``otel_runnables.event.count``.
- Progress comes from the latest progress-like event (see ``progress_of``).
- Runs nest by run id; a run whose parent run is missing becomes a root.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from otel_runnables._conventions import (
    EVENT_COUNT,
    EVENT_DATA,
    EVENT_KIND,
    EVENT_KIND_CUSTOM,
    EVENT_NAME,
    LIVENESS_KEYS,
    METADATA,
    RUN_CUSTOM_EVENTS,
    RUN_ID,
    RUN_METADATA_PREFIX,
    RUN_NAME,
    RUN_PARENT_ID,
    RUN_TYPE,
    SPAN_TYPE,
    SPAN_TYPE_EVENT,
    SPAN_TYPE_PENDING,
    SPAN_TYPE_RUN,
    TAG_TAGS,
)
from otel_runnables.progress.records import SpanRecord

__all__ = [
    "Progress",
    "RunEvent",
    "RunNode",
    "RunStatus",
    "RunSummary",
    "RunTree",
    "build_tree",
    "find_run",
    "progress_of",
    "summarise",
]

RunStatus = Literal["running", "ok", "error", "lost"]
"""``lost``: the run never ended and the process running it is gone (killed,
crashed): what the local store shows instead of ``running`` forever."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a run has got, from its latest progress-like custom event:
    ``step``/``total``, ``current``/``total``, ``completed``/``total`` or ``percent``."""

    done: float | None
    total: float | None
    percent: float | None  # 0..100, derived when done and total are known
    message: str | None
    event_name: str
    time_ns: int


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One custom event of a run (seen once, whether as span event, mirror span or both)."""

    name: str
    time_ns: int
    data: Any  # the decoded ``otel_runnables.event.data`` JSON, or None without content capture
    attributes: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # filled in by ``progress.events``
    run_name: str | None = None


@dataclass(frozen=True, slots=True)
class RunNode:
    """One run and its child runs, in start order."""

    run_id: str
    parent_run_id: str | None
    trace_id: str
    span_id: str
    name: str
    run_type: str
    status: RunStatus
    status_message: str
    start_ns: int
    end_ns: int | None  # None while running
    tags: Sequence[str]
    metadata: Mapping[str, Any]
    events: Sequence[RunEvent]  # custom events in time order
    progress: Progress | None
    children: Sequence[RunNode] = ()
    # custom events the run had that the backend holds no copy of: cut by the SDK's
    # span event limit, or summed up by a running run's event mirrors
    events_not_exported: int = 0
    events_not_stored: int = 0  # custom events the local store did not keep (its bound, a full queue)

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class RunTree:
    """The runs of one trace (several roots when a foreign span holds them)."""

    trace_id: str
    roots: Sequence[RunNode]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One root run, as ``otel-runnables runs`` lists it."""

    run_id: str
    trace_id: str
    name: str
    run_type: str
    status: RunStatus
    start_ns: int
    end_ns: int | None
    service_name: str | None = None
    events_not_stored: int = 0

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns


# -- building the tree from span records ------------------------------------------

_PAIRS = (("step", "total"), ("current", "total"), ("completed", "total"))
_MESSAGE_KEYS = ("message", "msg", "status", "description")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def progress_of(event: RunEvent) -> Progress | None:
    """``step``/``total``, ``current``/``total``, ``completed``/``total`` or ``percent``
    (0-100) in the event's data, with an optional ``message``; None otherwise."""
    data = event.data
    if not isinstance(data, Mapping):
        return None
    message = next((str(data[key]) for key in _MESSAGE_KEYS if isinstance(data.get(key), str)), None)
    for done_key, total_key in _PAIRS:
        done = _number(data.get(done_key))
        if done is None:
            continue
        total = _number(data.get(total_key))
        percent = None
        if total is not None and total > 0:
            percent = max(0.0, min(100.0, 100.0 * done / total))
        elif _number(data.get("percent")) is not None:
            percent = _number(data.get("percent"))
        return Progress(done, total, percent, message, event.name, event.time_ns)
    percent = _number(data.get("percent"))
    if percent is not None:
        return Progress(None, None, max(0.0, min(100.0, percent)), message, event.name, event.time_ns)
    return None


def _event_data(attributes: Mapping[str, Any]) -> Any:
    text = attributes.get(EVENT_DATA)
    if isinstance(text, str):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    prefix = EVENT_DATA + "."
    flat = {key[len(prefix) :]: value for key, value in attributes.items() if key.startswith(prefix)}
    return flat or None


def _metadata(attributes: Mapping[str, Any]) -> dict[str, Any]:
    text = attributes.get(METADATA)
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return value
    prefix = RUN_METADATA_PREFIX + "."
    return {key[len(prefix) :]: value for key, value in attributes.items() if key.startswith(prefix)}


def _tags(attributes: Mapping[str, Any]) -> list[str]:
    tags = attributes.get(TAG_TAGS)
    if isinstance(tags, str):
        return [tags]
    if isinstance(tags, Sequence):
        return [str(tag) for tag in tags]
    return []


@dataclass
class _Run:
    """What the records say about one run, merged."""

    run_id: str
    real: SpanRecord | None = None
    pending: SpanRecord | None = None
    # by (name, time, n): the n-th event of that name and time in its source (span events, mirrors)
    events: dict[tuple[str, int, int], RunEvent] = field(default_factory=dict)
    mirrored: int = 0  # events its mirror spans stand for

    def about(self) -> SpanRecord:
        record = self.real or self.pending
        assert record is not None
        return record


def _add_events(run: _Run, events: Sequence[tuple[str, int, Mapping[str, Any]]]) -> None:
    """Events of one source (a span's events, or its mirrors), in the order they happened."""
    seen: dict[tuple[str, int], int] = {}
    for name, time_ns, attributes in events:
        nth = seen[name, time_ns] = seen.get((name, time_ns), -1) + 1
        key = (name, time_ns, nth)
        if key not in run.events:
            plain = {k: v for k, v in attributes.items() if k not in LIVENESS_KEYS}
            run.events[key] = RunEvent(name, time_ns, _event_data(plain), plain)


def _mirrored_event(run: _Run, mirror: SpanRecord) -> tuple[str, int, Mapping[str, Any]]:
    """An event mirror: the latest event of a stretch, and how many events it stands for."""
    attributes = mirror.attributes
    name = attributes.get(EVENT_NAME)
    count = attributes.get(EVENT_COUNT)
    run.mirrored += count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
    # older releases named a mirror after its event and set no event name
    return (name if isinstance(name, str) else mirror.name, mirror.start_ns, attributes)


def _not_exported(run: _Run, seen: int) -> int:
    """Custom events the run had beyond the ``seen`` ones the records hold."""
    real = run.real
    if real is not None and real.end_ns is not None:
        declared = real.attributes.get(RUN_CUSTOM_EVENTS)
        known = declared if isinstance(declared, int) and not isinstance(declared, bool) else 0
    else:
        known = run.mirrored
    return max(0, known - seen)


def _merge(records: Sequence[SpanRecord]) -> tuple[dict[str, _Run], dict[str, str]]:
    """Runs by run id, and run span id -> run id."""
    runs: dict[str, _Run] = {}
    run_of_span: dict[str, str] = {}
    mirrors: list[SpanRecord] = []
    seen: dict[str, SpanRecord] = {}
    for record in records:
        earlier = seen.get(record.span_id)
        # a backend may return a span twice: keep the most complete copy
        if earlier is not None and (earlier.end_ns is not None or record.end_ns is None):
            continue
        seen[record.span_id] = record
    for record in seen.values():
        attributes = record.attributes
        kind = attributes.get(SPAN_TYPE)
        run_id = attributes.get(RUN_ID)
        if kind == SPAN_TYPE_EVENT:
            mirrors.append(record)
            continue
        if not isinstance(run_id, str) or kind not in (SPAN_TYPE_RUN, SPAN_TYPE_PENDING):
            continue  # a foreign span: not a run
        run = runs.setdefault(run_id, _Run(run_id))
        if kind == SPAN_TYPE_RUN:
            run.real = record
            run_of_span[record.span_id] = run_id
            _add_events(
                run,
                [
                    (event.name, event.time_ns, event.attributes)
                    for event in record.events
                    if event.attributes.get(EVENT_KIND) == EVENT_KIND_CUSTOM
                ],
            )
        elif run.pending is None:
            run.pending = record
            if record.parent_span_id is not None:
                # a pending span's parent is its run's span, even before that span arrives
                run_of_span.setdefault(record.parent_span_id, run_id)
    mirrored: dict[str, list[tuple[str, int, Mapping[str, Any]]]] = {}
    for mirror in sorted(mirrors, key=lambda record: record.start_ns):
        run_id = mirror.attributes.get(RUN_ID)
        if not isinstance(run_id, str):
            run_id = run_of_span.get(mirror.parent_span_id or "")
        if isinstance(run_id, str) and run_id in runs:
            mirrored.setdefault(run_id, []).append(_mirrored_event(runs[run_id], mirror))
    for run_id, events in mirrored.items():
        _add_events(runs[run_id], events)
    return runs, run_of_span


def _node(run: _Run, children: Sequence[RunNode]) -> RunNode:
    record = run.about()
    attributes = record.attributes
    real = run.real
    status: RunStatus = "running"
    end_ns = None
    message = ""
    if real is not None and real.end_ns is not None:
        status = "error" if real.status == "error" else "ok"
        end_ns = real.end_ns
        message = real.status_message
    elif real is not None and real.lost:
        status = "lost"
        message = "the process running it is gone"
    events = sorted(run.events.values(), key=lambda event: event.time_ns)  # stable: ties keep their order
    progress = next((p for p in map(progress_of, reversed(events)) if p is not None), None)
    name = attributes.get(RUN_NAME)
    return RunNode(
        run_id=run.run_id,
        parent_run_id=_str_or_none(attributes.get(RUN_PARENT_ID)),
        trace_id=record.trace_id,
        span_id=real.span_id if real is not None else (record.parent_span_id or record.span_id),
        name=record.name if real is not None or not isinstance(name, str) else name,
        run_type=str(attributes.get(RUN_TYPE) or "chain"),
        status=status,
        status_message=message,
        start_ns=record.start_ns,
        end_ns=end_ns,
        tags=_tags(attributes),
        metadata=_metadata(attributes),
        events=events,
        progress=progress,
        children=tuple(children),
        events_not_exported=_not_exported(run, len(events)),
        events_not_stored=0 if real is None else real.events_not_stored,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def build_tree(records: Sequence[SpanRecord], trace_id: str | None = None) -> RunTree:
    """The runs of one trace, from its span records in any order."""
    runs, _ = _merge(records)
    kids: dict[str | None, list[_Run]] = {}
    for run in runs.values():
        parent = _str_or_none(run.about().attributes.get(RUN_PARENT_ID))
        kids.setdefault(parent if parent in runs else None, []).append(run)

    roots = [_build(run, kids) for run in sorted(kids.get(None, []), key=_start_key)]
    if trace_id is None:
        trace_id = records[0].trace_id if records else ""
    return RunTree(trace_id=trace_id, roots=tuple(roots))


def _build(root: _Run, kids: Mapping[str | None, list[_Run]]) -> RunNode:
    """The node of ``root`` with its subtree, children before parents, without
    recursion: a tree of any depth."""
    built: dict[str, RunNode] = {}
    stack: list[tuple[_Run, bool]] = [(root, False)]
    while stack:
        run, children_built = stack.pop()
        below = sorted(kids.get(run.run_id, []), key=_start_key)
        if children_built:
            built[run.run_id] = _node(run, [built.pop(child.run_id) for child in below])
        else:
            stack.append((run, True))
            stack.extend((child, False) for child in below)
    return built[root.run_id]


def _start_key(run: _Run) -> tuple[int, str]:
    return (run.about().start_ns, run.run_id)


def find_run(tree: RunTree, run_id: str) -> RunNode | None:
    """The node of ``run_id`` anywhere in the tree."""
    stack = list(tree.roots)
    while stack:
        node = stack.pop()
        if node.run_id == run_id:
            return node
        stack.extend(node.children)
    return None


def summarise(records: Sequence[SpanRecord]) -> list[RunSummary]:
    """Root runs (newest first) from the records of recent root runs."""
    runs, _ = _merge(records)
    summaries = []
    for run in runs.values():
        node = _node(run, ())
        summaries.append(
            RunSummary(
                run_id=node.run_id,
                trace_id=node.trace_id,
                name=node.name,
                run_type=node.run_type,
                status=node.status,
                start_ns=node.start_ns,
                end_ns=node.end_ns,
                service_name=run.about().service_name,
                events_not_stored=node.events_not_stored,
            )
        )
    return sorted(summaries, key=lambda summary: summary.start_ns, reverse=True)
