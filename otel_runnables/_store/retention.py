"""How long the embedded store keeps traces, and how big it may grow.

``OTEL_RUNNABLES_STORE_MAX_AGE`` (a duration, default ``7d``) and
``OTEL_RUNNABLES_STORE_MAX_BYTES`` (a size, default ``200MB``). Whole traces
go: those whose newest span started before the age limit, then, while the
file holds more live data than the size limit, the oldest (by their first
row), skipping traces with runs still going while there are others to
delete. The file keeps its freed pages for reuse rather than shrinking.

Deletion never stalls the writer: ``Retention.step`` runs between write
batches, in one short transaction, and deletes at most
``max(step_rows, 2 * the rows the batch before it wrote)`` rows — enough to
keep up with the writer, so the limits hold within one step — stopping as
soon as the file is back within its size limit. Traces go a few per
statement (one statement each would make thousands of statements), and the
candidates are read as one row of text: each row read, like each statement,
lets go of the GIL, and getting it back from a busy application thread can
take a switch interval (5 ms).
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from otel_runnables import _settings
from otel_runnables._store.schema import no_fork, write_transaction

__all__ = ["Retention", "RetentionPolicy", "apply_retention", "used_bytes"]

_AGE_CANDIDATE_ROWS = 256  # the oldest span rows whose traces are looked at for their age, per look
_CHUNK = 100  # traces per statement
_LIVE_BEATS = 3  # a writer that missed this many heartbeats no longer keeps its traces


@dataclass(frozen=True)
class RetentionPolicy:
    max_age: float = _settings.STORE_MAX_AGE.default
    max_bytes: int = _settings.STORE_MAX_BYTES.default
    interval: float = 60.0  # seconds between looks for traces past max_age
    step_rows: int = 2_000  # rows one step deletes, at least (more after a big batch)

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        """``OTEL_RUNNABLES_STORE_MAX_AGE`` / ``_MAX_BYTES`` as last read."""
        return cls(max_age=_settings.STORE_MAX_AGE.value, max_bytes=_settings.STORE_MAX_BYTES.value)


def used_bytes(connection: sqlite3.Connection) -> int:
    """Bytes of live data: the file's pages less the free ones."""
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _oldest_traces(connection: sqlite3.Connection, rows: int) -> list[str]:
    """The traces of the ``rows`` oldest span rows, oldest first.

    One row of text, not a row per trace: reading each row lets go of the GIL
    and waits to get it back from the application's threads."""
    (found,) = connection.execute(
        "SELECT group_concat(first || ' ' || trace_id, ',') FROM (SELECT trace_id, MIN(id) AS first "
        "FROM (SELECT id, trace_id FROM spans ORDER BY id LIMIT ?) GROUP BY trace_id)",
        (rows,),
    ).fetchone()
    if not found:
        return []
    pairs = (item.split(" ") for item in found.split(","))
    return [trace_id for _, trace_id in sorted((int(first), trace_id) for first, trace_id in pairs)]


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _live_traces(connection: sqlite3.Connection, trace_ids: list[str], beating_since_ns: int) -> set[str]:
    """Those of the traces with a span not ended yet, by a writer that still beats."""
    live: set[str] = set()
    for start in range(0, len(trace_ids), _CHUNK):
        chunk = trace_ids[start : start + _CHUNK]
        live.update(
            row[0]
            for row in connection.execute(
                "SELECT DISTINCT s.trace_id FROM spans AS s JOIN writers AS w ON w.id = s.writer_id "
                f"WHERE s.trace_id IN ({_marks(len(chunk))}) AND s.end_ns IS NULL "
                "AND w.stopped_ns IS NULL AND w.last_beat_ns >= ? "
                "AND NOT EXISTS (SELECT 1 FROM spans AS e WHERE e.trace_id = s.trace_id "
                "AND e.span_id = s.span_id AND e.end_ns IS NOT NULL)",
                (*chunk, beating_since_ns),
            )
        )
    return live


def _newest_start(connection: sqlite3.Connection, trace_id: str) -> int:
    newest = connection.execute("SELECT MAX(start_ns) FROM spans WHERE trace_id = ?", (trace_id,)).fetchone()[
        0
    ]
    return 0 if newest is None else int(newest)


class Retention:
    """Keeps one store within its policy, a small step at a time."""

    def __init__(self, policy: RetentionPolicy, *, beat_interval: float = 2.0) -> None:
        self.policy = policy
        self.beat_interval = beat_interval
        self.deleted_rows = 0
        self.largest_step = 0  # rows deleted by the largest step so far
        self._expired: deque[str] = deque()  # traces past the age limit, still to delete
        self._next_age_look = 0.0

    def step(
        self,
        connection: sqlite3.Connection,
        *,
        written_rows: int = 0,
        now_ns: int | None = None,
        keep_trying: Callable[[], bool] = lambda: True,
    ) -> int:
        """Delete what is due, at most ``max(step_rows, 2 * written_rows)`` rows; the rows deleted."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        if time.monotonic() >= self._next_age_look:
            self._next_age_look = time.monotonic() + self.policy.interval
            self._look_for_expired(connection, now_ns, keep_trying)
        budget = max(self.policy.step_rows, 2 * written_rows)
        with no_fork():  # every use of a connection, reads too (see schema.no_fork)
            over = not self._expired and used_bytes(connection) > self.policy.max_bytes
        if not self._expired and not over:
            return 0
        deleted = 0
        with write_transaction(connection, keep_trying=keep_trying):
            while self._expired and deleted < budget:
                chunk = [self._expired[index] for index in range(min(_CHUNK, len(self._expired)))]
                done, deleted = self._delete(connection, chunk, budget, deleted)
                for _ in range(done):
                    self._expired.popleft()
                if not self._expired:
                    self._next_age_look = 0.0  # more may be waiting past the first candidates
                if done < len(chunk):
                    break
            if over and deleted < budget:
                victims = self._oldest_deletable(connection, now_ns, budget - deleted)
                start, size = 0, 1
                while start < len(victims) and deleted < budget:
                    # a few traces, then more while the file is still over: big traces are not
                    # deleted past the limit, small ones are not deleted one statement each
                    _, deleted = self._delete(connection, victims[start : start + size], budget, deleted)
                    start, size = start + size, min(2 * size, _CHUNK)
                    if used_bytes(connection) <= self.policy.max_bytes:
                        break
        self.deleted_rows += deleted
        self.largest_step = max(self.largest_step, deleted)
        return deleted

    def _look_for_expired(
        self, connection: sqlite3.Connection, now_ns: int, keep_trying: Callable[[], bool]
    ) -> None:
        cutoff = now_ns - int(self.policy.max_age * 1e9)
        known = set(self._expired)
        with no_fork():
            for trace_id in _oldest_traces(connection, _AGE_CANDIDATE_ROWS):
                if trace_id not in known and _newest_start(connection, trace_id) < cutoff:
                    self._expired.append(trace_id)
                    known.add(trace_id)
        with write_transaction(connection, keep_trying=keep_trying):
            connection.execute("DELETE FROM writers WHERE last_beat_ns < ?", (cutoff,))

    def _oldest_deletable(self, connection: sqlite3.Connection, now_ns: int, rows: int) -> list[str]:
        """The oldest traces, about ``rows`` rows' worth (each span has a row or two,
        and events), those with runs going left out while there are others."""
        candidates = _oldest_traces(connection, max(rows, 1))
        live = _live_traces(connection, candidates, now_ns - int(_LIVE_BEATS * self.beat_interval * 1e9))
        deletable = [trace_id for trace_id in candidates if trace_id not in live]
        return deletable or candidates[:1]  # every one still going: the size limit holds all the same

    @staticmethod
    def _delete(
        connection: sqlite3.Connection, trace_ids: list[str], budget: int, deleted: int
    ) -> tuple[int, int]:
        """Rows of these traces while ``deleted`` is under ``budget``: their events
        first (found through their span rows, which go last, so that a trace cut
        half-way is found again). (How many of the traces are gone, ``deleted``.)"""
        marks = _marks(len(trace_ids))
        events = connection.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE span_row IN "
            f"(SELECT id FROM spans WHERE trace_id IN ({marks})) LIMIT ?)",
            (*trace_ids, budget - deleted),
        ).rowcount
        deleted += events
        if deleted >= budget:
            return 0, deleted
        spans = connection.execute(
            f"DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE trace_id IN ({marks}) LIMIT ?)",
            (*trace_ids, budget - deleted),
        ).rowcount
        deleted += spans
        if deleted >= budget:  # perhaps cut half-way: found again by its span rows left
            return 0, deleted
        return len(trace_ids), deleted


def apply_retention(
    connection: sqlite3.Connection, policy: RetentionPolicy, now_ns: int | None = None
) -> int:
    """Bring a store within ``policy`` now, step after step; the rows deleted."""
    retention = Retention(policy)
    deleted = 0
    while True:
        step = retention.step(connection, now_ns=now_ns)
        if step == 0:
            return deleted
        deleted += step
