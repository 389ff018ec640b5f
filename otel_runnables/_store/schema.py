"""The embedded store's SQLite schema, and how connections to it are opened.

One file in WAL mode: readers never block the writer, and several processes
may write it. The file is marked as ours (``PRAGMA application_id``) and its
schema version lives in ``PRAGMA user_version``; an older store of ours is
upgraded in place, a newer one is refused (``StoreVersionError``), and any
other non-empty database is never touched (``ForeignStoreError``). A file we
create is private to its user (0600; SQLite gives its ``-wal``/``-shm`` files
the same mode), and so is a directory we create for it (0700).

Tables (version 3). Rows are only ever added, except by retention, which
deletes whole traces; ``id`` grows with every row written, so "rows since
cursor N" is ``WHERE id > N`` on the primary key, for spans and events alike
(the ``id`` of a deleted newest row may be handed out again only once the
table is empty).

``writers``: one row per process that wrote the file, its heartbeat.
    ``id``; ``host`` (``socket.gethostname()``); ``pid``; ``process_start``
    (Linux: ``"<boot id>/<pid namespace>/<start ticks>"``, which tells the
    process from a later one with the same pid; NULL where unknown);
    ``started_ns`` (when it first wrote); ``last_beat_ns``, refreshed every
    ``beat_interval_ns`` while it has runs going; ``stopped_ns``, set when it
    shut down cleanly.

``spans``: one row per span version. A span that started and ended within
    one write batch (most of them) has one row, with ``end_ns``; a longer
    one has a first row with ``end_ns`` NULL (it is running) and a later one
    when it ends. The row with the highest ``id`` of a (``trace_id``,
    ``span_id``) is the span. Columns: ``id``; ``trace_id`` (32 hex digits),
    ``span_id`` and ``parent_span_id`` (16); ``name``; ``span_type``
    (``run`` for runs, NULL for other spans); ``run_id``, ``parent_run_id``
    (UUID text), ``run_type``; ``start_ns``, ``end_ns`` (ns since the epoch);
    ``status`` (``unset``/``ok``/``error``), ``status_message``;
    ``attributes`` (a JSON object); ``service_name``; ``writer_id``
    (``writers.id``); ``events_not_stored``: on an ended run, how many of
    its custom events the store did not keep (its per-run bound, a full
    queue).

``events``: custom events as they are dispatched, and the other span events
    of a span when it ends. ``id``; ``span_row``: the ``id`` of the first
    row of the span the event belongs to (written no later than the event;
    indexed with ``seq``, so "a span's events" is one index range);
    ``trace_id``, ``span_id`` (the same span, as text); ``seq``: 1, 2, 3…
    within the span in the order the events happened (two events never
    merge, whatever their timestamps; a gap is an event not stored);
    ``name``; ``time_ns``; ``attributes`` (JSON object). Past the per-run
    bound only the latest event of each name is kept: its row replaces the
    previous one of that name (a new ``id``).

Indexes: ``spans`` by (``trace_id``, ``span_id``), by ``run_id``, root runs
by ``start_ns``; ``events`` by (``span_row``, ``seq``). Trace ids are
random: an index keyed by them costs a random B-tree insert per row, so
events, the most numerous rows, are keyed by their span's first row id,
which grows with time.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from otel_runnables._errors import OtelRunnablesError

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "ForeignStoreError",
    "StoreError",
    "StoreVersionError",
    "UnusableStoreError",
    "connect_reader",
    "connect_writer",
    "is_busy",
    "no_fork",
    "write_transaction",
]

SCHEMA_VERSION = 3
APPLICATION_ID = 0x6F52756E  # "oRun": this file is an otel_runnables store
BUSY_TIMEOUT_MS = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS writers (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_start TEXT,
    started_ns INTEGER NOT NULL,
    last_beat_ns INTEGER NOT NULL,
    beat_interval_ns INTEGER NOT NULL,
    stopped_ns INTEGER
);
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    span_type TEXT,
    run_id TEXT,
    parent_run_id TEXT,
    run_type TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    status TEXT NOT NULL DEFAULT 'unset',
    status_message TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL DEFAULT '{}',
    service_name TEXT,
    writer_id INTEGER,
    events_not_stored INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id, span_id);
CREATE INDEX IF NOT EXISTS spans_by_run ON spans (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS root_runs_by_start ON spans (start_ns)
    WHERE span_type = 'run' AND parent_run_id IS NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    span_row INTEGER NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_by_span_row ON events (span_row, seq);
"""

_SPAN_ROW_OF_EVENT = (
    "(SELECT MIN(id) FROM spans WHERE spans.trace_id = e.trace_id AND spans.span_id = e.span_id)"
)

# version 1 (no writers, one row per span, events keyed by time and name) moves into version 2
_FROM_VERSION_1 = """
ALTER TABLE spans RENAME TO spans_v1;
ALTER TABLE events RENAME TO events_v1;
DROP INDEX IF EXISTS spans_by_run;
DROP INDEX IF EXISTS root_runs_by_start;
{schema};
INSERT INTO writers (host, pid, started_ns, last_beat_ns, beat_interval_ns)
    SELECT :host, pid, MIN(start_ns), MAX(start_ns), 0 FROM spans_v1 WHERE pid IS NOT NULL GROUP BY pid;
INSERT INTO spans (trace_id, span_id, parent_span_id, name, span_type, run_id, parent_run_id, run_type,
        start_ns, end_ns, status, status_message, attributes, service_name, writer_id)
    SELECT trace_id, span_id, parent_span_id, name, span_type, run_id, parent_run_id, run_type, start_ns,
        end_ns, status, status_message, attributes, service_name,
        (SELECT id FROM writers WHERE writers.pid = spans_v1.pid)
    FROM spans_v1 ORDER BY start_ns;
INSERT INTO events (span_row, trace_id, span_id, seq, name, time_ns, attributes)
    SELECT {span_row}, trace_id, span_id,
        (SELECT COUNT(*) FROM events_v1 AS earlier WHERE earlier.trace_id = e.trace_id
            AND earlier.span_id = e.span_id AND earlier.rowid <= e.rowid),
        name, time_ns, attributes
    FROM events_v1 AS e WHERE {span_row} IS NOT NULL ORDER BY rowid;
DROP TABLE spans_v1;
DROP TABLE events_v1
"""

# version 2 (events keyed by their trace and span ids) moves into version 3
_FROM_VERSION_2 = """
ALTER TABLE events RENAME TO events_v2;
DROP INDEX IF EXISTS events_by_span;
{events};
INSERT INTO events (id, span_row, trace_id, span_id, seq, name, time_ns, attributes)
    SELECT id, {span_row}, trace_id, span_id, seq, name, time_ns, attributes
    FROM events_v2 AS e WHERE {span_row} IS NOT NULL ORDER BY id;
DROP TABLE events_v2
"""
_VERSION_1_TABLES = {"spans", "events"}


class StoreError(OtelRunnablesError):
    """The store file cannot be used; the message names the file and why."""


class StoreVersionError(StoreError):
    """The store file was written by a newer otel_runnables."""


class ForeignStoreError(StoreError):
    """The file is a database otel_runnables did not create: it is left untouched."""


class UnusableStoreError(StoreError):
    """The file is not a readable SQLite database (a directory, garbage, truncated, no permission)."""


# -- no fork while a connection is in use -------------------------------------------
#
# SQLite keeps per-process state for each open file (its locks, the WAL index).
# A child forked while a connection of ours is mid-statement inherits that
# state half-way through: its own connections would then wait forever on a
# lock nobody holds, or undo the parent's transaction in the shared WAL index.
# SQLite's process-wide mutexes (its allocator's, its list of open files) are
# inherited too: a fork during any call, a read as much as a write, can leave
# one locked forever in the child, whose first ``connect`` then never returns.
# Every use of a connection, and every open and close, holds this lock, and a
# fork waits for it.

_in_use = threading.RLock()


@contextlib.contextmanager
def no_fork() -> Iterator[None]:
    with _in_use:
        yield


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_in_use.acquire, after_in_parent=_in_use.release, after_in_child=_in_use.release
    )


@contextlib.contextmanager
def write_transaction(connection: sqlite3.Connection, *, keep_trying: Callable[[], bool]) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an error), with no fork
    meanwhile. While another connection holds the write lock, tries again
    every few milliseconds (another process's writer may let go only briefly),
    without blocking forks in between, as long as ``keep_trying()``; then
    raises SQLite's busy error."""
    while True:
        _in_use.acquire()
        try:
            connection.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            _in_use.release()
            if not _is_busy(exc) or not keep_trying():
                raise
        except BaseException:
            _in_use.release()
            raise
        time.sleep(0.001 + random.random() * 0.001)
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    finally:
        _in_use.release()


# -- files that are ours ---------------------------------------------------------------


def _make_private_directories(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=0o700)


def _create_private_file(path: Path) -> None:
    """An empty file only its user can read, before SQLite opens it (SQLite
    gives the ``-wal`` and ``-shm`` files the database file's mode)."""
    _make_private_directories(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _unusable(path: Path, exc: BaseException) -> UnusableStoreError:
    message = str(exc)
    if "not a database" in message:
        why = "is not an SQLite database"
    elif "malformed" in message or "corrupt" in message:
        why = "is damaged (SQLite: database disk image is malformed)"
    else:
        why = f"cannot be read ({message})"
    return UnusableStoreError(f"{path} {why}")


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise UnusableStoreError(f"{path} is a directory, not a store file")


def _kind(connection: sqlite3.Connection, path: Path) -> tuple[str, int]:
    """("ours" | "empty" | "version 1", schema version), or ForeignStoreError.

    One statement, so one snapshot: read one by one, a store another process
    creates meanwhile could show its tables but not yet its mark."""
    application_id, version, names = connection.execute(
        "SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM "
        "pragma_user_version), (SELECT group_concat(name, char(10)) FROM sqlite_master WHERE type = 'table')"
    ).fetchone()
    if application_id == APPLICATION_ID:
        return "ours", version
    tables = set(names.split("\n")) if names else set()
    if application_id == 0 and version == 0 and not tables:
        return "empty", 0
    if application_id == 0 and version == 1 and tables == _VERSION_1_TABLES:
        return "version 1", 1  # written before stores were marked
    what = f"application_id {application_id}" if application_id else f"tables {', '.join(sorted(tables))}"
    raise ForeignStoreError(
        f"{path} is not an otel_runnables store ({what}); it is left untouched: "
        "point OTEL_RUNNABLES_STORE (or --store) at another file"
    )


def _newer(path: Path, version: int) -> StoreVersionError:
    return StoreVersionError(
        f"{path} has store schema {version}; this otel_runnables reads up to {SCHEMA_VERSION}: "
        "upgrade otel_runnables or point OTEL_RUNNABLES_STORE at another file"
    )


def _inspect(path: Path) -> None:
    """Refuse a file that is not ours, reading it only (a read-only connection
    cannot even roll back a journal left by a crash)."""
    if path.stat().st_size == 0:
        return
    connection = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
    )
    try:
        _kind(connection, path)
    finally:
        connection.close()


# -- connections ------------------------------------------------------------------------------


def _tune(connection: sqlite3.Connection) -> None:
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def connect_writer(path: Path) -> sqlite3.Connection:
    """A connection for a writer: creates the file (private) and the schema when
    needed, upgrades an older store of ours; refuses a file that is not ours.

    Switching to WAL does not wait on the busy timeout: when another process is
    creating the same file at that moment, SQLite answers "database is locked"
    at once. That is retried, with backoff, for as long as the busy timeout."""
    with no_fork():
        _check_is_file(path)
        if not path.exists():
            _create_private_file(path)

    def open_writer() -> sqlite3.Connection:
        _inspect(path)
        return _open_writer(path)

    return _retry_busy(path, open_writer)


def _retry_busy(path: Path, attempt: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            with no_fork():
                return attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise _unusable(path, exc) from exc
        except sqlite3.DatabaseError as exc:
            raise _unusable(path, exc) from exc
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (sqlite3 names them only from 3.11)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` (or the SQLite error it was raised from) says another
    connection holds the lock: a reason to try again, not to give up."""
    cause = exc if isinstance(exc, sqlite3.OperationalError) else exc.__cause__
    return isinstance(cause, sqlite3.OperationalError) and _is_busy(cause)


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
    kind, version = _kind(connection, path)
    if kind == "ours" and version == SCHEMA_VERSION:
        return connection
    if version > SCHEMA_VERSION:
        raise _newer(path, version)
    connection.execute("BEGIN IMMEDIATE")
    try:
        kind, version = _kind(connection, path)  # again, under the write lock: another process may have won
        if version in (1, 2):
            if version == 1:
                script = _FROM_VERSION_1.format(
                    schema=_SCHEMA.strip().rstrip(";"), span_row=_SPAN_ROW_OF_EVENT
                )
            else:
                events = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS events") :].strip().rstrip(";")
                script = _FROM_VERSION_2.format(events=events, span_row=_SPAN_ROW_OF_EVENT)
            for statement in script.split(";\n"):
                if statement.strip():
                    connection.execute(
                        statement, {"host": socket.gethostname()} if ":host" in statement else ()
                    )
        elif version == 0:
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    connection.execute(statement)
        elif version != SCHEMA_VERSION:
            raise _newer(path, version)
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return connection


def connect_reader(path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when there is no store file (never creates one).

    Raises ``StoreError`` for a file that cannot serve as a store."""
    _check_is_file(path)
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        return None  # being created right now
    found: list[tuple[str, int]] = []

    def open_reader() -> sqlite3.Connection:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            _tune(connection)
            found.append(_kind(connection, path))
        except BaseException:
            connection.close()
            raise
        return connection

    connection = _retry_busy(path, open_reader)
    kind, version = found[-1]
    if version == SCHEMA_VERSION and kind != "empty":
        return connection
    with no_fork():
        connection.close()
    if version > SCHEMA_VERSION:
        raise _newer(path, version)
    if kind == "empty":
        return None  # being created right now
    writer = connect_writer(path)  # an older store of ours: upgraded once, then read
    with no_fork():
        writer.close()
    return connect_reader(path)
