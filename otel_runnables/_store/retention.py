"""How long the embedded store keeps traces, and how big it may grow.

``OTEL_RUNNABLES_STORE_MAX_AGE`` (a duration, default ``7d``) and
``OTEL_RUNNABLES_STORE_MAX_BYTES`` (a size, default ``200MB``). Whole traces
go: those whose newest span started before the age limit, then, while the
file holds more live data than the size limit, the oldest (by their first
row), skipping traces with runs still going while there are others to
delete. The file keeps its freed pages for reuse rather than shrinking.

Deletion never stalls the writer: ``Retention.step`` runs between write
batches, in one short transaction, bounded twice: at most
``max(step_rows, 2 * the rows the batch before it wrote)`` rows, and no more
statements once ``step_seconds`` (25 ms) are spent. It stops as soon as the
file is back within its size limit; a step that stops before is ``behind``,
and the writer then takes further steps, each its own transaction, before
it writes the next batch — so the file is back within its limit before more
is written, and the write lock is never held long at a time. Traces go a few
per statement (one statement each would make thousands of statements), rows
at most ``_STATEMENT_ROWS`` per statement, and the candidates are read as one
row of text: each row read, like each statement, lets go of the GIL, and
getting it back from a busy application thread can take a switch interval
(5 ms).
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
_LIVE_CHUNK = 500  # traces per look for runs still going
_CANDIDATE_ROWS = 1_000  # span rows looked at for traces to delete, at first: more than a step deletes
_STATEMENT_ROWS = 1_000  # rows one DELETE removes at most: the time budget is looked at between them
_LIVE_BEATS = 3  # a writer that missed this many heartbeats no longer keeps its traces


@dataclass(frozen=True)
class RetentionPolicy:
    max_age: float = _settings.STORE_MAX_AGE.default
    max_bytes: int = _settings.STORE_MAX_BYTES.default
    interval: float = 60.0  # seconds between looks for traces past max_age
    step_rows: int = 2_000  # rows one step deletes, at least (more after a big batch)
    step_seconds: float = 0.025  # a step takes no further statement once this much time is spent

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        """``OTEL_RUNNABLES_STORE_MAX_AGE`` / ``_MAX_BYTES`` as last read."""
        return cls(max_age=_settings.STORE_MAX_AGE.value, max_bytes=_settings.STORE_MAX_BYTES.value)


def used_bytes(connection: sqlite3.Connection) -> int:
    """Bytes of live data: the file's pages less the free ones (one statement, not three)."""
    (used,) = connection.execute(
        "SELECT (page_count - freelist_count) * page_size "
        "FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
    ).fetchone()
    return int(used)


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
    for start in range(0, len(trace_ids), _LIVE_CHUNK):
        chunk = trace_ids[start : start + _LIVE_CHUNK]
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


def _expired_traces(connection: sqlite3.Connection, trace_ids: list[str], cutoff_ns: int) -> set[str]:
    """Those of the traces whose newest span started before ``cutoff_ns``: one
    statement and one row of text, not one query per trace (each gives the GIL
    away and waits for it back)."""
    if not trace_ids:
        return set()
    (found,) = connection.execute(
        "SELECT group_concat(trace_id, ',') FROM (SELECT trace_id FROM spans "
        f"WHERE trace_id IN ({_marks(len(trace_ids))}) GROUP BY trace_id HAVING MAX(start_ns) < ?)",
        (*trace_ids, cutoff_ns),
    ).fetchone()
    return set(found.split(",")) if found else set()


class Retention:
    """Keeps one store within its policy, a small step at a time."""

    def __init__(self, policy: RetentionPolicy, *, beat_interval: float = 2.0) -> None:
        self.policy = policy
        self.beat_interval = beat_interval
        self.deleted_rows = 0
        self.largest_step = 0  # rows deleted by the largest step so far
        self.longest_step = 0.0  # seconds: the longest step so far
        self.behind = False  # the last step stopped (its rows or time spent) with the file still over
        self._expired: deque[str] = deque()  # traces past the age limit, still to delete
        # while the file is over its limit, from one step to the next: the traces to delete, and
        # how many go in one statement
        self._victims: deque[str] = deque()
        self._chunk = 1
        self._next_age_look = 0.0

    def step(
        self,
        connection: sqlite3.Connection,
        *,
        written_rows: int = 0,
        now_ns: int | None = None,
        keep_trying: Callable[[], bool] = lambda: True,
    ) -> int:
        """Delete what is due, at most ``max(step_rows, 2 * written_rows)`` rows and
        no further statement once ``step_seconds`` are spent; the rows deleted."""
        started = time.perf_counter()
        self.behind = False  # until this step says otherwise (an error leaves the writer free to write)
        now_ns = time.time_ns() if now_ns is None else now_ns
        if time.monotonic() >= self._next_age_look:
            self._next_age_look = time.monotonic() + self.policy.interval
            self._look_for_expired(connection, now_ns, keep_trying)
        budget = max(self.policy.step_rows, 2 * written_rows)
        deadline = started + self.policy.step_seconds
        with no_fork():  # every use of a connection, reads too (see schema.no_fork)
            over = not self._expired and used_bytes(connection) > self.policy.max_bytes
        if not self._expired and not over:
            return 0
        deleted = 0
        with write_transaction(connection, keep_trying=keep_trying):
            while self._expired and deleted < budget:
                chunk = [self._expired[index] for index in range(min(_CHUNK, len(self._expired)))]
                done, deleted = self._delete(connection, chunk, budget, deleted, deadline)
                for _ in range(done):
                    self._expired.popleft()
                if not self._expired:
                    self._next_age_look = 0.0  # more may be waiting past the first candidates
                if done < len(chunk) or time.perf_counter() >= deadline:
                    break
            victims = self._victims
            while over and deleted < budget:  # at least one statement, however long the rest took
                if not victims:  # the oldest traces (again, once those are gone and the file is still over)
                    victims.extend(self._oldest_deletable(connection, now_ns, budget - deleted))
                    if not victims:
                        break
                # a few traces, then more while the file is still over: big traces are not
                # deleted past the limit, small ones are not deleted one statement each
                chunk = [victims[index] for index in range(min(self._chunk, len(victims)))]
                done, deleted = self._delete(connection, chunk, budget, deleted, deadline)
                for _ in range(done):
                    victims.popleft()
                if done:
                    self._chunk = min(2 * self._chunk, _CHUNK)
                over = used_bytes(connection) > self.policy.max_bytes
                if time.perf_counter() >= deadline:
                    break
            if not over:  # back within the limit: the next time over, the oldest are looked for afresh
                victims.clear()
                self._chunk = 1
            # cut short with the file still over: the writer takes another step before more rows
            self.behind = over and deleted > 0
        self.deleted_rows += deleted
        self.largest_step = max(self.largest_step, deleted)
        self.longest_step = max(self.longest_step, time.perf_counter() - started)
        return deleted

    def _look_for_expired(
        self, connection: sqlite3.Connection, now_ns: int, keep_trying: Callable[[], bool]
    ) -> None:
        cutoff = now_ns - int(self.policy.max_age * 1e9)
        known = set(self._expired)
        with no_fork():
            candidates = [
                trace_id
                for trace_id in _oldest_traces(connection, _AGE_CANDIDATE_ROWS)
                if trace_id not in known
            ]
            expired = _expired_traces(connection, candidates, cutoff)
        self._expired.extend(trace_id for trace_id in candidates if trace_id in expired)  # oldest first
        with write_transaction(connection, keep_trying=keep_trying):
            connection.execute("DELETE FROM writers WHERE last_beat_ns < ?", (cutoff,))

    def _oldest_deletable(self, connection: sqlite3.Connection, now_ns: int, rows: int) -> list[str]:
        """The traces of the oldest span rows (each span has a row or two, and
        events): of the oldest ``_CANDIDATE_ROWS`` (a step seldom gets further),
        or of ``rows`` if runs are going in all of those; traces with runs going
        left out while there are others."""
        beating_since = now_ns - int(_LIVE_BEATS * self.beat_interval * 1e9)
        window = min(max(rows, 1), _CANDIDATE_ROWS)
        while True:
            candidates = _oldest_traces(connection, window)
            live = _live_traces(connection, candidates, beating_since)
            deletable = [trace_id for trace_id in candidates if trace_id not in live]
            if deletable or window >= rows:
                return deletable or candidates[:1]  # every one still going: the size limit holds all the same
            window = max(rows, 1)  # runs going in all of the oldest: look further

    @staticmethod
    def _delete(
        connection: sqlite3.Connection, trace_ids: list[str], budget: int, deleted: int, deadline: float
    ) -> tuple[int, int]:
        """Rows of these traces while ``deleted`` is under ``budget`` and the time
        is before ``deadline`` (at least one statement is run): their events
        first (found through their span rows, which go last, so that a trace cut
        half-way is found again), at most ``_STATEMENT_ROWS`` per statement.
        (How many of the traces are gone, ``deleted``.)"""
        marks = _marks(len(trace_ids))
        for statement in (
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE span_row IN "
            f"(SELECT id FROM spans WHERE trace_id IN ({marks})) LIMIT ?)",
            f"DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE trace_id IN ({marks}) LIMIT ?)",
        ):
            while True:
                limit = min(_STATEMENT_ROWS, budget - deleted)
                gone = connection.execute(statement, (*trace_ids, limit)).rowcount
                deleted += gone
                if gone < limit:
                    break  # these rows of the traces are all gone
                if deleted >= budget or time.perf_counter() >= deadline:
                    return 0, deleted  # perhaps cut half-way: found again by its span rows left
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
