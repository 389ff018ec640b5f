"""Test your own instrumented code: capture the runs, spans and custom events
of a block, in memory, without touching your exporters.

    from otel_runnables.testing import capture_runs

    def test_ingest_reports_progress():
        with capture_runs() as captured:
            ingest("data.csv", limit=2)
        run = captured.run("ingest")
        assert run.run_type == "tool" and run.inputs == {"path": "data.csv", "limit": 2}
        assert [e.data["step"] for e in run.events] == [1, 2]
        assert captured.tree() == "ingest\\n  read_chunks"
        assert not captured.live_runs

Inside the block the library's spans go to an in-memory provider that
samples everything; your TracerProvider, processors and exporters see none
of them, and are back in place when the block ends. The switch is
process-wide: runs started by other threads during the block are captured
too. Runs are read back from their spans, exactly as a backend sees them.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import StatusCode

from otel_runnables import _conventions as conventions
from otel_runnables import _telemetry as telemetry
from otel_runnables._version import __version__

__all__ = ["CapturedEvent", "CapturedRun", "CapturedRuns", "capture_runs"]

_NOT_RECORDED: Any = None


@dataclass(frozen=True, eq=False)
class CapturedEvent:
    """A custom event as its run's span recorded it."""

    name: str
    data: Any
    """The dispatched data, read back from JSON (None when content capture is off)."""
    run: CapturedRun
    timestamp: int
    """Nanoseconds since the epoch."""
    attributes: Mapping[str, Any]


@dataclass(eq=False)
class CapturedRun:
    """One finished run, read back from its span."""

    span: ReadableSpan
    name: str
    id: uuid.UUID
    parent_id: uuid.UUID | None
    run_type: str
    tags: list[str]
    metadata: dict[str, Any]
    inputs: Any
    """Read back from ``input.value`` (JSON when it was JSON), else None."""
    outputs: Any
    error: str | None
    """``"ExceptionType: message"`` when the run failed."""
    stream_chunks: int
    events: list[CapturedEvent] = field(default_factory=list)
    parent: CapturedRun | None = None
    children: list[CapturedRun] = field(default_factory=list)

    @property
    def attributes(self) -> Mapping[str, Any]:
        return self.span.attributes or {}

    def __repr__(self) -> str:
        return f"CapturedRun(name={self.name!r}, run_type={self.run_type!r}, id={self.id})"


class _Recorder(SpanProcessor):
    """Keeps finished spans, and the spans started but not ended yet."""

    def __init__(self) -> None:
        self.finished: list[ReadableSpan] = []
        self.live: dict[int, Span] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        with self._lock:
            self.live[_span_id(span)] = span

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.live.pop(_span_id(span), None)  # a snapshot: not the object on_start saw
            self.finished.append(span)


class CapturedRuns:
    """What a `capture_runs` block recorded; read it during or after the block."""

    def __init__(self) -> None:
        self._recorder = _Recorder()
        self.provider = TracerProvider(sampler=ALWAYS_ON)
        self.provider.add_span_processor(self._recorder)
        self._read: tuple[int, list[CapturedRun]] = (0, [])

    @property
    def spans(self) -> list[ReadableSpan]:
        """Every finished span of the library, in the order they ended."""
        return list(self._recorder.finished)

    @property
    def runs(self) -> list[CapturedRun]:
        """Every finished run, in the order they started, linked to parents and children."""
        spans = self.spans
        if self._read[0] == len(spans):  # read once: the same objects on every access
            return list(self._read[1])
        run_spans = [s for s in spans if _attr(s, conventions.SPAN_TYPE) == conventions.SPAN_TYPE_RUN]
        runs = [_read_run(s) for s in sorted(run_spans, key=lambda s: s.start_time or 0)]
        by_id = {run.id: run for run in runs}
        for run in runs:
            parent = by_id.get(run.parent_id) if run.parent_id is not None else None
            if parent is not None:
                run.parent = parent
                parent.children.append(run)
        self._read = (len(spans), runs)
        return list(runs)

    @property
    def roots(self) -> list[CapturedRun]:
        """Runs whose parent was not captured (usually: the top-level calls)."""
        return [run for run in self.runs if run.parent is None]

    @property
    def events(self) -> list[CapturedEvent]:
        """Every custom event of the finished runs, in time order."""
        return sorted((event for run in self.runs for event in run.events), key=lambda e: e.timestamp)

    @property
    def live_runs(self) -> list[str]:
        """Names of runs started in the block and not ended (yet): after the
        work is done, anything here is a leak."""
        with self._recorder._lock:
            live = list(self._recorder.live.values())
        return [s.name for s in live if _attr(s, conventions.SPAN_TYPE) == conventions.SPAN_TYPE_RUN]

    def runs_named(self, name: str) -> list[CapturedRun]:
        return [run for run in self.runs if run.name == name]

    def run(self, name: str) -> CapturedRun:
        """The one run named ``name``; fails the test if there is none or several."""
        found = self.runs_named(name)
        if len(found) != 1:
            names = sorted({run.name for run in self.runs})
            raise AssertionError(f"expected one run named {name!r}, found {len(found)}; runs: {names}")
        return found[0]

    def tree(self) -> str:
        """The run tree as an outline, children indented by two spaces, in start order."""
        lines: list[str] = []

        def walk(run: CapturedRun, depth: int) -> None:
            lines.append("  " * depth + run.name)
            for child in run.children:
                walk(child, depth + 1)

        for root in self.roots:
            walk(root, 0)
        return "\n".join(lines)

    def clear(self) -> None:
        with self._recorder._lock:
            self._recorder.finished.clear()
        self._read = (0, [])


@contextmanager
def capture_runs() -> Iterator[CapturedRuns]:
    """Capture the library's runs, spans and custom events within the block."""
    captured = CapturedRuns()
    previous = telemetry.swap_tracer(
        captured.provider.get_tracer(telemetry.INSTRUMENTATION_NAME, __version__)
    )
    try:
        yield captured
    finally:
        # back to exactly the tracer pinned before (or none: the zero-config rules)
        telemetry.swap_tracer(previous)


# -- reading a run back from its span -------------------------------------------------


def _span_id(span: ReadableSpan) -> int:
    context = span.context
    return 0 if context is None else context.span_id


def _attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def _decoded(span: ReadableSpan, direction: str) -> Any:
    text = _attr(span, f"{direction}.value")
    if text is None:
        return _NOT_RECORDED
    if _attr(span, f"{direction}.mime_type") == "application/json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _read_run(span: ReadableSpan) -> CapturedRun:
    parent_id = _attr(span, conventions.RUN_PARENT_ID)
    metadata_text = _attr(span, conventions.METADATA)
    error = None
    if span.status.status_code is StatusCode.ERROR:
        error = span.status.description or "error"
    run = CapturedRun(
        span=span,
        name=span.name,
        id=uuid.UUID(_attr(span, conventions.RUN_ID)),
        parent_id=uuid.UUID(parent_id) if parent_id else None,
        run_type=_attr(span, conventions.RUN_TYPE) or "chain",
        tags=list(_attr(span, conventions.TAG_TAGS) or ()),
        metadata=json.loads(metadata_text) if metadata_text else {},
        inputs=_decoded(span, "input"),
        outputs=_decoded(span, "output"),
        error=error,
        stream_chunks=_attr(span, conventions.RUN_STREAM_CHUNKS) or 0,
    )
    for event in span.events:
        attributes = event.attributes or {}
        if attributes.get(conventions.EVENT_KIND) != conventions.EVENT_KIND_CUSTOM:
            continue
        data = attributes.get(conventions.EVENT_DATA)
        decoded = json.loads(data) if isinstance(data, str) else None
        run.events.append(CapturedEvent(event.name, decoded, run, event.timestamp or 0, attributes))
    return run
