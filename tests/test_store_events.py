"""Every custom event of a run reaches the store, numbered, whatever the SDK's
span limits and the clock's resolution; past the per-run bound the latest of
each name is kept and every reader shows how many were not."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanLimits

from otel_runnables import RunnableLambda, dispatch_custom_event, progress
from otel_runnables import _runs as runs
from otel_runnables._cli import main as cli
from otel_runnables._store import LocalStore, LocalStoreSpanProcessor
from otel_runnables._store.schema import APPLICATION_ID, SCHEMA_VERSION, connect_writer
from tests.conftest import StoreAt


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    return tmp_path / "traces.sqlite3"


@pytest.fixture
def use_store(store_file: Path, store_at: StoreAt) -> Callable[..., LocalStoreSpanProcessor]:
    """``use_store(**options)``: the library's spans go to a store with these options."""

    def make(**options: Any) -> LocalStoreSpanProcessor:
        return store_at(store_file, SpanLimits(max_events=128), **options)  # the SDK's default cap

    return make


def emitting(count: int, names: tuple[str, ...] = ("progress",)) -> RunnableLambda[int, int]:
    def work(x: int) -> int:
        for step in range(1, count + 1):
            dispatch_custom_event(names[step % len(names)], {"step": step, "total": count})
        return x

    return RunnableLambda(work).with_config(run_name="emitting")  # type: ignore[return-value]


def only_root(store_file: Path) -> progress.RunNode:
    (summary,) = progress.runs(5, backend=progress.make_backend("local", path=str(store_file)))
    (node,) = progress.get(summary.run_id, backend=progress.make_backend("local", path=str(store_file))).roots
    return node


def test_a_thousand_events_all_stored_in_order_past_the_sdk_cap(
    use_store: Callable[..., LocalStoreSpanProcessor], store_file: Path
) -> None:
    store = use_store()
    emitting(1_000).invoke(1)
    assert store.force_flush()
    (record,) = LocalStore(store_file).recent_root_runs(1)
    assert len(record.events) == 1_000  # the span itself kept 128
    assert [event.seq for event in record.events] == list(range(1, 1_001))
    assert [event.attributes["otel_runnables.event.data.step"] for event in record.events] == list(
        range(1, 1_001)
    )
    node = only_root(store_file)
    assert len(node.events) == 1_000 and node.events_not_stored == 0
    assert node.progress is not None and node.progress.percent == 100.0


def test_events_at_one_instant_never_merge(
    use_store: Callable[..., LocalStoreSpanProcessor], store_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = use_store()
    monkeypatch.setattr(runs.time, "time_ns", lambda: 1_700_000_000_000_000_000)  # a clock that never moves
    emitting(100).invoke(1)
    monkeypatch.undo()
    assert store.force_flush()
    node = only_root(store_file)
    assert [event.data["step"] for event in node.events] == list(range(1, 101))
    assert (
        len(progress.events(node.run_id, backend=progress.make_backend("local", path=str(store_file)))) == 100
    )


def test_past_the_bound_the_latest_of_each_name_stays_and_the_rest_is_counted(
    use_store: Callable[..., LocalStoreSpanProcessor], store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = use_store(max_events_per_run=50)
    emitting(1_000, names=("progress", "log")).invoke(1)
    # each event past the bound was written, in place of the previous one of its name: the
    # flush and the counters have nothing missing to report, the run counts what it lost
    assert store.force_flush()
    counts = store.counts()
    assert (counts.accepted, counts.written, counts.dropped, counts.lost) == (1_002, 1_002, 0, 0)
    node = only_root(store_file)
    steps = [event.data["step"] for event in node.events]
    assert steps == [*range(1, 51), 999, 1_000]  # the first 50, then the latest "log" and "progress"
    assert node.events_not_stored == 1_000 - 52
    assert node.status == "ok" and node.progress is not None and node.progress.percent == 100.0
    # every reader says so
    path = str(store_file)
    assert cli(["progress", node.run_id, "--store", path]) == 0
    assert "… 948 more events not stored" in capsys.readouterr().out
    assert cli(["progress", node.run_id, "--store", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["events_not_stored"] == 948
    assert cli(["runs", "--store", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["events_not_stored"] == 948
    assert cli(["runs", "--store", path]) == 0
    assert "… 948 more events not stored" in capsys.readouterr().out
    assert cli(["events", node.run_id, "--store", path]) == 0
    assert "… 948 more events not stored" in capsys.readouterr().out
    assert cli(["events", node.run_id, "--store", path, "--json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 52 and "… 948 more events not stored" in captured.err


def test_a_live_run_past_the_bound_shows_the_count_so_far(
    use_store: Callable[..., LocalStoreSpanProcessor], store_file: Path
) -> None:
    store = use_store(max_events_per_run=10)
    seen: list[progress.RunNode] = []

    def work(x: int) -> int:
        for step in range(1, 31):
            dispatch_custom_event("progress", {"step": step, "total": 60})
        store.force_flush()
        seen.append(only_root(store_file))
        return x

    RunnableLambda(work).invoke(1)
    (live,) = seen
    assert live.status == "running"
    assert live.events_not_stored == 30 - 11
    assert live.progress is not None and live.progress.done == 30  # the latest, past the bound


def test_the_bound_is_a_setting(setenv: Callable[[str, str], None], store_file: Path) -> None:
    def bound() -> int:
        processor = LocalStoreSpanProcessor(store_file)
        processor.shutdown()
        return processor.max_events_per_run

    setenv("OTEL_RUNNABLES_STORE_MAX_EVENTS_PER_RUN", "25")
    assert bound() == 25
    setenv("OTEL_RUNNABLES_STORE_MAX_EVENTS_PER_RUN", "none")  # not a count: one log line, the default
    assert bound() == 10_000
    with pytest.raises(ValueError, match="max_events_per_run"):
        LocalStoreSpanProcessor(store_file, max_events_per_run=0)


@pytest.mark.load
def test_a_hundred_thousand_events_in_one_run(
    use_store: Callable[..., LocalStoreSpanProcessor], store_file: Path
) -> None:
    store = use_store()
    emitting(100_000).invoke(1)
    store.force_flush(600_000)
    counts = store.counts()
    assert counts.accepted == counts.written + counts.dropped + counts.lost and counts.lost == 0
    node = only_root(store_file)
    assert node.status == "ok"  # its end was stored: never "running, 25 %" forever
    assert len(node.events) == 10_001 and node.events_not_stored == 89_999
    assert node.progress is not None and node.progress.percent == 100.0


def test_a_queue_that_fills_drops_starts_and_events_never_ends(
    store_file: Path, use_store: Callable[..., LocalStoreSpanProcessor], caplog: pytest.LogCaptureFixture
) -> None:
    connect_writer(store_file).close()
    blocker = sqlite3.connect(store_file, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer waits: every item meanwhile queues
    store = use_store(max_queue_size=200)  # ends: room for 400 more, then 1,000 wait for room
    job = emitting(3)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: [job.invoke(i) for _ in range(100)], range(8)))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with caplog.at_level(logging.INFO, logger="otel_runnables"):
        store.shutdown()
    counts = store.counts()
    assert counts.accepted == 800 * (2 + 3)  # a start, 3 events and an end per run
    assert counts.accepted == counts.written + counts.dropped + counts.lost and counts.lost == 0
    assert counts.dropped > 0
    (summary,) = [record.getMessage() for record in caplog.records if "accepted" in record.getMessage()]
    assert f"{counts.accepted} accepted = {counts.written} written + {counts.dropped} dropped" in summary
    # every run ended in the store, each counting the events it lost
    roots = LocalStore(store_file).recent_root_runs(1_000)
    assert len(roots) == 800 and all(root.end_ns is not None and root.status == "unset" for root in roots)
    not_stored = sum(root.events_not_stored for root in roots)
    assert sum(len(root.events) for root in roots) + not_stored == 800 * 3
    assert not_stored <= counts.dropped  # the rest of the drops were run starts


def test_past_the_waiting_ends_an_end_is_dropped_counted_logged_and_its_run_lost(
    store_file: Path, use_store: Callable[..., LocalStoreSpanProcessor], caplog: pytest.LogCaptureFixture
) -> None:
    """A writer stalled for good: ends fill the queue (2 x its size), then the list
    they wait in (5 x), then are dropped; each drop counted, the first logged, and
    a run whose end was dropped shows as lost once the writer stops."""
    connect_writer(store_file).close()
    blocker = sqlite3.connect(store_file, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer waits (with at most one batch taken): items queue
    store = use_store(max_queue_size=10)  # ends: 20 in the queue, 50 waiting, then dropped
    quick = RunnableLambda(lambda x: x).with_config(run_name="quick")
    runs = 300

    def long_job(x: int) -> int:  # its start is queued first; its end comes last, past every bound
        for index in range(runs):
            quick.invoke(index)
        return x

    try:
        with caplog.at_level(logging.WARNING, logger="otel_runnables"):
            RunnableLambda(long_job).with_config(run_name="long").invoke(1)
            warnings = [record.getMessage() for record in caplog.records]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert sum("dropping run ends too" in message for message in warnings) == 1
    store.shutdown()
    counts = store.counts()
    assert counts.accepted == 2 * (runs + 1) and counts.lost == 0
    assert counts.accepted == counts.written + counts.dropped
    # starts alone are at most runs + 1 drops: past that, ends were dropped and counted
    assert counts.dropped > runs + 1
    (long_run,) = [record for record in LocalStore(store_file).recent_root_runs(10) if record.name == "long"]
    assert long_run.end_ns is None and long_run.lost


def test_past_the_bound_with_the_queue_full_the_run_ends_with_its_latest_events(
    store_file: Path, use_store: Callable[..., LocalStoreSpanProcessor]
) -> None:
    connect_writer(store_file).close()
    blocker = sqlite3.connect(store_file, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer waits: the queue fills and stays full
    store = use_store(max_queue_size=50, max_events_per_run=20)
    try:
        emitting(500, names=("progress", "log")).invoke(1)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.shutdown()
    counts = store.counts()
    assert counts.accepted == 2 + 500 and counts.lost == 0
    assert counts.accepted == counts.written + counts.dropped
    node = only_root(store_file)
    assert node.status != "running"
    # the first 20, then the latest of each name, whatever the queue could hold meanwhile
    assert [event.data["step"] for event in node.events[-2:]] == [499, 500]  # type: ignore[index]
    assert len(node.events) + node.events_not_stored == 500
    assert node.progress is not None and node.progress.percent == 100.0


# -- the file ----------------------------------------------------------------------------------


V1_SCHEMA = """
CREATE TABLE spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL,
    span_type TEXT, run_id TEXT, parent_run_id TEXT, run_type TEXT, start_ns INTEGER NOT NULL, end_ns INTEGER,
    status TEXT NOT NULL DEFAULT 'unset', status_message TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL DEFAULT '{}', service_name TEXT, pid INTEGER, PRIMARY KEY (trace_id, span_id));
CREATE INDEX spans_by_run ON spans (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX root_runs_by_start ON spans (start_ns) WHERE span_type = 'run' AND parent_run_id IS NULL;
CREATE TABLE events (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, name TEXT NOT NULL,
    time_ns INTEGER NOT NULL, attributes TEXT NOT NULL DEFAULT '{}',
    UNIQUE (trace_id, span_id, time_ns, name));
PRAGMA user_version = 1;
"""


def test_a_store_of_the_first_version_is_upgraded_with_its_runs(store_file: Path) -> None:
    old = sqlite3.connect(store_file)
    old.executescript(V1_SCHEMA)
    run_id = "0190a1b2-0000-7000-8000-000000000001"
    attributes = json.dumps({"otel_runnables.span_type": "run", "otel_runnables.run.id": run_id})
    old.execute(
        "INSERT INTO spans VALUES (?,?,NULL,'old job','run',?,NULL,'chain',1,2,'ok','',?,NULL,4242)",
        ("a" * 32, "b" * 16, run_id, attributes),
    )
    data = json.dumps({"otel_runnables.event.kind": "custom", "otel_runnables.event.data": '{"step": 1}'})
    old.executemany(
        "INSERT INTO events VALUES (?,?,'progress',?,?)", [("a" * 32, "b" * 16, t, data) for t in (5, 7)]
    )
    old.commit()
    old.close()
    connect_writer(store_file).close()
    check = sqlite3.connect(store_file)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert check.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    check.close()
    (node,) = progress.get(run_id, backend=progress.make_backend("local", path=str(store_file))).roots
    assert (node.name, node.status, [event.time_ns for event in node.events]) == ("old job", "ok", [5, 7])
    (record,) = LocalStore(store_file).trace("a" * 32)
    assert [event.seq for event in record.events] == [1, 2]


V2_SCHEMA = """
CREATE TABLE writers (id INTEGER PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, process_start TEXT,
    started_ns INTEGER NOT NULL, last_beat_ns INTEGER NOT NULL, beat_interval_ns INTEGER NOT NULL,
    stopped_ns INTEGER);
CREATE TABLE spans (id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    parent_span_id TEXT, name TEXT NOT NULL, span_type TEXT, run_id TEXT, parent_run_id TEXT, run_type TEXT,
    start_ns INTEGER NOT NULL, end_ns INTEGER, status TEXT NOT NULL DEFAULT 'unset',
    status_message TEXT NOT NULL DEFAULT '', attributes TEXT NOT NULL DEFAULT '{}', service_name TEXT,
    writer_id INTEGER, events_not_stored INTEGER NOT NULL DEFAULT 0);
CREATE INDEX spans_by_trace ON spans (trace_id, span_id);
CREATE INDEX spans_by_run ON spans (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX root_runs_by_start ON spans (start_ns) WHERE span_type = 'run' AND parent_run_id IS NULL;
CREATE TABLE events (id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    seq INTEGER NOT NULL, name TEXT NOT NULL, time_ns INTEGER NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}');
CREATE INDEX events_by_span ON events (trace_id, span_id, seq);
PRAGMA application_id = 1867674990;
PRAGMA user_version = 2;
"""


def test_a_store_of_the_second_version_is_upgraded_with_its_runs_and_events(store_file: Path) -> None:
    """Version 3 keys events by their span's first row: the events written before
    find their span, a live span's first row and its end row alike."""
    old = sqlite3.connect(store_file)
    old.executescript(V2_SCHEMA)
    run_id = "0190a1b2-0000-7000-8000-000000000002"
    attributes = json.dumps({"otel_runnables.span_type": "run", "otel_runnables.run.id": run_id})
    span = ("c" * 32, "d" * 16, run_id, attributes)
    old.execute(  # the span's live row, then its end row
        "INSERT INTO spans (trace_id, span_id, name, span_type, run_id, start_ns, attributes) "
        "VALUES (?,?,'old job','run',?,1,?)",
        span,
    )
    old.execute(
        "INSERT INTO spans (trace_id, span_id, name, span_type, run_id, start_ns, end_ns, status, "
        "attributes, events_not_stored) VALUES (?,?,'old job','run',?,1,9,'ok',?,4)",
        span,
    )
    data = json.dumps({"otel_runnables.event.kind": "custom", "otel_runnables.event.data": '{"step": 1}'})
    old.executemany(
        "INSERT INTO events (trace_id, span_id, seq, name, time_ns, attributes) "
        "VALUES (?,?,?,'progress',?,?)",
        [("c" * 32, "d" * 16, seq, 10 * seq, data) for seq in (1, 2, 7)],
    )
    old.commit()
    old.close()
    assert APPLICATION_ID == 1867674990
    connect_writer(store_file).close()
    check = sqlite3.connect(store_file)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert check.execute("SELECT DISTINCT span_row FROM events").fetchall() == [(1,)]
    check.close()
    (record,) = LocalStore(store_file).trace("c" * 32)
    assert (record.status, record.events_not_stored) == ("ok", 4)
    assert [(event.seq, event.time_ns) for event in record.events] == [(1, 10), (2, 20), (7, 70)]
    (node,) = progress.get(run_id, backend=progress.make_backend("local", path=str(store_file))).roots
    assert [event.time_ns for event in node.events] == [10, 20, 70]
