"""How long the embedded store keeps traces, and how big it may grow.

``OTEL_RUNNABLES_STORE_MAX_AGE``: seconds, or a number with ``s``/``m``/``h``/``d``
(default ``7d``); ``OTEL_RUNNABLES_STORE_MAX_BYTES``: bytes, or with ``KB``/``MB``/``GB``
(default ``200MB``). Whole traces go, oldest first; the file keeps its freed
pages for reuse rather than shrinking.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from dataclasses import dataclass

__all__ = ["RetentionPolicy", "apply_retention", "parse_bytes", "parse_seconds"]

logger = logging.getLogger(__name__)

_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_BYTES = {
    "": 1,
    "b": 1,
    "kb": 1_000,
    "mb": 1_000_000,
    "gb": 1_000_000_000,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _parse(raw: str, units: dict[str, int], what: str) -> float:
    match = _QUANTITY.match(raw)
    if match is None or match.group(2).lower() not in units:
        raise ValueError(f"{what}={raw!r}: expected a number with one of the units {sorted(units)}")
    return float(match.group(1)) * units[match.group(2).lower()]


def parse_seconds(raw: str) -> float:
    return _parse(raw, _SECONDS, "OTEL_RUNNABLES_STORE_MAX_AGE")


def parse_bytes(raw: str) -> int:
    return int(_parse(raw, _BYTES, "OTEL_RUNNABLES_STORE_MAX_BYTES"))


@dataclass(frozen=True)
class RetentionPolicy:
    max_age: float = 7 * 86400.0
    max_bytes: int = 200_000_000
    interval: float = 600.0  # seconds between checks while the writer runs

    @classmethod
    def from_env(cls) -> RetentionPolicy:
        policy = cls()
        age, size = (
            os.environ.get("OTEL_RUNNABLES_STORE_MAX_AGE"),
            os.environ.get("OTEL_RUNNABLES_STORE_MAX_BYTES"),
        )
        try:
            max_age = parse_seconds(age) if age else policy.max_age
            max_bytes = parse_bytes(size) if size else policy.max_bytes
        except ValueError as exc:
            logger.warning("%s; keeping the default retention", exc)
            return policy
        return cls(max_age=max_age, max_bytes=max_bytes)


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
