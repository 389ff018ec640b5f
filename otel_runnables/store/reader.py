"""Reading the embedded store back as span records, from any process.

Each query opens its own read-only connection (WAL: it never blocks the
writer, and sees every committed batch). A missing file is an empty store.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from otel_runnables.progress.records import EventRecord, SpanRecord, SpanStatus
from otel_runnables.store.schema import connect_reader

__all__ = ["LocalStore"]

_SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, start_ns, end_ns, status, status_message, attributes, "
    "service_name"
)
_STATUSES: dict[str, SpanStatus] = {"unset": "unset", "ok": "ok", "error": "error"}


def _attributes(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class LocalStore:
    """Read access to one store file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection | None]:
        connection = connect_reader(self.path)
        try:
            yield connection
        finally:
            if connection is not None:
                connection.close()

    def _records(self, connection: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[SpanRecord]:
        rows = connection.execute(f"SELECT {_SPAN_COLUMNS} FROM spans WHERE {where}", args).fetchall()
        if not rows:
            return []
        events: dict[tuple[str, str], list[EventRecord]] = {}
        for trace_id in {row[0] for row in rows}:
            for span_trace, span_id, name, time_ns, attributes in connection.execute(
                "SELECT trace_id, span_id, name, time_ns, attributes FROM events WHERE trace_id = ? "
                "ORDER BY time_ns",
                (trace_id,),
            ):
                events.setdefault((span_trace, span_id), []).append(
                    EventRecord(name=name, time_ns=time_ns, attributes=_attributes(attributes))
                )
        return [
            SpanRecord(
                trace_id=row[0],
                span_id=row[1],
                parent_span_id=row[2],
                name=row[3],
                start_ns=row[4],
                end_ns=row[5],
                status=_STATUSES.get(row[6], "unset"),
                status_message=row[7],
                attributes=_attributes(row[8]),
                events=tuple(events.get((row[0], row[1]), ())),
                service_name=row[9],
            )
            for row in rows
        ]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every span of the trace, with its events in time order (empty if unknown)."""
        with self._connection() as connection:
            if connection is None:
                return []
            return self._records(connection, "trace_id = ? ORDER BY start_ns", (trace_id.lower(),))

    def trace_id_of_run(self, run_id: str) -> str | None:
        with self._connection() as connection:
            if connection is None:
                return None
            row = connection.execute(
                "SELECT trace_id FROM spans WHERE run_id = ? LIMIT 1", (run_id,)
            ).fetchone()
            return None if row is None else str(row[0])

    def recent_root_runs(self, last: int) -> list[SpanRecord]:
        """The spans of the ``last`` most recently started root runs, newest first."""
        with self._connection() as connection:
            if connection is None:
                return []
            return self._records(
                connection,
                "span_type = 'run' AND parent_run_id IS NULL ORDER BY start_ns DESC LIMIT ?",
                (max(0, last),),
            )

    def counts(self) -> tuple[int, int]:
        """(spans, events) in the store: for checks and benchmarks."""
        with self._connection() as connection:
            if connection is None:
                return 0, 0
            spans = connection.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
            events = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return int(spans), int(events)
