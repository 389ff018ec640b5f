"""The embedded store's SQLite schema and how connections to it are opened.

One file, WAL mode (readers never block the writer, several processes may
write), a busy timeout instead of "database is locked" errors. The schema
version lives in ``PRAGMA user_version``: an older file is upgraded in place
(the store is a cache of recent traces, so an incompatible one is recreated),
a newer one is refused with ``StoreVersionError``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from otel_runnables.errors import OtelRunnablesError

__all__ = ["SCHEMA_VERSION", "StoreVersionError", "connect_reader", "connect_writer"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    span_type TEXT,             -- otel_runnables.span_type: run, or NULL for other spans
    run_id TEXT,
    parent_run_id TEXT,
    run_type TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,             -- NULL while the span is live
    status TEXT NOT NULL DEFAULT 'unset',
    status_message TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL DEFAULT '{}',
    service_name TEXT,
    pid INTEGER,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_run ON spans (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS root_runs_by_start ON spans (start_ns)
    WHERE span_type = 'run' AND parent_run_id IS NULL;
CREATE TABLE IF NOT EXISTS events (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    name TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',
    -- one row per event, whether it arrived live or with its ended span
    UNIQUE (trace_id, span_id, time_ns, name)
);
"""


class StoreVersionError(OtelRunnablesError):
    """The store file was written by a newer otel_runnables."""


def _tune(connection: sqlite3.Connection) -> None:
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def connect_writer(path: Path) -> sqlite3.Connection:
    """A connection for the writer thread: creates the file and schema when needed.

    Switching to WAL does not wait on the busy timeout: when another process is
    creating the same file at that moment, SQLite answers "database is locked"
    at once. That is retried, with backoff, for as long as the busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            return _open_writer(path)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (sqlite3 names them only from 3.11)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Another connection holds the lock. Python 3.11+ gives SQLite's result
    code; 3.10 gives only the message."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES  # extended codes keep the primary one in the low byte
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _open_writer(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        return _prepare_writer(connection, path)
    except BaseException:
        connection.close()
        raise


def _prepare_writer(connection: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    _tune(connection)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; fast commits
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"{path} has store schema {version}; this otel_runnables reads up to {SCHEMA_VERSION}: "
            "upgrade otel_runnables or point OTEL_RUNNABLES_STORE at another file"
        )
    if version < SCHEMA_VERSION:
        connection.execute("BEGIN IMMEDIATE")
        try:
            if 0 < version < SCHEMA_VERSION:
                connection.execute("DROP TABLE IF EXISTS spans")
                connection.execute("DROP TABLE IF EXISTS events")
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return connection


def connect_reader(path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when there is no store file yet (never creates one)."""
    if not path.exists():
        return None
    connection = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
    )
    _tune(connection)
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        connection.close()
        raise StoreVersionError(
            f"{path} has store schema {version}; this otel_runnables reads up to {SCHEMA_VERSION}"
        )
    if version < SCHEMA_VERSION:
        connection.close()
        return None  # being created right now, or an old file: nothing readable yet
    return connection
