"""What a run's record says, as plain facts, whichever way it was read.

``follow()`` turns these into v2 dictionaries. They come from span records
(the embedded store, Jaeger, Tempo: ``facts_from_spans``) or, for a run live
in this process, from the bus (``facts_from_entry``), which encodes the live
values exactly as the record would hold them: a follower cannot tell which
way an event reached it.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otel_runnables import _bridge as bridge
from otel_runnables import _conventions as conventions
from otel_runnables._event_dicts import is_stream_start_marker
from otel_runnables._sentinel import MISSING
from otel_runnables.progress.model import _event_data, _merge, _metadata, _tags
from otel_runnables.progress.records import EventRecord, SpanRecord

if TYPE_CHECKING:
    from otel_runnables._runs import Run

__all__ = [
    "FINAL_STATUSES",
    "RecordedEvent",
    "RecordedRun",
    "event_from_record",
    "entry_id",
    "event_tags",
    "facts_from_entry",
    "facts_from_spans",
    "key_text",
    "recorded_value",
    "run_from_span",
]

FINAL_STATUSES = frozenset({"ok", "error", "lost"})

# the tags a sequence step or parallel branch gets from its parent alone: a
# custom event's tags are its run's without them (the dispatching scope's)
_LOCAL_TAG = re.compile(r"^(seq:step:\d+|map:key:.*)$")


@dataclass(frozen=True, slots=True)
class RecordedRun:
    """One run as its record shows it at one moment."""

    run_id: str
    parent_run_id: str | None
    name: str
    run_type: str
    tags: tuple[str, ...]
    metadata: Mapping[str, Any]
    start_ns: int
    inputs: Any  # the recorded JSON value, or MISSING
    status: str  # running, ok, error or lost
    end_ns: int | None = None
    status_message: str = ""
    outputs: Any = MISSING
    trace_id: str = ""
    span_id: str = ""  # the run's own span


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One custom event of a run; ``key`` identifies it within its run."""

    run_id: str
    name: str
    time_ns: int
    key: Any
    data: Any


def event_tags(run_tags: Sequence[str]) -> list[str]:
    """A custom event's tags from its run's: without the step or branch tag."""
    return [tag for tag in run_tags if not _LOCAL_TAG.match(tag)]


def recorded_value(attributes: Mapping[str, Any], direction: str) -> Any:
    """``input.value`` / ``output.value`` as the value it encodes (JSON decoded,
    text as is), or MISSING when the record holds none (content capture off)."""
    text = attributes.get(f"{direction}.value")
    if not isinstance(text, str):
        return MISSING
    if attributes.get(f"{direction}.mime_type") == "application/json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def run_from_span(record: SpanRecord, *, final: bool = True) -> RecordedRun:
    """A run's real span (``final``: its end, if it has one, is the run's end)
    or its pending span (``final=False``)."""
    attributes = record.attributes
    status = "running"
    message = record.status_message
    if final and record.end_ns is not None:
        status = "error" if record.status == "error" else "ok"
    elif final and record.lost:  # the local store knows its process is gone
        status, message = "lost", "the process running it is gone"
    parent = attributes.get(conventions.RUN_PARENT_ID)
    name = attributes.get(conventions.RUN_NAME)
    return RecordedRun(
        run_id=str(attributes.get(conventions.RUN_ID)),
        parent_run_id=parent if isinstance(parent, str) and parent else None,
        name=record.name if final or not isinstance(name, str) else name,
        run_type=str(attributes.get(conventions.RUN_TYPE) or "chain"),
        tags=tuple(_tags(attributes)),
        metadata=_metadata(attributes),
        start_ns=record.start_ns,
        inputs=recorded_value(attributes, "input"),
        status=status,
        end_ns=record.end_ns if status != "running" else None,
        status_message=message if status != "running" else "",
        outputs=recorded_value(attributes, "output") if status == "ok" else MISSING,
        trace_id=record.trace_id,
        span_id=record.span_id if final else (record.parent_span_id or record.span_id),
    )


def facts_from_spans(records: Sequence[SpanRecord]) -> tuple[list[RecordedRun], list[RecordedEvent]]:
    """The runs and custom events in span records of any backend: a run's real
    span, else its pending span; its span events and event-mirror spans, each once."""
    merged, _ = _merge(records)
    runs: list[RecordedRun] = []
    events: list[RecordedEvent] = []
    for run_id, run in merged.items():
        if run.real is not None:
            runs.append(run_from_span(run.real, final=True))
        elif run.pending is not None:
            # a pending span is the run's announcement, not its end
            runs.append(run_from_span(run.pending, final=False))
        real = run.real
        if real is not None and real.events and all(event.seq is not None for event in real.events):
            # the store's: told apart by their number in the run, as on the bus
            events += [found for event in real.events if (found := event_from_record(run_id, event))]
            continue
        for (name, time_ns, _), event in run.events.items():
            events.append(RecordedEvent(run_id, name, time_ns, (name, time_ns), event.data))
    return runs, events


def event_from_record(run_id: str, event: EventRecord) -> RecordedEvent | None:
    """A span event of a run's span, when it is a custom event."""
    attributes = event.attributes
    if attributes.get(conventions.EVENT_KIND) != conventions.EVENT_KIND_CUSTOM:
        return None  # e.g. the exception event of a failed run
    plain = {key: value for key, value in attributes.items() if key not in _NOT_DATA}
    # the store numbers a run's events; OTLP backends have only name and time to tell them apart
    key: Any = event.seq if event.seq is not None else (event.name, event.time_ns)
    return RecordedEvent(run_id, event.name, event.time_ns, key, _event_data(plain))


_NOT_DATA = (conventions.SPAN_TYPE, conventions.RUN_ID, conventions.RUN_NAME)


# -- a live run, as its record would show it --------------------------------------


def _live_run(
    run: Run, status: str, start_ns: int, end_ns: int | None, message: str, outputs: Any
) -> RecordedRun:
    attributes = conventions.run_attributes(run.tags, run.metadata)
    context = run.span.get_span_context()
    inputs: Any = MISSING
    if not is_stream_start_marker(run.inputs):
        inputs = recorded_value(conventions.io_attributes("input", run.inputs, capture=run.capture), "input")
    return RecordedRun(
        run_id=run.id_text,
        parent_run_id=None if run.parent is None else run.parent.id_text,
        name=run.name,
        run_type=run.run_type,
        tags=tuple(_tags(attributes)),
        metadata=_metadata(attributes),
        start_ns=start_ns,
        inputs=inputs,
        status=status,
        end_ns=end_ns,
        status_message=message,
        outputs=outputs,
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
    )


def facts_from_entry(entry: tuple[Any, ...], now_ns: int) -> tuple[list[RecordedRun], list[RecordedEvent]]:
    """What one bus entry adds to the record of its run (stream chunks: nothing)."""
    kind, run, a, b = entry
    if kind is bridge.START:
        return [_live_run(run, "running", now_ns, None, "", MISSING)], []
    if kind is bridge.FINISH:
        outputs = recorded_value(conventions.io_attributes("output", a, capture=run.capture), "output")
        return [_live_run(run, "ok", now_ns, now_ns, "", outputs)], []
    if kind is bridge.FAILED:
        message = f"{type(a).__name__}: {a}"
        return [_live_run(run, "error", now_ns, now_ns, message, MISSING)], []
    if kind is bridge.CUSTOM:
        name, data, _, _ = a
        attributes = conventions.custom_event_attributes(data, capture_content=run.capture)
        time_ns, key = (b[0], b[1]) if b is not None else (now_ns, (name, now_ns))
        recorded = _event_data(attributes)
        return [], [RecordedEvent(run.id_text, name, time_ns, key, recorded)]
    return [], []


def key_text(key: Any) -> str:
    """An event's key as id text: a sequence number, or a (name, timestamp) pair."""
    if isinstance(key, tuple) and len(key) == 2:
        name, time_ns = key
        return f"{time_ns}-{zlib.crc32(str(name).encode()):08x}"
    return str(key)


def entry_id(entry: tuple[Any, ...]) -> str | None:
    """The id a replay gives the event of a bus entry (None: no recorded event)."""
    kind, run, _, b = entry
    if kind is bridge.START:
        return f"{run.id_text}/start"
    if kind is bridge.FINISH:
        return f"{run.id_text}/end"
    if kind is bridge.CUSTOM and b is not None:
        return f"{run.id_text}/{key_text(b[1])}"
    return None
