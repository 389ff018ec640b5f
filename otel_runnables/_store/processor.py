"""``LocalStoreSpanProcessor``: spans and custom events into the embedded store while runs are live.

The caller's thread only appends a small tuple to a queue: a span's start, a
custom event (heard on the run bus as it is dispatched, so the SDK's cap on a
span's events does not apply), a span's end. One writer thread
(``writer.py``) commits the queue in batches every ``flush_interval`` (50 ms),
so a run shows as running, with its events, within that delay.

What is kept, and what shows when something is not:

- Every custom event of a run, numbered 1, 2, 3… within it, up to
  ``max_events_per_run``; past it, the latest event of each name (for up to
  16 names), so progress stays current. The run's row counts the events not
  kept (``events_not_stored``), and every reader shows that count.
- Past ``max_queue_size`` queued items, new starts and events are dropped
  (counted per run and in ``dropped``); ends have the room of a second queue,
  then wait in a list of ``5 * max_queue_size`` (a stalled writer only: past
  it they too are dropped, counted in ``dropped`` and logged once; such a run
  shows as ``lost`` once this process's writer stops). At shutdown, every run
  this process started and did not end is ended in the store as an error.
- ``accepted`` (all it was handed) = ``written`` + ``dropped`` + ``lost``
  (a write failed) once the queue is empty: logged at shutdown.

Processes: after ``os.fork()`` the child starts its own writer (the parent's
queue is the parent's to write); a ``multiprocessing`` worker writes its
queue before it exits (``_worker_exit``). Each writer keeps a heartbeat in
the store, so readers can show the runs of a process that died as ``lost``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import AttributeValue

from otel_runnables import _bridge as bridge
from otel_runnables import _conventions as conventions
from otel_runnables import _settings
from otel_runnables._store.retention import RetentionPolicy
from otel_runnables._store.rows import ABANDON, END, EVENT, START, TAIL, OpenSpan, SpanRowValues
from otel_runnables._store.writer import StoreWriter
from otel_runnables._worker_exit import at_worker_exit

__all__ = ["DEFAULT_MAX_QUEUE_SIZE", "LocalStoreSpanProcessor", "StoreCounts"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE_SIZE = 20_000
TAIL_NAMES = 16  # past the bound, the latest event is kept for this many names per run
_LIVENESS_SPANS: frozenset[object] = frozenset({conventions.SPAN_TYPE_PENDING, conventions.SPAN_TYPE_EVENT})
_SHUTDOWN_TIMEOUT = 10.0
_DEFERRED_ENDS = 5  # ends kept while the writer is stalled, in queue sizes


class StoreCounts(NamedTuple):
    """What a store processor was handed, and what became of it."""

    accepted: int  # span starts, custom events and span ends handed to the store
    written: int
    dropped: int  # a bound said no: a full queue, or past the per-run event bound
    lost: int  # a failure kept them out of the file
    queued: int  # not written yet


class LocalStoreSpanProcessor(SpanProcessor):
    """Writes spans and custom events to the SQLite file at ``path``, off the caller's thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        flush_interval: float = 0.05,
        retention: RetentionPolicy | None = None,
        max_events_per_run: int | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size!r}")
        if max_events_per_run is not None and max_events_per_run < 1:
            raise ValueError(f"max_events_per_run must be >= 1, got {max_events_per_run!r}")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval!r}")
        self.path = Path(path)
        self.max_queue_size = max_queue_size
        self.flush_interval = flush_interval
        self.retention = retention if retention is not None else RetentionPolicy.from_settings()
        self.max_events_per_run = max_events_per_run or _settings.STORE_MAX_EVENTS_PER_RUN.value
        self.heartbeat_interval = max(0.1, heartbeat_interval or _settings.STORE_HEARTBEAT.value)
        self.dropped = 0
        self._ends_room = 2 * max_queue_size
        self._open: dict[int, OpenSpan] = {}  # by span id
        self._queue: deque[tuple[Any, ...]] = deque()
        self._deferred: deque[tuple[OpenSpan | None, SpanRowValues]] = deque()  # ends waiting for room
        self._writer = self._new_writer()
        self._count_lock = threading.Lock()  # the rare paths only: drops, past the bound
        self._flushed_at = (0, 0)  # (dropped, lost) when force_flush last answered
        self._forked_at = 0  # ns: spans started before this are a parent process's
        self._closed = False
        self._warned_drop = False
        self._warned_stall = False
        self._warned_end_drop = False
        self._listener = bridge.RunListener(event=self._on_event)
        bridge.add_listener(self._listener)
        _processors.add(self)
        at_worker_exit(self.shutdown)

    def _new_writer(self) -> StoreWriter:
        return StoreWriter(
            self.path,
            self._queue,
            flush_interval=self.flush_interval,
            beat_interval=self.heartbeat_interval,
            retention=self.retention,
            has_open_spans=lambda: bool(self._open or self._deferred),
        )

    # -- counters ---------------------------------------------------------------------------

    @property
    def written(self) -> int:
        return self._writer.written

    @property
    def lost(self) -> int:
        return self._writer.lost

    @property
    def accepted(self) -> int:
        return self._writer.pulled + len(self._queue) + len(self._deferred) + self.dropped

    def counts(self) -> StoreCounts:
        writer = self._writer
        queued = len(self._queue) + len(self._deferred) + writer.pulled - writer.done
        return StoreCounts(self.accepted, writer.written, self.dropped, writer.lost, queued)

    @property
    def longest_batch(self) -> float:
        """Seconds: the writer's longest write of one batch (with its retention step)."""
        return self._writer.longest_batch

    @property
    def writer_cpu_seconds(self) -> float:
        """CPU seconds the writer thread has spent writing and deleting (a
        machine's load does not change it as it changes wall-clock time)."""
        return self._writer.cpu_seconds

    @property
    def retention_largest_step(self) -> int:
        """Rows deleted by the largest retention step so far."""
        return self._writer.retention.largest_step

    @property
    def retention_longest_step(self) -> float:
        """Seconds: the longest retention step so far (one transaction)."""
        return self._writer.retention.longest_step

    # -- the caller's side: a tuple on the queue, never a wait ---------------------------------

    def _drop(self, state: OpenSpan | None) -> None:
        with self._count_lock:
            self.dropped += 1
            if state is not None:
                state.not_stored += 1
        if not self._warned_drop:
            self._warned_drop = True
            logger.warning(
                "the local trace store's queue is full (%d items); dropping run starts and events "
                "(counted per run, summarised at shutdown)",
                self.max_queue_size,
            )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._closed or span.attributes.get(conventions.SPAN_TYPE) in _LIVENESS_SPANS:  # type: ignore[union-attr]
            return
        context = span.context
        state = OpenSpan(span, context)
        self._open[context.span_id] = state
        queue = self._queue
        if len(queue) < self.max_queue_size:
            queue.append((START, state))
            if self._writer.idle:
                self._writer.wake()
        else:
            self._drop(None)

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed or span.attributes.get(conventions.SPAN_TYPE) in _LIVENESS_SPANS:  # type: ignore[union-attr]
            return
        state = self._open.pop(span.context.span_id, None)
        if state is None and (span.start_time or 0) < self._forked_at:
            return  # a span of the parent process, ended in this forked child: the parent's to write
        ended = SpanRowValues.of(span, seen_starting=state is not None)
        if state is not None:
            state.ended_span = ended
            state.span = None  # it dies with its run, as it would without the store (see rows.py)
        queue = self._queue
        if len(queue) < self._ends_room:
            self._queue_waiting_tails(state)
            if state is not None:
                state.ended = True
            queue.append((END, state, ended))
            if self._deferred:
                self._requeue_deferred()
            if self._writer.idle:
                self._writer.wake()
        else:
            self._defer(state, ended)

    def _defer(self, state: OpenSpan | None, span: SpanRowValues) -> None:
        """No room even for an end: the writer is stalled. The end waits here
        (bounded) for room in the queue, or for shutdown."""
        with self._count_lock:
            dropping = len(self._deferred) >= _DEFERRED_ENDS * self.max_queue_size
            if dropping:
                waiting = state.waiting_tails if state is not None else None
                self.dropped += 1 + len(waiting or ())
            else:
                self._deferred.append((state, span))
        if dropping:
            if not self._warned_end_drop:
                self._warned_end_drop = True
                logger.warning(
                    "the local trace store's writer is stalled past %d run ends waiting; dropping run ends "
                    "too (counted; those runs show as lost once this process's writer stops)",
                    len(self._deferred),
                )
            return
        if not self._warned_stall:
            self._warned_stall = True
            logger.warning(
                "the local trace store's writer is stalled (%d items queued); the ends of runs are kept "
                "until it catches up",
                len(self._queue),
            )

    def _requeue_deferred(self) -> None:
        with self._count_lock:
            deferred, queue = self._deferred, self._queue
            while deferred and len(queue) < self._ends_room:
                state, span = deferred.popleft()
                self._queue_waiting_tails_locked(state)
                if state is not None:
                    state.ended = True
                queue.append((END, state, span))

    def _on_event(
        self, run: bridge.RecordedRun, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]
    ) -> None:
        """A custom event, heard on the run bus as it is dispatched."""
        state = self._open.get(run.span.get_span_context().span_id)
        if state is None:
            return
        seq = next(state.seq)
        if seq > self.max_events_per_run:
            self._past_the_bound(state, seq, name, time_ns, attributes)
            return
        queue = self._queue
        if len(queue) < self.max_queue_size:
            queue.append((EVENT, state, seq, name, time_ns, attributes))
            if self._writer.idle:
                self._writer.wake()
        else:
            self._drop(state)

    def _past_the_bound(
        self, state: OpenSpan, seq: int, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]
    ) -> None:
        """Keep the latest event of each name: it replaces the row of the previous one.
        With the queue full, it waits on the run (the one before it of that name
        is dropped) and is queued with the run's end, so progress ends current."""
        with self._count_lock:
            tails = state.tails
            if tails is None:
                tails = state.tails = {}
            if name not in tails and len(tails) >= TAIL_NAMES:
                self.dropped += 1
                state.not_stored += 1
                return
            waiting = state.waiting_tails
            if waiting is not None and waiting.pop(name, None) is not None:
                self.dropped += 1  # a newer event of that name came before room did
                state.not_stored += 1
            if len(self._queue) < self.max_queue_size:
                self._queue_tail(state, seq, name, time_ns, attributes)
                if self._writer.idle:
                    self._writer.wake()
                return
            if waiting is None:
                waiting = state.waiting_tails = {}
            waiting[name] = (seq, name, time_ns, attributes)
            tails.setdefault(name, 0)  # the name has its place among the kept ones

    def _queue_tail(
        self, state: OpenSpan, seq: int, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]
    ) -> None:
        tails = state.tails
        assert tails is not None
        replaced = tails.get(name, 0)
        tails[name] = seq
        if replaced:
            state.not_stored += 1
        self._queue.append((TAIL, state, seq, name, time_ns, attributes, replaced))

    def _queue_waiting_tails(self, state: OpenSpan | None) -> None:
        """A run is ending: its waiting latest events go first (they have an end's room)."""
        if state is not None and state.waiting_tails:
            with self._count_lock:
                self._queue_waiting_tails_locked(state)

    def _queue_waiting_tails_locked(self, state: OpenSpan | None) -> None:
        if state is not None and state.waiting_tails:
            waiting, state.waiting_tails = state.waiting_tails, None
            for item in waiting.values():
                self._queue_tail(state, *item)

    # -- flush and shutdown ------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write everything queued so far. False if the time ran out, or if
        something handed to the store since the last flush was dropped or lost."""
        writer = self._writer
        target = writer.queued_target()
        done = writer.done >= target or writer.wait_for(target, timeout_millis / 1000)
        marks = (self.dropped, writer.lost)
        complete = done and marks == self._flushed_at
        self._flushed_at = marks
        return complete

    def shutdown(self) -> None:
        if self._closed:
            return
        bridge.remove_listener(self._listener)
        now = time.time_ns()
        for state in list(self._open.values()):
            # started here and never ended: the process is going away without it
            self._queue_waiting_tails(state)
            self._queue.append((ABANDON, state, now))
        self._open.clear()
        while self._deferred:
            deferred_state, span = self._deferred.popleft()
            self._queue_waiting_tails(deferred_state)
            self._queue.append((END, deferred_state, span))
        self._closed = True
        writer = self._writer
        writer.stop(_SHUTDOWN_TIMEOUT)
        writer.give_up()
        counts = self.counts()  # ``queued`` now: a batch the writer is still on, past the time it had
        summary = (
            "local trace store %s: %d accepted = %d written + %d dropped (queue full, or past %d events "
            "per run) + %d lost (write errors, or not written in the time shutdown gives)"
        )
        args = (
            self.path,
            counts.accepted,
            counts.written,
            counts.dropped,
            self.max_events_per_run,
            counts.lost + counts.queued,
        )
        if counts.dropped or counts.lost or counts.queued:
            logger.warning(summary, *args)
        else:
            logger.info(summary, *args)

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's queue and open spans are the parent's;
        a writer of its own (thread, connection, locks) starts with its first item."""
        self._queue = deque()
        self._deferred = deque()
        self._open = {}
        self._writer = self._new_writer()
        self._count_lock = threading.Lock()
        self.dropped = 0
        self._flushed_at = (0, 0)
        self._forked_at = time.time_ns()


_processors: weakref.WeakSet[LocalStoreSpanProcessor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for processor in list(_processors):
        processor._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
