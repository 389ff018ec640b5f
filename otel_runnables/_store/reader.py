"""Reading the embedded store back as span records, from any process.

Each query opens its own read-only connection (WAL: it never blocks the
writer, and sees every committed batch). A missing file is an empty store; a
file that cannot serve as one raises ``StoreError`` naming it and why.

A span's latest row is the span (see ``schema.py``). A span without an end
whose writing process is gone — it stopped beating, or on this machine its
pid is gone or taken by another process — is returned with ``lost=True``;
the stored rows are never rewritten.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from otel_runnables._store.processes import ProcessIdentity, process_is_gone, this_process
from otel_runnables._store.schema import UnusableStoreError, connect_reader, no_fork
from otel_runnables.progress.records import EventRecord, SpanRecord, SpanStatus

__all__ = ["LOST", "LOST_AFTER_BEATS", "LocalStore", "lost_writers", "record_attributes", "span_record"]

LOST_AFTER_BEATS = 3  # a writer that missed this many heartbeats is gone
LOST = "the process running it is gone"

_SPAN_COLUMNS = (
    "id, trace_id, span_id, parent_span_id, name, start_ns, end_ns, status, status_message, attributes, "
    "service_name, writer_id, events_not_stored"
)
_MOST_RUNS = 2**31  # SQLite's LIMIT is a 64-bit integer; the reader doubles it as it looks further
_STATUSES: dict[str, SpanStatus] = {"unset": "unset", "ok": "ok", "error": "error"}
_Row = tuple[Any, ...]


def record_attributes(text: str) -> dict[str, Any]:
    """A stored ``attributes`` column (a JSON object) as a dict; ``{}`` for anything else."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def span_record(
    row: Sequence[Any], *, events: Sequence[EventRecord] = (), lost: bool = False, events_not_stored: int = 0
) -> SpanRecord:
    """The record of a span row whose first columns are ``spans``' from ``id`` to
    ``service_name``, in that order (as ``_SPAN_COLUMNS`` has them)."""
    return SpanRecord(
        trace_id=row[1],
        span_id=row[2],
        parent_span_id=row[3],
        name=row[4],
        start_ns=row[5],
        end_ns=row[6],
        status=_STATUSES.get(row[7], "unset"),
        status_message=row[8],
        attributes=record_attributes(row[9]),
        events=events,
        service_name=row[10],
        lost=lost,
        events_not_stored=events_not_stored,
    )


def _chunks(items: list[int], size: int = 400) -> Iterator[list[int]]:
    """Ids in lists short enough for one ``IN (...)`` (SQLite bounds a statement's parameters)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _latest(rows: Iterable[_Row]) -> list[_Row]:
    """The latest row of each span (rows in any order), in the order of first appearance."""
    latest: dict[tuple[str, str], _Row] = {}
    for row in rows:
        key = (row[1], row[2])
        known = latest.get(key)
        if known is None or row[0] > known[0]:
            latest[key] = row
    return list(latest.values())


def lost_writers(connection: sqlite3.Connection, writer_ids: set[int]) -> set[int]:
    """Of these ``writers`` rows, those whose process is gone: stopped, or
    silent for ``LOST_AFTER_BEATS`` heartbeats, or (on this machine) its pid
    gone or taken by another process; a row deleted by retention is long gone."""
    if not writer_ids:
        return set()
    marks = ",".join("?" * len(writer_ids))
    rows = connection.execute(
        "SELECT id, host, pid, process_start, last_beat_ns, beat_interval_ns, stopped_ns "
        f"FROM writers WHERE id IN ({marks})",
        tuple(writer_ids),
    ).fetchall()
    here, now = this_process(), time.time_ns()
    lost = writer_ids - {row[0] for row in rows}
    for writer_id, host, pid, start, last_beat, interval, stopped in rows:
        if stopped is not None:
            lost.add(writer_id)  # it shut down without ending them
            continue
        gone = process_is_gone(ProcessIdentity(host, pid, start), here)
        if gone is None:
            gone = now - last_beat > LOST_AFTER_BEATS * interval
        if gone:
            lost.add(writer_id)
    return lost


class LocalStore:
    """Read access to one store file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection | None]:
        with no_fork():
            connection = connect_reader(self.path)
            try:
                yield connection
            except sqlite3.Error as exc:
                raise UnusableStoreError(f"{self.path} cannot be read ({exc})") from exc
            finally:
                if connection is not None:
                    connection.close()

    def _records(
        self,
        connection: sqlite3.Connection,
        rows: list[_Row],
        first_rows: dict[tuple[str, str], int],
        *,
        events: bool = True,
    ) -> list[SpanRecord]:
        """Records of these span rows (each a span's latest); ``first_rows``: the
        id of each span's first row, which its events name."""
        if not rows:
            return []
        by_row: dict[int, list[EventRecord]] = {}
        if events:
            wanted = [first_rows[row[1], row[2]] for row in rows]
            for chunk in _chunks(wanted):
                for span_row, seq, name, time_ns, attributes in connection.execute(
                    "SELECT span_row, seq, name, time_ns, attributes FROM events "
                    f"WHERE span_row IN ({','.join('?' * len(chunk))}) ORDER BY span_row, seq",
                    chunk,
                ):
                    by_row.setdefault(span_row, []).append(
                        EventRecord(
                            name=name, time_ns=time_ns, attributes=record_attributes(attributes), seq=seq
                        )
                    )
        live_writers = {row[11] for row in rows if row[6] is None and row[11] is not None}
        lost = lost_writers(connection, live_writers)
        records = []
        for row in rows:
            first = first_rows[row[1], row[2]]
            span_events = by_row.get(first, [])
            not_stored = row[12]
            if row[6] is None:  # still going: the gaps in its events' numbering so far
                if events:
                    last_seq, kept = (span_events[-1].seq or 0) if span_events else 0, len(span_events)
                else:
                    last_seq, kept = connection.execute(
                        "SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM events WHERE span_row = ?", (first,)
                    ).fetchone()
                not_stored = max(0, last_seq - kept)
            records.append(
                span_record(
                    row,
                    events=tuple(span_events),  # in the order they happened
                    lost=row[6] is None and row[11] in lost,
                    events_not_stored=not_stored,
                )
            )
        return records

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every span of the trace, with its events in the order they happened (empty if unknown)."""
        with self._connection() as connection:
            if connection is None:
                return []
            rows = connection.execute(
                f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY id", (trace_id.lower(),)
            ).fetchall()
            first_rows: dict[tuple[str, str], int] = {}
            for row in rows:
                first_rows.setdefault((row[1], row[2]), row[0])
            spans = sorted(_latest(rows), key=lambda row: (row[5], row[0]))
            return self._records(connection, spans, first_rows)

    def trace_id_of_run(self, run_id: str) -> str | None:
        with self._connection() as connection:
            if connection is None:
                return None
            row = connection.execute(
                "SELECT trace_id FROM spans WHERE run_id = ? LIMIT 1", (run_id,)
            ).fetchone()
            return None if row is None else str(row[0])

    def recent_root_runs(self, last: int, *, events: bool = True) -> list[SpanRecord]:
        """The spans of the ``last`` most recently started root runs, newest first
        (with their own events unless ``events=False``)."""
        last = max(0, min(last, _MOST_RUNS))  # "all of them" may be asked as sys.maxsize
        with self._connection() as connection:
            if connection is None or last == 0:
                return []
            fetch = 2 * last
            while True:
                rows = connection.execute(
                    f"SELECT {_SPAN_COLUMNS} FROM spans WHERE span_type = 'run' AND parent_run_id IS NULL "
                    "ORDER BY start_ns DESC, id DESC LIMIT ?",
                    (fetch,),
                ).fetchall()
                spans = _latest(rows)
                if len(spans) >= last or len(rows) < fetch:
                    break
                fetch *= 2  # long runs have two rows each: look further
            spans = sorted(spans, key=lambda row: (row[5], row[0]), reverse=True)[:last]
            first_rows = {
                (row[1], row[2]): int(
                    connection.execute(
                        "SELECT MIN(id) FROM spans WHERE trace_id = ? AND span_id = ?", (row[1], row[2])
                    ).fetchone()[0]
                )
                for row in spans
            }
            return self._records(connection, spans, first_rows, events=events)

    def counts(self) -> tuple[int, int]:
        """(spans, events) in the store: for checks and benchmarks."""
        with self._connection() as connection:
            if connection is None:
                return 0, 0
            spans = connection.execute(
                "SELECT COUNT(*) FROM (SELECT DISTINCT trace_id, span_id FROM spans)"
            ).fetchone()[0]
            events = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return int(spans), int(events)
