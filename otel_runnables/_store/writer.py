"""The store's writer thread: the queue's items into rows, in batches.

The caller's thread only appends small tuples (see ``processor.py``); here
they become rows — ids as hex, attributes as JSON — and go to SQLite with one
``executemany`` per table in one transaction per batch. Between batches the
writer beats (its ``writers`` row, while runs are going) and takes one small
retention step; while retention is behind (the file still over its size
limit), it takes further steps, each its own short transaction, before the
next batch. It sleeps while there is nothing to write and no run to beat
for, and is woken by the first item after a pause.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource

from otel_runnables._store.processes import this_process
from otel_runnables._store.retention import Retention, RetentionPolicy
from otel_runnables._store.rows import Batch
from otel_runnables._store.schema import StoreError, connect_writer, is_busy, no_fork, write_transaction

__all__ = ["StoreWriter"]

logger = logging.getLogger(__name__)

_WRITER_BUSY_TIMEOUT_MS = 50  # then the writer tries again itself, without holding up forks
_RECONNECT_AFTER = 5.0
_BIG_BATCH = 2_000  # queued items worth writing at once, without waiting for more
# at most this many items per transaction: the write lock (other processes' writers wait for it,
# a fork waits for the writer) is held for tens of milliseconds, not for as long as a backlog takes
_MAX_BATCH = 5_000
_SPAN_COLUMNS = (
    "id, trace_id, span_id, parent_span_id, name, span_type, run_id, parent_run_id, run_type, start_ns, "
    "end_ns, status, status_message, attributes, service_name, writer_id, events_not_stored"
)
_EVENT_COLUMNS = "span_row, trace_id, span_id, seq, name, time_ns, attributes"
# Parameters one statement may take: 32,766 from SQLite 3.32, 999 before.
_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_REPLACED_TAIL = "DELETE FROM events WHERE span_row = ? AND seq = ?"


@functools.lru_cache(maxsize=64)
def _insert_statement(table: str, columns: str, rows: int) -> str:
    one = f"({','.join('?' * (columns.count(',') + 1))})"
    return f"INSERT INTO {table} ({columns}) VALUES {','.join([one] * rows)}"


def _insert(connection: sqlite3.Connection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """``rows`` in statements of many rows each, not one statement per row: SQLite
    lets go of the GIL once per statement, and each time the writer has to wait
    for the caller's thread to give it back (at most ``sys.getswitchinterval()``).
    Row counts are powers of two, so that few statements are ever prepared."""
    if not rows:
        return
    most = min(256, _MAX_PARAMETERS // len(rows[0]))
    size = 1 << (most.bit_length() - 1)  # the largest power of two within the bound
    start = 0
    while start < len(rows):
        while len(rows) - start < size:
            size >>= 1
        connection.execute(
            _insert_statement(table, columns, size), list(chain.from_iterable(rows[start : start + size]))
        )
        start += size


class StoreWriter:
    """One thread writing ``queue`` to the store at ``path``."""

    def __init__(
        self,
        path: Path,
        queue: deque[tuple[Any, ...]],
        *,
        flush_interval: float,
        beat_interval: float,
        retention: RetentionPolicy,
        has_open_spans: Callable[[], bool],
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.beat_interval = beat_interval
        self.retention = Retention(retention, beat_interval=beat_interval)
        self.idle = True  # asleep with nothing queued: the next item wakes it
        self.pulled = 0  # items taken off the queue
        self.done = 0  # of those, items committed or counted as lost
        self.written = 0
        self.lost = 0
        self.longest_batch = 0.0  # seconds: the longest write of one batch, its retention step included
        self.cpu_seconds = 0.0  # the thread's CPU time writing batches and retention steps
        self._queue = queue
        self._has_open_spans = has_open_spans
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._hurry = False  # a flush is waiting: no gathering
        self._give_up_at = float("inf")
        self._warned: set[str] = set()
        self._writer_id: int | None = None
        self._last_beat = 0.0
        self._resource: tuple[Resource | None, str | None] = (None, None)

    # -- what the processor asks --------------------------------------------------------

    def wake(self) -> None:
        if self._thread is None:
            with self._progress:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="otel_runnables-store", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def queued_target(self) -> int:
        """The count ``done`` reaches once everything queued now is handled."""
        with self._progress:
            return self.pulled + len(self._queue)

    def wait_for(self, target: int, timeout: float) -> bool:
        """Until ``done`` reaches ``target``; False if the time ran out first."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while self.done < target:
                thread = self._thread
                remaining = deadline - time.monotonic()
                if thread is None or not thread.is_alive() or remaining <= 0:
                    return False
                self._hurry = True
                self._wake.set()
                self._progress.wait(min(remaining, 0.05))
        return True

    def stop(self, timeout: float) -> None:
        """Write what is queued (trying at most ``timeout`` seconds), then end the thread."""
        self._give_up_at = time.monotonic() + timeout
        self._stopping = True
        if self._thread is None and self._queue:
            self.wake()
        thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join(timeout + 1.0)

    def give_up(self) -> None:
        """After ``stop``: the queue's rest, which the thread did not get to in time,
        is counted lost. (A batch the thread is still on counts when it ends.)"""
        with self._progress:
            rest = len(self._queue)
            self._queue.clear()
            self.pulled += rest
            self.done += rest
            self.lost += rest

    # -- the thread ----------------------------------------------------------------------

    def _keep_trying(self) -> bool:
        return not (self._stopping and time.monotonic() > self._give_up_at)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        next_connect = 0.0
        while True:
            self._sleep()
            with self._progress:
                # over the size limit still: deleting comes first, so the file gets back within it
                batch = [] if self.retention.behind and not self._stopping else list(self._take())
                self.pulled += len(batch)
                self._hurry = False
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                if connection is None and (batch or self._stopping) and time.monotonic() >= next_connect:
                    connection = self._connect()
                    if connection is None:
                        next_connect = time.monotonic() + _RECONNECT_AFTER
                if connection is None:
                    self.lost += len(batch)
                else:
                    beat_due = time.monotonic() - self._last_beat >= self.beat_interval
                    written = 0
                    if batch or (beat_due and self._has_open_spans()):
                        written = self._write(connection, batch)
                    self._retention_step(connection, written)
            except Exception as exc:  # a bug here must not end the thread: count, log once, go on
                self._warn_once("bug", "the local trace store's writer failed on a batch: %r", exc)
                self.lost += len(batch)
            self.longest_batch = max(self.longest_batch, time.perf_counter() - started)
            self.cpu_seconds += time.thread_time() - cpu
            with self._progress:
                self.done += len(batch)
                self._progress.notify_all()
                if self._stopping and not self._queue:
                    break
        if connection is not None:
            self._close(connection)

    def _sleep(self) -> None:
        """Until there is a batch to write (``flush_interval`` after the first
        item, so that a batch gathers), a heartbeat is due, or a flush is asked."""
        queue, wake = self._queue, self._wake
        if self._stopping:
            return
        if self.retention.behind:
            time.sleep(0.003)  # between two retention steps: a moment without the lock, for other processes
            return
        if not queue:
            self.idle = True
            if not queue:  # an item may have come between the two looks: then no sleep
                wake.wait(self.beat_interval if self._has_open_spans() else None)
            self.idle = False
            wake.clear()
        if queue and not self._hurry and not self._stopping and len(queue) < _BIG_BATCH:
            wake.wait(self.flush_interval)
            wake.clear()
        elif queue:
            time.sleep(0.003)  # back-to-back batches: a moment without the lock, for other processes

    def _take(self) -> Iterator[tuple[Any, ...]]:
        queue = self._queue
        for _ in range(min(len(queue), _MAX_BATCH)):
            yield queue.popleft()

    def _connect(self) -> sqlite3.Connection | None:
        while True:
            try:
                connection = connect_writer(self.path)
                break
            except (StoreError, sqlite3.Error) as exc:
                if is_busy(exc) and self._keep_trying():
                    continue  # another process is creating or upgrading it: not a reason to lose runs
                failure: BaseException = exc
            except OSError as exc:
                failure = exc
            if "open" not in self._warned:
                self._warned.add("open")
                logger.error("the local trace store cannot be used, runs are not stored: %s", failure)
            return None
        try:
            with no_fork():
                connection.execute(f"PRAGMA busy_timeout = {_WRITER_BUSY_TIMEOUT_MS}")
            me = this_process()
            now = time.time_ns()
            with write_transaction(connection, keep_trying=self._keep_trying):
                cursor = connection.execute(
                    "INSERT INTO writers (host, pid, process_start, started_ns, last_beat_ns, "
                    "beat_interval_ns) VALUES (?,?,?,?,?,?)",
                    (me.host, me.pid, me.start, now, now, int(self.beat_interval * 1e9)),
                )
            self._writer_id = cursor.lastrowid
            self._last_beat = time.monotonic()
        except sqlite3.Error as exc:
            self._warn_once("open", "the local trace store %s cannot be written: %s", self.path, exc)
            with no_fork():
                connection.close()
            return None
        return connection

    def _close(self, connection: sqlite3.Connection) -> None:
        try:
            with write_transaction(connection, keep_trying=self._keep_trying):
                connection.execute(
                    "UPDATE writers SET stopped_ns = ?, last_beat_ns = ? WHERE id = ?",
                    (time.time_ns(), time.time_ns(), self._writer_id),
                )
        except sqlite3.Error:
            logger.debug("could not mark the store's writer stopped", exc_info=True)
        with no_fork():
            connection.close()

    def _write(self, connection: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> int:
        """One transaction; the rows written (0 when the batch was lost)."""
        rows: Batch | None = None
        try:
            with write_transaction(connection, keep_trying=self._keep_trying):
                # span rows get their ids here, under the write lock: events name their span's row
                rows = Batch(self._largest_span_id(connection) + 1, self._writer_id, self._service)
                rows.add(batch)
                _insert(connection, "spans", _SPAN_COLUMNS, rows.spans)
                _insert(connection, "events", _EVENT_COLUMNS, rows.events)
                if rows.replaced:
                    connection.executemany(_REPLACED_TAIL, rows.replaced)
                connection.execute(
                    "UPDATE writers SET last_beat_ns = ? WHERE id = ?", (time.time_ns(), self._writer_id)
                )
        except Exception as exc:  # a database error, or a span it could not read: never a reason to stop
            if rows is not None:
                rows.undo()
            self._warn_once(
                "write",
                "the local trace store %s: a write failed, %d items lost: %r",
                self.path,
                len(batch),
                exc,
            )
            self.lost += len(batch)
            return 0
        self._last_beat = time.monotonic()
        self.written += len(batch)
        assert rows is not None
        return len(rows.spans) + len(rows.events)

    @staticmethod
    def _largest_span_id(connection: sqlite3.Connection) -> int:
        return int(connection.execute("SELECT COALESCE(MAX(id), 0) FROM spans").fetchone()[0])

    def _retention_step(self, connection: sqlite3.Connection, written: int) -> None:
        try:
            self.retention.step(connection, written_rows=written, keep_trying=self._keep_trying)
        except sqlite3.Error as exc:
            self._warn_once(
                "retention", "the local trace store %s: retention failed this time: %s", self.path, exc
            )

    def _warn_once(self, what: str, message: str, *args: object) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(message, *args)

    def _service(self, resource: Resource | None) -> str | None:
        known, name = self._resource
        if resource is not known:
            value = None if resource is None else resource.attributes.get("service.name")
            name = value if isinstance(value, str) else None
            self._resource = (resource, name)
        return name
