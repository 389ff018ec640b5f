"""Retention on a store at its size limit while runs are written: small steps
between batches (bounded in rows and in time), whole traces, runs still going
kept, the file back within its limit, the counts adding up."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables._store import LocalStore, LocalStoreSpanProcessor, RetentionPolicy
from otel_runnables._store.retention import _STATEMENT_ROWS, Retention, used_bytes
from tests.conftest import StoreAt
from tests.follow_helpers import wait_until

LIMIT = 1_500_000
STEP_ROWS = 300
EVENTS = 3


def work(x: int) -> int:
    for step in range(1, EVENTS + 1):
        dispatch_custom_event("progress", {"step": step, "total": EVENTS, "note": "x" * 200})
    return x


RUNNABLE = RunnableLambda(work).with_config(run_name="short")


def live_bytes(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return used_bytes(connection)
    finally:
        connection.close()


# the default time budget, and none: every step cut short after its first statements
@pytest.fixture(params=[RetentionPolicy.step_seconds, 0.0], ids=["default-step-time", "no-step-time"])
def store(tmp_path: Path, store_at: StoreAt, request: pytest.FixtureRequest) -> LocalStoreSpanProcessor:
    return store_at(
        tmp_path / "traces.sqlite3",
        retention=RetentionPolicy(max_bytes=LIMIT, step_rows=STEP_ROWS, step_seconds=request.param),
        max_queue_size=1_000_000,  # nothing dropped however slow the machine: drops are tested elsewhere
    )


def write_spans(path: Path, count: int) -> None:
    """``count`` spans of about 1 kB each (a 500-character event), written to a store
    at ``path`` that retention leaves alone (a limit of 1 GB)."""
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(path, retention=RetentionPolicy(max_bytes=10**9))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span(f"span-{index}") as span:
            span.add_event("note", {"text": "y" * 500})
    processor.shutdown()


def test_a_store_at_its_limit_keeps_writing_and_deletes_in_small_steps(
    store: LocalStoreSpanProcessor,
) -> None:
    # a run that goes on the whole time, its events written from the start
    release, started = threading.Event(), threading.Event()

    def long_job(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 2})
        started.set()
        release.wait()
        dispatch_custom_event("progress", {"step": 2, "total": 2})
        return x

    going = threading.Thread(target=RunnableLambda(long_job).with_config(run_name="long").invoke, args=(1,))
    going.start()
    started.wait()
    made = 0
    while store.retention_largest_step == 0:  # until the store reaches its limit
        assert made < 100_000, "the store never reached its limit"
        for _ in range(200):
            RUNNABLE.invoke(made)
            made += 1
        assert store.force_flush()
    for _ in range(3):  # three times as much again, in bursts of several batches
        for _ in range(made):
            RUNNABLE.invoke(made)
        assert store.force_flush()
    # the oldest trace of all, kept while its run is going
    (long_run,) = [root for root in LocalStore(store.path).recent_root_runs(100_000) if root.name == "long"]
    assert long_run.end_ns is None and len(long_run.events) == 1
    release.set()
    going.join()
    assert store.force_flush()

    # small steps: each at most what the batch before it wrote, twice over (or the step's rows)
    assert 0 < store.retention_largest_step <= max(STEP_ROWS, 2 * 5_000)  # a batch: 5,000 items at most
    # a step cut short is followed by more before the next batch: the file gets back within its limit
    wait_until(lambda: live_bytes(store.path) <= LIMIT)
    counts = store.counts()
    assert counts.accepted == counts.written + counts.dropped + counts.lost
    assert (counts.dropped, counts.lost, counts.queued) == (0, 0, 0)
    reader = LocalStore(store.path)
    kept = [root for root in reader.recent_root_runs(100_000) if root.name == "short"]
    # the newest runs are there, whole; the oldest are gone
    assert 0 < len(kept) < 4 * made
    newest = sorted(kept, key=lambda record: record.start_ns)[-200:]
    assert all(len(record.events) == EVENTS and record.end_ns is not None for record in newest)
    # whole traces: no event row without its span's row
    connection = sqlite3.connect(store.path)
    (orphans,) = connection.execute(
        "SELECT COUNT(*) FROM events WHERE span_row NOT IN (SELECT id FROM spans)"
    ).fetchone()
    connection.close()
    assert orphans == 0


def test_a_step_deletes_at_most_its_budget_and_stops_under_the_limit(tmp_path: Path) -> None:
    """Against a file written once: a step never deletes more rows than its budget,
    and deletes no more traces than bring the file under its limit."""
    path = tmp_path / "traces.sqlite3"
    write_spans(path, 2_000)
    total = sum(LocalStore(path).counts())
    connection = sqlite3.connect(path, isolation_level=None)
    full = used_bytes(connection)
    retention = Retention(RetentionPolicy(max_bytes=full - 100_000, step_rows=STEP_ROWS))
    first = retention.step(connection)
    assert 0 < first <= STEP_ROWS
    while retention.step(connection):
        pass
    assert used_bytes(connection) <= full - 100_000
    left = connection.execute(
        "SELECT (SELECT COUNT(*) FROM spans) + (SELECT COUNT(*) FROM events)"
    ).fetchone()[0]
    connection.close()
    # about 100 kB of 2,000 spans of ~1 kB: a few hundred rows went, not all
    assert total - left < total // 2


def test_a_step_stops_once_its_time_is_spent_and_the_next_goes_on(tmp_path: Path) -> None:
    """No time at all: a step runs its first statements only (each at most
    ``_STATEMENT_ROWS`` rows) and says it is behind; the steps after it bring
    the file within its limit. With time to spare, one step does it all."""
    path = tmp_path / "traces.sqlite3"
    write_spans(path, 3_000)
    copy = tmp_path / "copy.sqlite3"
    source = sqlite3.connect(path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()

    connection = sqlite3.connect(path, isolation_level=None)
    limit = used_bytes(connection) // 2  # about half the traces must go, well within a step's rows
    hurried = Retention(RetentionPolicy(max_bytes=limit, step_rows=10**6, step_seconds=0.0))
    first = hurried.step(connection)
    assert 0 < first < 2 * _STATEMENT_ROWS and hurried.behind
    steps = 1
    while hurried.behind:
        assert hurried.step(connection) > 0
        steps += 1
    assert steps > 1 and used_bytes(connection) <= limit
    connection.close()

    connection = sqlite3.connect(copy, isolation_level=None)
    unhurried = Retention(RetentionPolicy(max_bytes=limit, step_rows=10**6, step_seconds=3_600.0))
    assert unhurried.step(connection) > first and not unhurried.behind
    assert used_bytes(connection) <= limit
    connection.close()
