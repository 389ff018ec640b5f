"""How long the embedded store keeps traces, and how big it may grow.

``OTEL_RUNNABLES_STORE_MAX_AGE`` (a duration, default ``7d``) and
``OTEL_RUNNABLES_STORE_MAX_BYTES`` (a size, default ``200MB``). Whole traces go,
oldest first; the file keeps its freed pages for reuse rather than shrinking.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from otel_runnables import _settings

__all__ = ["RetentionPolicy", "apply_retention"]


@dataclass(frozen=True)
class RetentionPolicy:
    max_age: float = _settings.STORE_MAX_AGE.default
    max_bytes: int = _settings.STORE_MAX_BYTES.default
    interval: float = 600.0  # seconds between checks while the writer runs

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        """``OTEL_RUNNABLES_STORE_MAX_AGE`` / ``_MAX_BYTES`` as last read."""
        return cls(max_age=_settings.STORE_MAX_AGE.value, max_bytes=_settings.STORE_MAX_BYTES.value)


def _used_bytes(connection: sqlite3.Connection) -> int:
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _delete_traces(connection: sqlite3.Connection, trace_ids: list[str]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany("DELETE FROM events WHERE trace_id = ?", [(t,) for t in trace_ids])
        connection.executemany("DELETE FROM spans WHERE trace_id = ?", [(t,) for t in trace_ids])
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def apply_retention(
    connection: sqlite3.Connection, policy: RetentionPolicy, now_ns: int | None = None
) -> int:
    """Delete traces past the age limit, then the oldest until under the size limit; the count deleted."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    cutoff = now_ns - int(policy.max_age * 1e9)
    old = [
        row[0]
        for row in connection.execute(
            "SELECT trace_id FROM spans GROUP BY trace_id HAVING MAX(start_ns) < ?", (cutoff,)
        )
    ]
    if old:
        _delete_traces(connection, old)
    deleted = len(old)
    while _used_bytes(connection) > policy.max_bytes:
        oldest = [
            row[0]
            for row in connection.execute(
                "SELECT trace_id FROM spans GROUP BY trace_id ORDER BY MAX(start_ns) LIMIT 5"
            )
        ]
        if not oldest:
            break
        _delete_traces(connection, oldest)
        deleted += len(oldest)
    return deleted
