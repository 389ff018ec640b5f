"""The embedded store: live rows, exact counts, several writers, bounded growth."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _liveness as liveness
from otel_runnables._store import (
    LocalStore,
    LocalStoreSpanProcessor,
    RetentionPolicy,
    StoreVersionError,
    default_store_path,
    schema,
)
from otel_runnables._store import processor as processor_module
from otel_runnables._store.retention import apply_retention
from otel_runnables._store.rows import START, Batch
from otel_runnables._store.schema import UnusableStoreError, connect_writer
from otel_runnables.progress.backend import TraceNotFoundError
from otel_runnables.progress.local import LocalBackend
from tests.conftest import StoreAt
from tests.follow_helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    return tmp_path / "traces.sqlite3"


@pytest.fixture
def stored(store_file: Path, use_provider: Callable[[Any], None]) -> Iterator[LocalStoreSpanProcessor]:
    """The library's spans go to a provider whose only processor is a store."""
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(store_file)
    provider.add_span_processor(processor)
    use_provider(provider)
    yield processor
    processor.shutdown()


def test_a_live_run_and_its_events_are_visible_before_it_ends(
    stored: LocalStoreSpanProcessor, store_file: Path
) -> None:
    reader = LocalStore(store_file)
    seen: list[Any] = []

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 2, "message": "half"})
        wait_until(lambda: bool(reader.recent_root_runs(1)) and bool(reader.recent_root_runs(1)[0].events))
        seen.extend(reader.recent_root_runs(1))
        dispatch_custom_event("progress", {"step": 2, "total": 2})
        return x

    RunnableLambda(work).with_config(tags=["etl"]).invoke(1)
    (live,) = seen
    assert live.name == "work" and live.end_ns is None and live.status == "unset"
    assert [e.attributes["otel_runnables.event.data.step"] for e in live.events] == [1]

    assert stored.force_flush()
    (done,) = reader.recent_root_runs(5)
    assert done.end_ns is not None and done.status == "unset"
    assert done.attributes["tag.tags"] == ["etl"]
    assert "output.value" in done.attributes
    # the live copy and the ended span's copy of the first event are one row
    assert [e.attributes["otel_runnables.event.data.step"] for e in done.events] == [1, 2]
    assert reader.counts() == (1, 2)
    assert [run.name for run in reader.recent_root_runs(sys.maxsize)] == ["work"]  # "all of them"


def test_mirror_spans_and_span_events_are_stored_once(
    stored: LocalStoreSpanProcessor, store_file: Path
) -> None:
    before = liveness.liveness_delay()
    liveness.configure_liveness(True, 0)
    try:
        RunnableLambda(lambda x: dispatch_custom_event("e", {"n": 1}) or x).invoke(1)
    finally:
        liveness.configure_liveness(before is not None, before)
    assert stored.force_flush()
    # pending and mirror spans are not rows of their own
    assert LocalStore(store_file).counts() == (1, 1)


def test_errors_children_and_foreign_parents(stored: LocalStoreSpanProcessor, store_file: Path) -> None:
    def broken(x: int) -> int:
        raise ValueError("no good")

    child = RunnableLambda(broken)

    def parent(x: int) -> int:
        with contextlib.suppress(ValueError):
            child.invoke(x)
        return x

    tracer = trace.get_tracer("web")
    provider = TracerProvider()
    provider.add_span_processor(stored)
    with provider.get_tracer("web").start_as_current_span("GET /jobs"):
        RunnableLambda(parent).invoke(1)
    del tracer
    assert stored.force_flush()
    reader = LocalStore(store_file)
    (root,) = reader.recent_root_runs(5)
    records = {record.name: record for record in reader.trace(root.trace_id)}
    assert set(records) == {"GET /jobs", "parent", "broken"}
    assert records["parent"].parent_span_id == records["GET /jobs"].span_id
    assert records["broken"].parent_span_id == records["parent"].span_id
    assert records["broken"].status == "error"
    assert "ValueError" in records["broken"].status_message
    assert reader.trace_id_of_run(records["broken"].attributes["otel_runnables.run.id"]) == root.trace_id


def test_threads_all_counted(stored: LocalStoreSpanProcessor, store_file: Path) -> None:
    def work(x: int) -> int:
        for step in range(3):
            dispatch_custom_event("progress", {"step": step})
        return x

    runnable = RunnableLambda(work)
    threads = [threading.Thread(target=lambda: [runnable.invoke(i) for i in range(100)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stored.force_flush()
    assert stored.dropped == 0
    assert LocalStore(store_file).counts() == (800, 2400)


WRITER = """
    import sys
    from opentelemetry.sdk.trace import TracerProvider
    from otel_runnables import RunnableLambda, dispatch_custom_event, _telemetry as telemetry
    from otel_runnables._store import LocalStoreSpanProcessor
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(sys.argv[1])
    provider.add_span_processor(processor)
    telemetry.set_tracer_provider(provider)
    def work(x):
        dispatch_custom_event("progress", {"step": x})
        return x
    for i in range(int(sys.argv[2])):
        RunnableLambda(work).invoke(i)
    processor.shutdown()
    print("dropped", processor.dropped, "lost", processor.lost)
"""


def test_several_processes_write_one_file(store_file: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(store_file), "300"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        assert "dropped 0 lost 0" in out, err
    assert LocalStore(store_file).counts() == (600, 600)


def test_a_blocked_writer_never_blocks_the_caller_and_drops_are_exact(
    store_file: Path, use_provider: Callable[[Any], None], caplog: pytest.LogCaptureFixture
) -> None:
    connect_writer(store_file).close()
    blocker = sqlite3.connect(store_file, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the store's writer waits on its busy timeout
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(store_file, max_queue_size=250)
    provider.add_span_processor(processor)
    use_provider(provider)
    runnable = RunnableLambda(lambda x: x)
    try:
        with caplog.at_level(logging.WARNING, logger="otel_runnables"):
            for i in range(1_000):
                runnable.invoke(i)
            # the writer is still waiting on the lock: every call returned without waiting for it
            assert processor.lost == 0
        # 2,000 items (a start and an end per run): starts past the queue's bound are dropped
        assert processor.accepted == 2_000
        assert 0 < processor.dropped <= 1_000
        assert len([r for r in caplog.records if "queue is full" in r.getMessage()]) == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert processor.force_flush() is False  # runs' starts were dropped: the flush says so
    assert processor.force_flush() is True  # nothing dropped since
    processor.shutdown()
    assert processor.lost == 0
    assert processor.written == processor.accepted - processor.dropped
    # no end was dropped: every run is in the store, ended
    ended = [r for r in LocalStore(store_file).recent_root_runs(2_000) if r.end_ns is not None]
    assert len(ended) == 1_000


def test_shutdown_marks_runs_that_never_ended(store_file: Path) -> None:
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(store_file)
    provider.add_span_processor(processor)
    span = provider.get_tracer("t").start_span("forever")
    processor.shutdown()
    (record,) = LocalStore(store_file).trace(f"{span.get_span_context().trace_id:032x}")
    assert record.end_ns is not None
    assert record.status == "error"
    assert record.status_message == "process exited before the run ended"
    span.end()  # after shutdown: ignored, never an error


_SPAN = (
    "INSERT INTO spans (trace_id, span_id, name, span_type, run_id, start_ns, end_ns, status, attributes) "
    "VALUES (?,?,?,?,?,?,?,?,?)"
)


def test_retention_deletes_old_and_oversized_traces(store_file: Path) -> None:
    connection = connect_writer(store_file)
    now = time.time_ns()
    rows = [
        (f"{i:032x}", f"{i:016x}", "r", "run", str(i), now - i * 3_600 * 10**9, now, "ok", "{}")
        for i in range(48)
    ]
    mixed = "f" * 32  # a trace whose first span is two days old and whose newest is not: it stays
    rows += [(mixed, "f" * 16, "r", "run", "m1", now - 48 * 3_600 * 10**9, now, "ok", "{}")]
    rows += [(mixed, "e" * 16, "r", "run", "m2", now - 10**9, now, "ok", "{}")]
    connection.executemany(_SPAN, rows)
    deleted = apply_retention(connection, RetentionPolicy(max_age=24 * 3600, max_bytes=10**9), now_ns=now)
    assert deleted == 48 - 25  # hours 0..24 stay
    assert connection.execute("SELECT COUNT(*) FROM spans WHERE trace_id = ?", (mixed,)).fetchone() == (2,)
    connection.execute("DELETE FROM spans WHERE trace_id = ?", (mixed,))
    big = "x" * 50_000
    connection.executemany(
        _SPAN,
        [(f"{i:032x}", "aa", "r", "run", None, now + i, now, "ok", big) for i in range(100, 140)],
    )
    apply_retention(connection, RetentionPolicy(max_age=10**9, max_bytes=500_000), now_ns=now)
    (kept,) = connection.execute("SELECT COUNT(*) FROM spans").fetchone()
    assert 0 < kept < 10
    # the newest stay
    (oldest_kept,) = connection.execute("SELECT MIN(start_ns) FROM spans").fetchone()
    assert oldest_kept > now + 100
    connection.close()


def test_retention_settings(setenv: Callable[[str, str], None]) -> None:
    setenv("OTEL_RUNNABLES_STORE_MAX_AGE", "1h")
    setenv("OTEL_RUNNABLES_STORE_MAX_BYTES", "5MB")
    assert RetentionPolicy.from_settings() == RetentionPolicy(max_age=3600, max_bytes=5_000_000)
    setenv("OTEL_RUNNABLES_STORE_MAX_AGE", "soon")
    assert RetentionPolicy.from_settings() == RetentionPolicy(max_bytes=5_000_000)


def test_a_newer_schema_is_refused_clearly(store_file: Path) -> None:
    connect_writer(store_file).close()
    with sqlite3.connect(store_file) as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreVersionError, match="schema 99"):
        connect_writer(store_file)
    with pytest.raises(StoreVersionError, match="schema 99"):
        LocalStore(store_file).trace("0" * 32)


def test_reading_a_missing_store_finds_nothing_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "traces.sqlite3"
    reader = LocalStore(path)
    assert reader.trace("0" * 32) == [] and reader.recent_root_runs(10) == []
    assert reader.trace_id_of_run("x") is None
    with pytest.raises(TraceNotFoundError, match="no trace"):
        LocalBackend(path).trace("0" * 32)
    assert not path.parent.exists()


def test_default_store_location(setenv: Callable[[str, str], None], tmp_path: Path) -> None:
    setenv("OTEL_RUNNABLES_STORE", "")
    setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "otel_runnables" / "traces.sqlite3"
    setenv("XDG_DATA_HOME", "")
    assert default_store_path() == Path.home() / ".local" / "share" / "otel_runnables" / "traces.sqlite3"
    for off in ("none", "off", "FALSE", "0"):
        setenv("OTEL_RUNNABLES_STORE", off)
        assert default_store_path() is None
    setenv("OTEL_RUNNABLES_STORE", str(tmp_path / "x.db"))
    assert default_store_path() == tmp_path / "x.db"


def test_a_store_another_process_is_creating_is_waited_for(
    store_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two processes creating one file: SQLite may answer "database is locked" at
    # once, without the busy timeout (test_several_processes_write_one_file met it)
    from otel_runnables._store import schema

    real_open = schema._open_writer
    attempts: list[float] = []

    def locked_twice(path: Path) -> sqlite3.Connection:
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real_open(path)

    monkeypatch.setattr(schema, "_open_writer", locked_twice)
    connection = connect_writer(store_file)
    assert len(attempts) == 3 and attempts[-1] > attempts[0]
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()

    def broken(path: Path) -> sqlite3.Connection:
        attempts.append(time.monotonic())
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(schema, "_open_writer", broken)
    attempts.clear()
    with pytest.raises(UnusableStoreError, match="unable to open"):
        connect_writer(store_file)
    assert len(attempts) == 1  # not a lock: no retry


def _operational_error(path: Path, sql: str) -> sqlite3.OperationalError:
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            connection.execute(sql)
        return caught.value
    finally:
        connection.close()


def test_only_a_held_lock_counts_as_busy(store_file: Path) -> None:
    from otel_runnables._store import schema

    holder = sqlite3.connect(store_file, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert schema._is_busy(_operational_error(store_file, "INSERT INTO t VALUES (1)"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not schema._is_busy(_operational_error(store_file, "SELECT * FROM nothing"))
    # a message that merely mentions a lock: only SQLite's result code (Python 3.11+) tells
    mentions_lock = _operational_error(store_file, "SELECT * FROM locked")
    assert "locked" in str(mentions_lock)
    assert schema._is_busy(mentions_lock) is (not hasattr(mentions_lock, "sqlite_errorcode"))


def test_a_store_that_cannot_be_opened_counts_what_it_lost(
    tmp_path: Path, use_provider: Callable[[Any], None], caplog: pytest.LogCaptureFixture
) -> None:
    unopenable = tmp_path / "a-directory"
    unopenable.mkdir()
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(unopenable)
    provider.add_span_processor(store)
    use_provider(provider)

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": x})
        return x

    with caplog.at_level(logging.ERROR):
        assert RunnableLambda(work).invoke(7) == 7
        store.shutdown()
    assert store.accepted == 3 and store.lost == 3 and store.dropped == 0
    (line,) = [record.getMessage() for record in caplog.records if "cannot be used" in record.getMessage()]
    assert f"{unopenable} is a directory" in line


def test_a_writer_held_up_past_shutdown_still_adds_up(
    store_file: Path, store_at: StoreAt, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown waits so long for the writer; what it did not write by then is counted lost
    in the summary (a batch the writer is still on included), never missing from it."""
    monkeypatch.setattr(processor_module, "_SHUTDOWN_TIMEOUT", 0.2)
    store = store_at(store_file, flush_interval=0.001)
    RunnableLambda(lambda x: x).invoke(1)  # the writer connects and writes this one
    assert store.force_flush()

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": x})
        return x

    with schema.no_fork():  # held: the writer cannot start its next transaction
        RunnableLambda(lambda x: x).invoke(0)  # its batch: the writer stops on it
        time.sleep(0.05)
        with caplog.at_level(logging.INFO):
            RunnableLambda(work).invoke(7)  # queued behind it
            store.shutdown()
    (line,) = [record.getMessage() for record in caplog.records if "accepted =" in record.getMessage()]
    counts = store.counts()
    assert counts.accepted == 2 + 5 and counts.written == 2 and counts.dropped == 0
    assert f"{counts.accepted} accepted = 2 written + 0 dropped" in line
    assert "+ 5 lost" in line
    wait_until(lambda: store.counts().queued == 0)  # the held-up batch is written once it can be
    after = store.counts()
    assert after.accepted == after.written + after.dropped + after.lost == 7


def test_a_queued_run_does_not_keep_its_span_alive(
    store_file: Path, use_provider: Callable[[Any], None]
) -> None:
    """A span waits in the queue as the values its rows need: the span itself
    (and all it holds) dies with its run, on the caller's thread, as it does
    without the store; the run is stored whole all the same."""
    ended: list[weakref.ref[ReadableSpan]] = []

    class Watcher(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            ended.append(weakref.ref(span))

    connect_writer(store_file).close()
    blocker = sqlite3.connect(store_file, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the store's writer waits: the run stays queued
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(store_file)
    provider.add_span_processor(processor)
    provider.add_span_processor(Watcher())
    use_provider(provider)
    try:
        RunnableLambda(lambda x: dispatch_custom_event("step", {"n": 1}) or x).invoke(1)
        assert processor.counts().queued == 3  # its start, its event, its end
        (span,) = ended
        assert span() is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert processor.force_flush()
    (run,) = LocalStore(store_file).recent_root_runs(5)
    assert run.end_ns is not None and run.status == "unset"
    assert run.attributes["output.value"] == "1"
    assert [e.attributes["otel_runnables.event.data.n"] for e in run.events] == [1]
    processor.shutdown()


def test_a_run_that_ends_after_its_start_was_taken_is_written_running_from_its_end(
    store_file: Path,
) -> None:
    """The writer takes a batch with a run's start; the run ends before that
    batch's rows are made. Its running row is made from what its end kept."""
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(store_file, flush_interval=3600)  # the queue waits to gather
    provider.add_span_processor(processor)
    span = provider.get_tracer("t").start_span("job", attributes={"a": 1})
    (start,) = [item for item in processor._queue if item[0] == START]
    span.set_attribute("b", 2)
    span.end()
    rows = Batch(1, None, lambda resource: None)
    rows.add([start])
    (row,) = rows.spans
    assert row[4] == "job"
    assert row[10] is None  # end_ns: running
    assert json.loads(row[13]) == {"a": 1, "b": 2}
    processor.shutdown()
