"""The store's writer thread: the queue's items into rows, in batches.

The caller's thread only appends small tuples (see ``processor.py``); here
they become rows — ids as hex, attributes as JSON — and go to SQLite with one
``executemany`` per table in one transaction per batch. Between batches the
writer beats (its ``writers`` row, while runs are going) and takes one small
retention step. It sleeps while there is nothing to write and no run to beat
for, and is woken by the first item after a pause.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.trace import StatusCode

from otel_runnables import conventions
from otel_runnables.store.processes import this_process
from otel_runnables.store.retention import Retention, RetentionPolicy
from otel_runnables.store.schema import StoreError, connect_writer, is_busy, no_fork, write_transaction

__all__ = ["ABANDON", "END", "EVENT", "START", "TAIL", "OpenSpan", "StoreWriter"]

logger = logging.getLogger(__name__)

# what the queue holds: (START, open span) (EVENT, open span, seq, name, time_ns, attributes)
# (TAIL, ... as EVENT ..., seq of the row it replaces or 0) (END, open span or None, ended span)
# (ABANDON, open span, end_ns): a span still open when the process shuts down
START, EVENT, TAIL, END, ABANDON = range(5)
ABANDONED = "process exited before the run ended"
_WRITER_BUSY_TIMEOUT_MS = 50  # then the writer tries again itself, without holding up forks
_RECONNECT_AFTER = 5.0
_BIG_BATCH = 2_000  # queued items worth writing at once, without waiting for more
_STATUS = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}
_encode = json.JSONEncoder(
    ensure_ascii=False, check_circular=False, separators=(",", ":"), default=str
).encode

_SPAN_ROW = (
    "INSERT INTO spans (trace_id, span_id, parent_span_id, name, span_type, run_id, parent_run_id, run_type, "
    "start_ns, end_ns, status, status_message, attributes, service_name, writer_id, events_not_stored) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_EVENT_ROW = "INSERT INTO events (trace_id, span_id, seq, name, time_ns, attributes) VALUES (?,?,?,?,?,?)"
_REPLACED_TAIL = "DELETE FROM events WHERE trace_id = ? AND span_id = ? AND seq = ?"


class OpenSpan:
    """A span the processor saw start and has not seen end; its queue items share it."""

    __slots__ = ("span", "seq", "not_stored", "ended", "ids", "tails")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.seq = count(1)  # next() is atomic: events of one run may come from several threads
        self.not_stored = 0  # its events dropped (full queue, past the bound) or replaced
        self.ended = False  # its end is queued: its start row need not be written
        self.ids: tuple[str, str] | None = None  # (trace id, span id) as hex, made by the writer
        self.tails: dict[str, int] | None = None  # past the bound: the seq of the row kept per name


def _hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.context
    assert context is not None  # started spans only
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


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

    # -- the thread ----------------------------------------------------------------------

    def _keep_trying(self) -> bool:
        return not (self._stopping and time.monotonic() > self._give_up_at)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        next_connect = 0.0
        while True:
            self._sleep()
            with self._progress:
                batch = list(self._take())
                self.pulled += len(batch)
                self._hurry = False
            started = time.perf_counter()
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
            time.sleep(0.001)  # back-to-back batches: a moment without the lock, for other processes

    def _take(self) -> Iterator[tuple[Any, ...]]:
        queue = self._queue
        for _ in range(len(queue)):
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
        try:
            spans, events, replaced = self._rows(batch)
        except Exception as exc:  # never a reason to stop writing
            self._warn_once("rows", "the local trace store could not read a batch of spans: %s", exc)
            self.lost += len(batch)
            return 0
        try:
            with write_transaction(connection, keep_trying=self._keep_trying):
                if spans:
                    connection.executemany(_SPAN_ROW, spans)
                if events:
                    connection.executemany(_EVENT_ROW, events)
                if replaced:
                    connection.executemany(_REPLACED_TAIL, replaced)
                connection.execute(
                    "UPDATE writers SET last_beat_ns = ? WHERE id = ?", (time.time_ns(), self._writer_id)
                )
        except sqlite3.Error as exc:
            self._warn_once(
                "write",
                "the local trace store %s: a write failed, %d items lost: %s",
                self.path,
                len(batch),
                exc,
            )
            self.lost += len(batch)
            return 0
        self._last_beat = time.monotonic()
        self.written += len(batch)
        return len(spans) + len(events)

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

    # -- items into rows -----------------------------------------------------------------

    def _rows(
        self, batch: list[tuple[Any, ...]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[str, str, int]]]:
        spans: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        replaced: list[tuple[str, str, int]] = []
        for item in batch:
            kind = item[0]
            if kind in (EVENT, TAIL):
                state = item[1]
                ids = state.ids or self._ids(state)
                events.append((ids[0], ids[1], item[2], item[3], item[4], _encode(item[5])))
                if kind == TAIL and item[6]:
                    replaced.append((ids[0], ids[1], item[6]))
            elif kind == END:
                self._ended(item[1], item[2], spans, events)
            elif kind == START:
                state = item[1]
                if not state.ended:  # else its end, later in the queue, is its one row
                    spans.append(self._live_row(state, None))
            elif kind == ABANDON:
                state = item[1]
                if state.span.end_time is not None:  # it ended while the queue had no room for its end
                    self._ended(state, state.span, spans, events)
                else:
                    spans.append(self._live_row(state, item[2]))
        return spans, events, replaced

    @staticmethod
    def _ids(state: OpenSpan) -> tuple[str, str]:
        ids = state.ids = _hex_ids(state.span)
        return ids

    def _service(self, resource: Resource | None) -> str | None:
        known, name = self._resource
        if resource is not known:
            value = None if resource is None else resource.attributes.get("service.name")
            name = value if isinstance(value, str) else None
            self._resource = (resource, name)
        return name

    def _row(
        self,
        span: ReadableSpan,
        ids: tuple[str, str],
        attributes: dict[str, Any],
        end_ns: int | None,
        status: str,
        message: str,
        not_stored: int,
    ) -> tuple[Any, ...]:
        parent = span.parent
        return (
            ids[0],
            ids[1],
            None if parent is None else f"{parent.span_id:016x}",
            span.name,
            attributes.get(conventions.SPAN_TYPE),
            attributes.get(conventions.RUN_ID),
            attributes.get(conventions.RUN_PARENT_ID),
            attributes.get(conventions.RUN_TYPE),
            span.start_time or 0,
            end_ns,
            status,
            message,
            _encode(attributes),
            self._service(span.resource),
            self._writer_id,
            not_stored,
        )

    def _live_row(self, state: OpenSpan, end_ns: int | None) -> tuple[Any, ...]:
        """A span still going (``end_ns`` None), or one the process leaves unended."""
        span = state.span
        try:
            attributes = dict(span.attributes or {})  # the run's thread may be adding some
        except (KeyError, RuntimeError):
            attributes = {}
        ids = state.ids or self._ids(state)
        if end_ns is None:
            return self._row(span, ids, attributes, None, "unset", "", 0)
        return self._row(span, ids, attributes, end_ns, "error", ABANDONED, state.not_stored)

    def _ended(
        self,
        state: OpenSpan | None,
        span: ReadableSpan,
        spans: list[tuple[Any, ...]],
        events: list[tuple[Any, ...]],
    ) -> None:
        ids = _hex_ids(span) if state is None else (state.ids or self._ids(state))
        status = span.status
        code = status.status_code
        spans.append(
            self._row(
                span,
                ids,
                dict(span.attributes or {}),
                span.end_time or time.time_ns(),
                _STATUS.get(code, "unset"),
                status.description or "",
                0 if state is None else state.not_stored,
            )
        )
        if state is not None and code is not StatusCode.ERROR:
            return  # its custom events came from the bus; an error adds the exception's
        seq = count(1) if state is None else state.seq
        for event in span.events:
            attributes = event.attributes or {}
            if state is None or attributes.get(conventions.EVENT_KIND) != conventions.EVENT_KIND_CUSTOM:
                events.append(
                    (ids[0], ids[1], next(seq), event.name, event.timestamp, _encode(dict(attributes)))
                )
