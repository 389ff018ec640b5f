"""store.tail: reading the embedded store incrementally. After the history,
each poll reads only the rows past its cursors: rows never come twice, a poll
with nothing new returns nothing, and the rows a poll returns are exactly
those the writer added since the previous one."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _conventions as conventions
from otel_runnables._runs import new_run_id
from otel_runnables._store import LocalStoreSpanProcessor
from otel_runnables._store.tail import StoreTail
from otel_runnables.progress.records import EventRecord, SpanRecord
from tests.conftest import StoreAt

STEPS = 4


@pytest.fixture
def store(store_at: StoreAt, tmp_path: Path) -> LocalStoreSpanProcessor:
    return store_at(tmp_path / "traces.sqlite3", flush_interval=0.01)


class SteppedJob:
    """A job in a thread that does one step (a ``progress`` event, then a child
    run with a ``row`` event) each time the test lets it."""

    def __init__(self) -> None:
        self.go = [threading.Event() for _ in range(STEPS)]
        self.done = [threading.Event() for _ in range(STEPS)]
        self.finish = threading.Event()
        self.run_id = new_run_id()
        self.trace_id: str | None = None
        self.started = threading.Event()

        def child(step: int) -> int:
            dispatch_custom_event("row", {"step": step})
            return step

        def job(steps: int) -> int:
            from opentelemetry import trace

            self.trace_id = f"{trace.get_current_span().get_span_context().trace_id:032x}"
            self.started.set()
            for step in range(steps):
                assert self.go[step].wait(30)
                dispatch_custom_event("progress", {"step": step})
                RunnableLambda(child, name="child").invoke(step)
                self.done[step].set()
            assert self.finish.wait(30)
            return steps

        self.thread = threading.Thread(
            target=RunnableLambda(job, name="job").invoke, args=(STEPS, {"run_id": self.run_id})
        )
        self.thread.start()


def poll(tail: StoreTail, trace_id: str) -> tuple[list[SpanRecord], list[tuple[str, str, EventRecord]]]:
    with tail.snapshot() as connection:
        return tail.new_spans(connection, [trace_id]), tail.new_events(connection, [trace_id])


def rows_between(path: Path, table: str, trace_id: str, after: int, upto: int) -> int:
    """How many rows of the trace the writer added with rowids in (after, upto]."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        query = f"SELECT COUNT(*) FROM {table} WHERE trace_id = ? AND rowid > ? AND rowid <= ?"
        return int(connection.execute(query, (trace_id, after, upto)).fetchone()[0])
    finally:
        connection.close()


def step_of(event: EventRecord) -> Any:
    return json.loads(str(event.attributes[conventions.EVENT_DATA]))["step"]


def test_after_the_history_each_poll_reads_only_the_new_rows(store: LocalStoreSpanProcessor) -> None:
    job = SteppedJob()
    try:
        assert job.started.wait(30)
        store.force_flush()
        trace_id = job.trace_id
        assert trace_id is not None
        tail = StoreTail(store.path)
        assert tail.open()
        with tail.snapshot() as connection:
            history_spans, history_events = tail.trace(connection, trace_id)
        assert [span.name for span in history_spans] == ["job"] and history_events == []
        (root,) = history_spans
        assert tail.changed()  # the first look: nothing to compare with yet
        assert poll(tail, trace_id) == ([], [])  # what the history held is not news
        seen_events = {(span_id, event.seq) for _, span_id, event in history_events}
        seen_spans = {span.span_id for span in history_spans}
        for step in range(STEPS):
            cursors = tail.span_cursor, tail.event_cursor
            job.go[step].set()
            assert job.done[step].wait(30)
            store.force_flush()
            assert tail.changed()
            spans, events = poll(tail, trace_id)
            # the step's child run and its two events, and nothing read before
            assert [span.name for span in spans] == ["child"]
            assert [(event.name, step_of(event)) for _, _, event in events] == [
                ("progress", step),
                ("row", step),
            ]
            keys = {(span_id, event.seq) for _, span_id, event in events}
            assert not keys & seen_events and not {span.span_id for span in spans} & seen_spans
            seen_events |= keys
            seen_spans |= {span.span_id for span in spans}
            # exactly the rows the writer added past the cursors
            assert len(spans) == rows_between(store.path, "spans", trace_id, cursors[0], tail.span_cursor)
            assert len(events) == rows_between(store.path, "events", trace_id, cursors[1], tail.event_cursor)
            assert tail.span_cursor > cursors[0] and tail.event_cursor > cursors[1]
            # nothing new since: no commit seen, and a poll returns no rows
            assert not tail.changed()
            assert poll(tail, trace_id) == ([], [])
        cursors = tail.span_cursor, tail.event_cursor
        job.finish.set()
        job.thread.join(30)
        store.force_flush()
        spans, events = poll(tail, trace_id)
        # the root's end: a row of its own, past the cursor (the history read its start row)
        assert [(span.span_id, span.end_ns is not None) for span in spans] == [(root.span_id, True)]
        assert events == [] and tail.event_cursor == cursors[1]
        assert poll(tail, trace_id) == ([], [])
        with tail.snapshot() as connection:
            (ended,) = tail.ended_spans(connection, trace_id, [root.span_id])
            all_spans, all_events = tail.trace(connection, trace_id)
        assert ended.span_id == root.span_id and ended.end_ns is not None
        # every row was read once: by the history or by exactly one poll
        assert {(span_id, event.seq) for _, span_id, event in all_events} == seen_events
        assert len(all_events) == len(seen_events) == 2 * STEPS
        assert {span.span_id for span in all_spans} == seen_spans
        tail.close()
    finally:
        for gate in [*job.go, job.finish]:
            gate.set()
        job.thread.join(30)


def test_a_poll_reads_only_the_followed_traces(store: LocalStoreSpanProcessor) -> None:
    job = SteppedJob()
    try:
        assert job.started.wait(30)
        store.force_flush()
        assert job.trace_id is not None
        tail = StoreTail(store.path)
        assert tail.open()
        RunnableLambda(lambda x: dispatch_custom_event("other", {"x": x}), name="other").invoke(1)
        job.go[0].set()
        assert job.done[0].wait(30)
        store.force_flush()
        spans, events = poll(tail, job.trace_id)
        assert {span.name for span in spans} == {"child"}  # the other trace's run is not read
        assert {event.name for _, _, event in events} == {"progress", "row"}
        assert poll(tail, "0" * 31 + "1") == ([], [])  # the cursors moved past the other trace's rows too
        tail.close()
    finally:
        for gate in [*job.go, job.finish]:
            gate.set()
        job.thread.join(30)
