"""Reading the embedded store incrementally: only rows newer than a cursor.

``StoreTail`` keeps one read-only connection and, per table, the highest
rowid it has read: a poll asks SQLite whether anything was committed since
(``PRAGMA data_version``, no table read), then reads the span rows and event
rows past the cursors, and the end rows of spans it saw open (a long span's
end is a row of its own, after its running row, with the same ids). Nothing
else is read again. All reads of one poll see one snapshot of the file.

A file removed or replaced while it is tailed is reported (``StoreGoneError``),
never taken for a store with no news.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from otel_runnables._store.reader import lost_writers, record_attributes, span_record
from otel_runnables._store.schema import connect_reader, no_fork
from otel_runnables.progress.backend import BackendUnavailableError
from otel_runnables.progress.records import EventRecord, SpanRecord

__all__ = ["StoreGoneError", "StoreTail"]

_SPAN_COLUMNS = (
    "rowid, trace_id, span_id, parent_span_id, name, start_ns, end_ns, status, status_message, "
    "attributes, service_name"
)
_EVENT_COLUMNS = "rowid, trace_id, span_id, name, time_ns, attributes, seq"
_CHUNK = 400  # ids per IN (...) list, under SQLite's bound on parameters


class StoreGoneError(BackendUnavailableError):
    """The store file being read was removed or replaced by another file."""


def _event(row: Sequence[Any]) -> EventRecord:
    # seq tells two events of a run apart (the bus carries the same number), not name and time
    return EventRecord(name=row[3], time_ns=row[4], attributes=record_attributes(row[5]), seq=row[6])


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _rows_since(
    connection: sqlite3.Connection, table: str, columns: str, cursor: int, trace_ids: Sequence[str]
) -> tuple[list[Any], int]:
    """The rows of ``table`` (spans or events) past ``cursor``, of these traces, in
    the order they were written; and the cursor past them."""
    last = int(connection.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").fetchone()[0])
    rows: list[Any] = []
    if last > cursor and trace_ids:
        for chunk in _chunks(sorted(trace_ids)):
            rows += connection.execute(
                f"SELECT {columns} FROM {table} WHERE rowid > ? AND rowid <= ? "
                f"AND trace_id IN ({_marks(len(chunk))}) ORDER BY rowid",
                (cursor, last, *chunk),
            ).fetchall()
    return rows, max(cursor, last)


class StoreTail:
    """Incremental reads of one store file, for the traces a caller follows."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._data_version: int | None = None
        self.span_cursor = 0
        self.event_cursor = 0

    # -- the connection -----------------------------------------------------------

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return status.st_dev, status.st_ino

    def open(self) -> bool:
        """Connect (once); False while there is no store file yet."""
        if self._connection is not None:
            return True
        identity = self._file_identity()
        if identity is None:
            return False
        connection = connect_reader(self.path)
        if connection is None:
            return False
        connection.isolation_level = None  # transactions are ours: one snapshot per poll
        self._connection, self._identity = connection, identity
        with no_fork():  # every use of a connection (see schema.no_fork)
            spans, events = connection.execute(
                "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM spans), "
                "(SELECT COALESCE(MAX(rowid), 0) FROM events)"
            ).fetchone()
        self.span_cursor, self.event_cursor = int(spans), int(events)
        return True

    def close(self) -> None:
        if self._connection is not None:
            with no_fork(), contextlib.suppress(sqlite3.Error):
                self._connection.close()
        self._connection = None

    def check_file(self) -> None:
        """Raise ``StoreGoneError`` when the file tailed is not at its path any more."""
        if self._identity is None:
            return
        now = self._file_identity()
        if now != self._identity:
            what = "removed" if now is None else "replaced by another file"
            raise StoreGoneError(f"the store {self.path} was {what} while it was being read")

    def changed(self) -> bool:
        """Whether anything was committed since the last call (cheap: no table read)."""
        assert self._connection is not None
        with no_fork():
            version = int(self._connection.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._data_version
        self._data_version = version
        return changed

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every read inside sees the same commits."""
        connection = self._connection
        assert connection is not None
        with no_fork():
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("COMMIT")

    # -- reads (inside a snapshot) -------------------------------------------------

    def new_spans(self, connection: sqlite3.Connection, trace_ids: Sequence[str]) -> list[SpanRecord]:
        """Span rows added since the cursor, of these traces; moves the cursor."""
        rows, self.span_cursor = _rows_since(connection, "spans", _SPAN_COLUMNS, self.span_cursor, trace_ids)
        return [span_record(row) for row in rows]

    def ended_spans(
        self, connection: sqlite3.Connection, trace_id: str, span_ids: Iterable[str]
    ) -> list[SpanRecord]:
        """Of these spans (seen open), those whose row now has an end."""
        found: list[SpanRecord] = []
        for chunk in _chunks(sorted(span_ids)):
            rows = connection.execute(
                f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = ? AND end_ns IS NOT NULL "
                f"AND span_id IN ({_marks(len(chunk))})",
                (trace_id, *chunk),
            ).fetchall()
            found += [span_record(row) for row in rows]
        return found

    def lost_spans(
        self, connection: sqlite3.Connection, trace_id: str, span_ids: Iterable[str]
    ) -> list[SpanRecord]:
        """Of these spans (seen open), those still open whose writing process is gone (``lost``)."""
        latest: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(sorted(span_ids)):
            for row in connection.execute(
                f"SELECT {_SPAN_COLUMNS}, writer_id FROM spans WHERE trace_id = ? "
                f"AND span_id IN ({_marks(len(chunk))}) ORDER BY rowid",
                (trace_id, *chunk),
            ):
                latest[row[2]] = row
        open_rows = [row for row in latest.values() if row[6] is None and row[-1] is not None]
        gone = lost_writers(connection, {row[-1] for row in open_rows})
        return [span_record(row, lost=True) for row in open_rows if row[-1] in gone]

    def new_events(
        self, connection: sqlite3.Connection, trace_ids: Sequence[str]
    ) -> list[tuple[str, str, EventRecord]]:
        """(trace id, span id, event) rows added since the cursor; moves the cursor."""
        rows, self.event_cursor = _rows_since(
            connection, "events", _EVENT_COLUMNS, self.event_cursor, trace_ids
        )
        return [(row[1], row[2], _event(row)) for row in rows]

    def trace(
        self, connection: sqlite3.Connection, trace_id: str
    ) -> tuple[list[SpanRecord], list[tuple[str, str, EventRecord]]]:
        """Every span row and event row of a trace, as of this snapshot."""
        spans = [
            span_record(row)
            for row in connection.execute(
                f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,)
            )
        ]
        events = [
            (row[1], row[2], _event(row))
            for row in connection.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE span_row IN "
                "(SELECT id FROM spans WHERE trace_id = ?) ORDER BY time_ns, rowid",
                (trace_id,),
            )
        ]
        return spans, events

    def trace_of_run(self, connection: sqlite3.Connection, run_id: str) -> str | None:
        row = connection.execute("SELECT trace_id FROM spans WHERE run_id = ? LIMIT 1", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    def has_trace(self, connection: sqlite3.Connection, trace_id: str) -> bool:
        return (
            connection.execute("SELECT 1 FROM spans WHERE trace_id = ? LIMIT 1", (trace_id,)).fetchone()
            is not None
        )
