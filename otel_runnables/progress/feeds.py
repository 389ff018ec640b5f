"""Where a follower's facts come from: batches of runs and custom events.

- ``StorePoller`` (``store_poller``): one thread per store file per process
  tails it for every follower (``store.tail``: rows newer than a cursor,
  nothing read twice); a new follower gets the trace's history from the same
  snapshot, then the increments.
- ``RemoteFeed``: a thread that reads the trace from Jaeger or Tempo every
  ``interval`` (their APIs have no "since"), waiting out search lag.
- ``BusFeed``: a run live in this process, whose store this process writes:
  the history from the store, then the bus (no polling).

Each hands its follower ``Batch`` items through an inbox; the follower's
``Replayer`` takes repeats in its stride, so a source may always resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from otel_runnables import _bridge as bridge
from otel_runnables._errors import RunNotFoundError
from otel_runnables._event_log import END, EventLog, LogReader
from otel_runnables._sentinel import MISSING
from otel_runnables._store.tail import StoreTail
from otel_runnables.progress.backend import Backend, BackendError, TraceNotFoundError
from otel_runnables.progress.facts import (
    facts_from_entry,
    facts_from_spans,
)
from otel_runnables.progress.records import EventRecord, SpanRecord

__all__ = ["BATCH", "ERROR", "HISTORY", "BusFeed", "Feed", "InboxFeed", "RemoteFeed", "Target"]

logger = logging.getLogger(__name__)

BATCH = "batch"  # (BATCH, runs, events, True): what the record added
HISTORY = "history"  # (HISTORY, runs, events, emit): all of it so far; emit False: taken as seen
ERROR = "error"  # (ERROR, exception, None, None): the follow cannot go on

INBOX_LIMIT = 10_000  # batches waiting for a follower; past it, it re-reads the record instead
_REMOTE_FAILURES = 3  # consecutive failed polls of Jaeger/Tempo before the follow gives up


@dataclass(frozen=True)
class Target:
    """What is followed: a run (its subtree) or a trace (all its roots)."""

    run_id: str | None
    trace_id: str | None

    def describe(self) -> str:
        return f"run {self.run_id}" if self.run_id is not None else f"trace {self.trace_id}"


class Feed(Protocol):
    """A follower's source of items; ``None`` from ``next`` means the wait timed out."""

    @property
    def dropped(self) -> int: ...

    def next_sync(self, timeout: float | None) -> tuple[Any, ...] | None: ...

    async def next(self, timeout: float | None) -> tuple[Any, ...] | None: ...

    def close(self) -> None: ...


class InboxFeed:
    """Items a source thread puts in a bounded inbox. A follower that falls
    more than ``INBOX_LIMIT`` batches behind skips them (counted in
    ``dropped``) and asks the source to send the history again instead."""

    def __init__(self) -> None:
        self.inbox = EventLog(None, ends_with_root=True, shared=False)
        self._reader = LogReader(self.inbox, INBOX_LIMIT)
        self._seen_skips = 0
        self._resyncing = False
        self.resync_wanted = threading.Event()
        self.closed = threading.Event()
        self.attached = threading.Event()  # set with the first batch: the history

    @property
    def dropped(self) -> int:
        return self._reader.dropped

    def put(self, item: tuple[Any, ...]) -> None:
        self.inbox.append(item)
        self.attached.set()

    def fail(self, error: BaseException) -> None:
        self.inbox.append((ERROR, error, None, None))
        self.inbox.close()

    def _checked(self, item: Any) -> tuple[Any, ...] | None:
        if self._reader.skipped != self._seen_skips:
            # batches were skipped: those after them would be news without their past, so
            # everything until the history is sent again is dropped, and that history read
            self._seen_skips = self._reader.skipped
            self._resyncing = True
            self.resync_wanted.set()
        if item is END:
            return (ERROR, RuntimeError("the feed ended before the run did"), None, None)
        if item is MISSING:
            return None
        if self._resyncing:
            if item[0] == BATCH:
                return (BATCH, [], [], True)  # superseded by the history on its way
            if item[0] == HISTORY:
                self._resyncing = False
        return item  # type: ignore[no-any-return]

    def next_sync(self, timeout: float | None) -> tuple[Any, ...] | None:
        return self._checked(self._reader.get_sync(timeout))

    async def next(self, timeout: float | None) -> tuple[Any, ...] | None:
        try:
            item = await asyncio.wait_for(self._reader.get(), timeout)
        except asyncio.TimeoutError:
            return None
        return self._checked(item)

    def close(self) -> None:
        self.closed.set()
        self.inbox.close()


def history_batch(
    spans: Sequence[SpanRecord], events: Sequence[tuple[str, str, EventRecord]], emit: bool
) -> tuple[Any, ...]:
    """A trace read whole from the store (span rows, event rows), as one batch."""
    by_span: dict[str, list[EventRecord]] = {}
    for _, span_id, event in events:
        by_span.setdefault(span_id, []).append(event)
    records = [replace(span, events=tuple(by_span.get(span.span_id, ()))) for span in spans]
    runs, found = facts_from_spans(records)
    return (HISTORY, runs, found, emit)


# -- Jaeger and Tempo ----------------------------------------------------------------------


class RemoteFeed(InboxFeed):
    """Reads the whole trace from a query backend every ``interval`` seconds.

    It never reports a run ``lost``: the store knows each run's writing process
    and sees it gone, but Jaeger and Tempo hold spans only, and a run whose
    process was killed sends none more — as a living run that dispatches no
    events sends none (liveness spans come at its start and with its events).
    Any rule on span silence would call quiet runs dead; the follower's
    ``timeout`` (``FollowTimeoutError``) is the end such a follow gets."""

    def __init__(
        self, backend: Backend, target: Target, *, wait: float, interval: float, emit_history: bool
    ) -> None:
        super().__init__()
        self.backend = backend
        self.target = target
        self.wait = wait
        self.interval = interval
        self.emit_history = emit_history
        self._thread = threading.Thread(target=self._run, name="otel_runnables-follow-remote", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            trace_id = self._locate()
            if trace_id is None:
                return
            emit = self.emit_history
            failures = 0
            while not self.closed.is_set():
                try:
                    records = self.backend.trace(trace_id)
                    failures = 0
                except TraceNotFoundError:
                    records = []  # between the search and the trace: not readable yet
                except BackendError:
                    failures += 1
                    if failures >= _REMOTE_FAILURES:
                        raise
                    records = []
                if records:
                    runs, events = facts_from_spans(records)
                    self.put((HISTORY, runs, events, emit))  # each read is the whole trace
                    emit = True
                if self.closed.wait(self.interval):
                    return
        except BaseException as exc:
            self.fail(exc)

    def _locate(self) -> str | None:
        """The trace id, waiting up to ``wait`` seconds for a search to find it."""
        deadline = time.monotonic() + self.wait
        failures = 0
        while not self.closed.is_set():
            try:
                if self.target.run_id is not None:
                    found = self.backend.trace_id_of_run(self.target.run_id)
                else:
                    assert self.target.trace_id is not None
                    self.backend.trace(self.target.trace_id)
                    found = self.target.trace_id
                failures = 0
            except TraceNotFoundError:
                found = None
            except BackendError:
                failures += 1
                if failures >= _REMOTE_FAILURES or time.monotonic() >= deadline:
                    raise
                found = None
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise RunNotFoundError(
                    f"no {self.target.describe()} in {self.backend.name} after waiting {self.wait:g} s"
                )
            if self.closed.wait(min(self.interval, max(0.0, deadline - time.monotonic()))):
                return None
        return None


# -- a run live in this process ----------------------------------------------------------------


class BusFeed:
    """History from the store this process writes, then the run bus itself."""

    def __init__(
        self,
        subscription: bridge.Subscription,
        store: Path,
        flush: Any,
        target: Target,
        emit_history: bool,
    ) -> None:
        self.subscription = subscription
        self.store = store
        self.flush = flush  # the store processor's force_flush
        self.target = target
        self.emit_history = emit_history
        self._history_sent = False
        self._seen_drops = 0

    @property
    def dropped(self) -> int:
        return self.subscription.dropped

    def _history(self) -> tuple[Any, ...]:
        self.flush()
        return read_history(self.store, self.target, self.emit_history)

    def _from_entry(self, entry: Any) -> tuple[Any, ...]:
        if entry is END:
            return (ERROR, RuntimeError("the run's bus closed before its end"), None, None)
        runs, events = facts_from_entry(entry, time.time_ns())
        return (BATCH, runs, events, True)

    def _pending_resync(self) -> bool:
        dropped = self.subscription.dropped
        if dropped != self._seen_drops:
            self._seen_drops = dropped
            return True
        return not self._history_sent

    def next_sync(self, timeout: float | None) -> tuple[Any, ...] | None:
        if self._pending_resync():
            self._history_sent = True
            batch = self._history()
            self.emit_history = True
            return batch
        reader = self.subscription.reader
        if reader is None:
            return (ERROR, RuntimeError("the follow was closed"), None, None)
        entry = reader.get_sync(timeout)
        return None if entry is MISSING else self._from_entry(entry)

    async def next(self, timeout: float | None) -> tuple[Any, ...] | None:
        if self._pending_resync():
            self._history_sent = True
            batch = await asyncio.to_thread(self._history)
            self.emit_history = True
            return batch
        reader = self.subscription.reader
        if reader is None:
            return (ERROR, RuntimeError("the follow was closed"), None, None)
        try:
            entry = await asyncio.wait_for(reader.get(), timeout)
        except asyncio.TimeoutError:
            return None
        return self._from_entry(entry)

    def close(self) -> None:
        bridge.unsubscribe(self.subscription)


def this_process_store() -> tuple[Path, Callable[[], bool]] | None:
    """The store file this process writes and its writer's flush, or None (store off)."""
    from otel_runnables._store.processor import _processors

    for processor in list(_processors):
        if not processor._closed:
            return processor.path, processor.force_flush
    return None


def store_writer(path: Path) -> Callable[[], bool] | None:
    """The flush of this process's store writer of ``path``, or None (not written here)."""
    from otel_runnables._store.processor import _processors

    resolved = path.resolve()
    for processor in list(_processors):
        if not processor._closed and processor.path.resolve() == resolved:
            return processor.force_flush
    return None


def read_history(store: Path, target: Target, emit: bool) -> tuple[Any, ...]:
    """The record of a run's trace as one batch (empty when it holds none): once
    the writer is flushed, everything the run did until then is in it."""
    tail = StoreTail(store)
    try:
        if not tail.open():
            return (HISTORY, [], [], emit)
        with tail.snapshot() as connection:
            trace_id = target.trace_id
            if target.run_id is not None:
                trace_id = tail.trace_of_run(connection, target.run_id)
            if trace_id is None:
                return (HISTORY, [], [], emit)
            spans, events = tail.trace(connection, trace_id)
    finally:
        tail.close()
    return history_batch(spans, events, emit)


def live_here(target: Target) -> bool:
    """Whether the followed run (or a run of the followed trace) is live in this process."""
    if target.run_id is not None:
        return bridge.live_run(uuid.UUID(target.run_id)) is not None
    assert target.trace_id is not None
    return bool(bridge.live_runs_in_trace(int(target.trace_id, 16)))


def close_quietly(feed: Feed) -> None:
    with contextlib.suppress(Exception):
        feed.close()
