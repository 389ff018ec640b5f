"""How long the embedded store keeps traces, and how big it may grow.

``OTEL_RUNNABLES_STORE_MAX_AGE`` (a duration, default ``7d``) and
``OTEL_RUNNABLES_STORE_MAX_BYTES`` (a size, default ``200MB``). Whole traces
go: those whose newest span started before the age limit, then, while the
file holds more live data than the size limit, the oldest (by their first
row), skipping traces with runs still going while there are others to
delete. The file keeps its freed pages for reuse rather than shrinking.

Deletion never stalls the writer: ``Retention.step`` deletes at most a few
thousand rows (and at least twice what the last batch wrote, so the limits
hold within one step) in one short transaction, between write batches.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from otel_runnables import _settings
from otel_runnables.store.schema import no_fork, write_transaction

__all__ = ["Retention", "RetentionPolicy", "apply_retention", "used_bytes"]

_CANDIDATE_ROWS = 256  # the oldest rows whose traces are looked at, per look
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


def _oldest_traces(connection: sqlite3.Connection, table: str) -> list[str]:
    rows = connection.execute(f"SELECT trace_id FROM {table} ORDER BY id LIMIT {_CANDIDATE_ROWS}")
    return list(dict.fromkeys(row[0] for row in rows))


def _has_live_runs(connection: sqlite3.Connection, trace_id: str, beating_since_ns: int) -> bool:
    """A span of the trace not ended yet, by a writer that still beats."""
    row = connection.execute(
        "SELECT 1 FROM spans AS s JOIN writers AS w ON w.id = s.writer_id "
        "WHERE s.trace_id = ? AND s.end_ns IS NULL AND w.stopped_ns IS NULL AND w.last_beat_ns >= ? "
        "AND NOT EXISTS (SELECT 1 FROM spans AS e WHERE e.trace_id = s.trace_id "
        "AND e.span_id = s.span_id AND e.end_ns IS NOT NULL) LIMIT 1",
        (trace_id, beating_since_ns),
    ).fetchone()
    return row is not None


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
        victims: list[str] = []
        expiring = bool(self._expired)
        if expiring:
            victims = list(self._expired)
        else:
            with no_fork():  # every use of a connection, reads too (see schema.no_fork)
                if used_bytes(connection) > self.policy.max_bytes:
                    victims = self._oldest_deletable(connection, now_ns)
        if not victims:
            return 0
        deleted = 0
        with write_transaction(connection, keep_trying=keep_trying):
            for trace_id in victims:
                left = budget - deleted
                deleted += self._delete_part(connection, trace_id, left)
                if deleted >= budget:
                    break
                if self._expired and self._expired[0] == trace_id:
                    self._expired.popleft()
        self.deleted_rows += deleted
        self.largest_step = max(self.largest_step, deleted)
        if expiring and not self._expired:
            self._next_age_look = 0.0  # more may be waiting past the first candidates
        return deleted

    def _look_for_expired(
        self, connection: sqlite3.Connection, now_ns: int, keep_trying: Callable[[], bool]
    ) -> None:
        cutoff = now_ns - int(self.policy.max_age * 1e9)
        known = set(self._expired)
        with no_fork():
            for trace_id in _oldest_traces(connection, "spans"):
                if trace_id not in known and _newest_start(connection, trace_id) < cutoff:
                    self._expired.append(trace_id)
                    known.add(trace_id)
        with write_transaction(connection, keep_trying=keep_trying):
            connection.execute("DELETE FROM writers WHERE last_beat_ns < ?", (cutoff,))

    def _oldest_deletable(self, connection: sqlite3.Connection, now_ns: int) -> list[str]:
        candidates = _oldest_traces(connection, "spans")
        beating_since = now_ns - int(_LIVE_BEATS * self.beat_interval * 1e9)
        for trace_id in candidates:
            if not _has_live_runs(connection, trace_id, beating_since):
                return [trace_id]
        return candidates[:1]  # every one still going: the size limit holds all the same

    @staticmethod
    def _delete_part(connection: sqlite3.Connection, trace_id: str, budget: int) -> int:
        """Up to ``budget`` rows of the trace, its events first (found through its
        span rows, which go last: a trace interrupted half-way is found again)."""
        deleted = connection.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE span_row IN "
            "(SELECT id FROM spans WHERE trace_id = ?) LIMIT ?)",
            (trace_id, budget),
        ).rowcount
        if deleted < budget:
            deleted += connection.execute(
                "DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE trace_id = ? LIMIT ?)",
                (trace_id, budget - deleted),
            ).rowcount
        return deleted


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
