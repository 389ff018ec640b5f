"""``LocalStoreSpanProcessor``: spans into the embedded store while they are live.

The caller's thread only snapshots the span and appends it to a bounded
queue; one writer thread commits the queue in batches every
``flush_interval`` (50 ms), so a run shows as running, with its custom events,
within that delay. Span starts, custom events (heard at once through
``liveness.add_event_listener``, or from event-mirror spans) and span ends are
separate rows; a custom event seen twice is stored once.

Past ``max_queue_size`` items the newest are dropped and counted exactly
(``dropped``), logged once when it first happens and summarised at shutdown.
A database error loses that batch (counted, logged once) and the writer goes
on. At shutdown, spans this process started and never ended are marked ended
with an error, so nothing stays "running" forever.

Retention: traces whose last span started more than ``max_age`` seconds ago
are deleted, then the oldest traces until the live data fits ``max_bytes``;
checked when the writer starts and every ``retention_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Span as ApiSpan
from opentelemetry.trace import StatusCode

from otel_runnables import conventions, liveness
from otel_runnables.store.retention import RetentionPolicy, apply_retention
from otel_runnables.store.schema import connect_writer

__all__ = ["DEFAULT_MAX_QUEUE_SIZE", "LocalStoreSpanProcessor"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE_SIZE = 20_000
_SKIPPED_ON_START = (conventions.SPAN_TYPE_PENDING, conventions.SPAN_TYPE_EVENT)
_STATUS = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}
_ABANDONED = "process exited before the run ended"


def _has_custom(events: list[tuple[Any, ...]]) -> bool:
    custom = conventions.EVENT_KIND_CUSTOM
    return any((event[4] or {}).get(conventions.EVENT_KIND) == custom for event in events)


def _hex_trace(value: int) -> str:
    return f"{value:032x}"


def _hex_span(value: int) -> str:
    return f"{value:016x}"


def _json(attributes: Mapping[str, Any] | None) -> str:
    if not attributes:
        return "{}"
    return json.dumps(
        {key: list(value) if isinstance(value, tuple) else value for key, value in attributes.items()},
        ensure_ascii=False,
        default=str,
    )


class LocalStoreSpanProcessor(SpanProcessor):
    """Writes spans and custom events to the SQLite file at ``path``, off the caller's thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        flush_interval: float = 0.05,
        retention: RetentionPolicy | None = None,
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size!r}")
        self.path = Path(path)
        self.max_queue_size = max_queue_size
        self.flush_interval = flush_interval
        self.retention = retention if retention is not None else RetentionPolicy.from_settings()
        self.dropped = 0  # items the full queue could not take
        self.lost = 0  # items a database error kept out of the file
        self._queue: deque[tuple[Any, ...]] = deque()
        self._open: set[tuple[int, int]] = set()  # (trace id, span id) started here, not yet ended
        self._enqueued = 0
        self._written = 0
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._warned_drop = False
        self._warned_error = False
        liveness.add_event_listener(self.on_custom_event)
        _processors.add(self)

    @property
    def accepted(self) -> int:
        """Items (span starts, ends, events) the queue took; with ``dropped``, all it was offered."""
        return self._enqueued

    @property
    def written(self) -> int:
        """Items the writer has handled (committed, or counted in ``lost``)."""
        return self._written

    # -- the caller's side: snapshot, enqueue, never wait ------------------------

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            return
        if len(self._queue) >= self.max_queue_size:
            self.dropped += 1
            if not self._warned_drop:
                self._warned_drop = True
                logger.warning(
                    "the local trace store's queue is full (%d items); dropping spans (counted, "
                    "summarised at shutdown)",
                    self.max_queue_size,
                )
            return
        self._queue.append(item)
        self._enqueued += 1
        if self._thread is None or self._pid != os.getpid():
            self._start_writer()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = span.attributes or {}
        if attributes.get(conventions.SPAN_TYPE) in _SKIPPED_ON_START:
            return
        context = span.get_span_context()
        self._open.add((context.trace_id, context.span_id))
        self._put(("start", self._row(span, attributes, None)))

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        span_type = attributes.get(conventions.SPAN_TYPE)
        context = span.context
        if context is None or span_type == conventions.SPAN_TYPE_PENDING:
            return
        if span_type == conventions.SPAN_TYPE_EVENT:
            parent = span.parent
            if parent is not None:
                event_attributes = {
                    key: value for key, value in attributes.items() if key not in conventions.LIVENESS_KEYS
                }
                name = attributes.get(conventions.EVENT_NAME)
                self._put(
                    (
                        "event",
                        _hex_trace(context.trace_id),
                        _hex_span(parent.span_id),
                        name if isinstance(name, str) else span.name,
                        span.start_time or 0,
                        event_attributes,
                    )
                )
            return
        self._open.discard((context.trace_id, context.span_id))
        events = [
            (
                _hex_trace(context.trace_id),
                _hex_span(context.span_id),
                event.name,
                event.timestamp,
                event.attributes,
            )
            for event in span.events
        ]
        self._put(("end", self._row(span, attributes, span), events))

    def on_custom_event(self, span: ApiSpan, name: str, time_ns: int, attributes: Mapping[str, Any]) -> None:
        """A custom event on a live run span this processor saw start."""
        context = span.get_span_context()
        if (context.trace_id, context.span_id) in self._open:
            self._put(
                (
                    "event",
                    _hex_trace(context.trace_id),
                    _hex_span(context.span_id),
                    name,
                    time_ns,
                    attributes,
                )
            )

    def _row(
        self, span: ReadableSpan, attributes: Mapping[str, Any], ended: ReadableSpan | None
    ) -> tuple[Any, ...]:
        context = span.get_span_context()
        assert context is not None  # callers pass started spans only
        parent = span.parent
        resource = span.resource.attributes if span.resource is not None else {}
        status, message = "unset", ""
        if ended is not None:
            status = _STATUS.get(ended.status.status_code, "unset")
            message = ended.status.description or ""
        span_type = attributes.get(conventions.SPAN_TYPE)
        return (
            _hex_trace(context.trace_id),
            _hex_span(context.span_id),
            None if parent is None else _hex_span(parent.span_id),
            span.name,
            span_type,
            attributes.get(conventions.RUN_ID),
            attributes.get(conventions.RUN_PARENT_ID),
            attributes.get(conventions.RUN_TYPE),
            span.start_time or time.time_ns(),
            None if ended is None else (ended.end_time or time.time_ns()),
            status,
            message,
            attributes if ended is not None else dict(attributes),  # a live span's may still change
            resource.get("service.name"),
            os.getpid(),
        )

    # -- the writer thread ------------------------------------------------------

    def _start_writer(self) -> None:
        with self._done:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="otel_runnables-store", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        next_retention = 0.0
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            batch = self._take()
            if connection is None and (batch or self._closed):
                connection = self._connect()  # tried again with the next batch
            if batch:
                if connection is not None:
                    self._write(connection, batch)
                else:
                    self.lost += len(batch)  # counted, never silently gone
            if connection is not None and time.monotonic() >= next_retention:
                next_retention = time.monotonic() + self.retention.interval
                try:
                    apply_retention(connection, self.retention)
                except sqlite3.Error:
                    logger.warning("local trace store: retention failed this time", exc_info=True)
            with self._done:
                self._written += len(batch)
                self._done.notify_all()
                if self._closed and not self._queue:
                    if connection is not None:
                        connection.close()
                    return

    def _connect(self) -> sqlite3.Connection | None:
        try:
            return connect_writer(self.path)
        except Exception:
            if not self._warned_error:
                self._warned_error = True
                logger.exception("the local trace store %s cannot be opened; spans are not stored", self.path)
            return None

    def _take(self) -> list[tuple[Any, ...]]:
        batch = []
        queue = self._queue
        while queue:
            batch.append(queue.popleft())
        return batch

    def _write(self, connection: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        # a span that ended within this batch is written once, with all its events:
        # its start row and the events heard live would only be overwritten
        ended = {(item[1][0], item[1][1]) for item in batch if item[0] == "end"}
        # ... unless its span holds no custom events (sent as log records only)
        carried = {(item[1][0], item[1][1]) for item in batch if item[0] == "end" and _has_custom(item[2])}
        # JSON is encoded here, off the caller's thread
        starts = [
            (*item[1][:12], _json(item[1][12]), *item[1][13:])
            for item in batch
            if item[0] == "start" and (item[1][0], item[1][1]) not in ended
        ]
        ends = [(*item[1][:12], _json(item[1][12]), *item[1][13:]) for item in batch if item[0] == "end"]
        events = [
            (*item[1:5], _json(item[5]))
            for item in batch
            if item[0] == "event" and (item[1], item[2]) not in carried
        ]
        events += [(*event[:4], _json(event[4])) for item in batch if item[0] == "end" for event in item[2]]
        abandoned = [(item[3], _ABANDONED, item[1], item[2]) for item in batch if item[0] == "abandon"]
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_span_id, name, span_type, run_id, "
                "parent_run_id, run_type, start_ns, end_ns, status, status_message, attributes, "
                "service_name, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                starts,
            )
            connection.executemany(
                "INSERT INTO spans (trace_id, span_id, parent_span_id, name, span_type, run_id, "
                "parent_run_id, run_type, start_ns, end_ns, status, status_message, attributes, "
                "service_name, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (trace_id, span_id) DO UPDATE SET end_ns = excluded.end_ns, "
                "status = excluded.status, status_message = excluded.status_message, "
                "attributes = excluded.attributes, name = excluded.name",
                ends,
            )
            connection.executemany(
                "INSERT OR IGNORE INTO events (trace_id, span_id, name, time_ns, attributes) "
                "VALUES (?,?,?,?,?)",
                events,
            )
            connection.executemany(
                "UPDATE spans SET end_ns = ?, status = 'error', status_message = ? "
                "WHERE trace_id = ? AND span_id = ? AND end_ns IS NULL",
                abandoned,
            )
            connection.execute("COMMIT")
        except sqlite3.Error:
            self.lost += len(batch)
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            if not self._warned_error:
                self._warned_error = True
                logger.exception("local trace store %s: a write failed; %d items lost", self.path, len(batch))

    def _reset_after_fork(self) -> None:
        # the parent writes what it queued; the child starts empty, with fresh locks
        self._queue.clear()
        self._open.clear()
        self._enqueued = self._written = 0
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._thread = None
        self._pid = os.getpid()

    # -- flush and shutdown -------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """True once everything queued before the call is committed (or counted as lost)."""
        target = self._enqueued
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout_millis / 1000
        self._wake.set()
        with self._done:
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._written >= target
                self._wake.set()
                self._done.wait(min(remaining, 0.05))
        return True

    def shutdown(self) -> None:
        if self._closed:
            return
        liveness.remove_event_listener(self.on_custom_event)
        now = time.time_ns()
        for trace_id, span_id in list(self._open):
            # started here and never ended: the process is going away without it
            self._queue.append(("abandon", _hex_trace(trace_id), _hex_span(span_id), now))
            self._enqueued += 1
        self._open.clear()
        self._closed = True
        if self._thread is None and any(item[0] == "abandon" for item in self._queue):
            self._start_writer()
        if self._thread is not None:
            self._wake.set()
            self._thread.join(timeout=10)
        if self.dropped or self.lost:
            logger.warning(
                "local trace store %s: %d spans/events dropped (queue full), %d lost (write errors)",
                self.path,
                self.dropped,
                self.lost,
            )


_processors: weakref.WeakSet[LocalStoreSpanProcessor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for processor in list(_processors):
        processor._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
