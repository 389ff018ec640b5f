"""``StorePoller``: one thread per store file per process tails it for every
follower of it (``store.tail``: rows newer than a cursor, nothing read twice).
A new follower gets the trace's history from the same snapshot as the
others' increments; followers of one trace share what a poll read. Once a
second, the runs read as open are looked at again: a run whose writing
process is gone is reported ``lost``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_runnables._conventions import RUN_ID, SPAN_TYPE, SPAN_TYPE_RUN
from otel_runnables._errors import RunNotFoundError
from otel_runnables._store.tail import StoreTail
from otel_runnables.progress.facts import RecordedEvent, RecordedRun, event_from_record, run_from_span
from otel_runnables.progress.feeds import BATCH, InboxFeed, Target, history_batch
from otel_runnables.progress.records import EventRecord, SpanRecord

__all__ = ["LOST_CHECK_INTERVAL", "STORE_POLL_INTERVAL", "StorePoller"]

STORE_POLL_INTERVAL = 0.02  # seconds between looks at the store file (a look costs one PRAGMA)
LOST_CHECK_INTERVAL = 1.0  # seconds between looks at whether open runs' processes are still there


@dataclass
class _StoreFollower:
    feed: InboxFeed
    target: Target
    deadline: float
    emit_history: bool
    trace_id: str | None = None
    has_history: bool = False


@dataclass
class _TraceState:
    open_spans: set[str] = field(default_factory=set)
    run_of_span: dict[str, str] = field(default_factory=dict)

    def learn(self, span: SpanRecord) -> RecordedRun | None:
        if span.attributes.get(SPAN_TYPE) != SPAN_TYPE_RUN or not isinstance(
            span.attributes.get(RUN_ID), str
        ):
            return None
        run = run_from_span(span)
        self.run_of_span[span.span_id] = run.run_id
        if span.end_ns is None and not span.lost:
            self.open_spans.add(span.span_id)
        else:
            self.open_spans.discard(span.span_id)
        return run


_pollers: dict[Path, StorePoller] = {}
_pollers_lock = threading.Lock()


class StorePoller:
    """Tails one store file for every follower of it in this process."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._followers: list[_StoreFollower] = []
        self._traces: dict[str, _TraceState] = {}
        self._next_lost_check = 0.0
        self._wake = threading.Event()
        self._tail = StoreTail(path)
        self._thread = threading.Thread(target=self._run, name="otel_runnables-follow-store", daemon=True)

    @classmethod
    def join(cls, path: Path, feed: InboxFeed, target: Target, *, wait: float, emit_history: bool) -> None:
        follower = _StoreFollower(feed, target, time.monotonic() + wait, emit_history)
        resolved = path.resolve()
        with _pollers_lock:
            poller = _pollers.get(resolved)
            if poller is None or not poller._thread.is_alive():
                poller = _pollers[resolved] = StorePoller(resolved, STORE_POLL_INTERVAL)
                poller._followers.append(follower)
                poller._thread.start()
            else:
                poller._followers.append(follower)
        poller._wake.set()

    @classmethod
    def active(cls) -> int:
        """Poller threads running (for tests: followers of one file share one)."""
        with _pollers_lock:
            return sum(1 for poller in _pollers.values() if poller._thread.is_alive())

    def _run(self) -> None:
        try:
            while True:
                with _pollers_lock:
                    self._followers = [f for f in self._followers if not f.feed.closed.is_set()]
                    if not self._followers:
                        _pollers.pop(self.path, None)
                        return
                    followers = list(self._followers)
                try:
                    self._tick(followers)
                except Exception as exc:  # the file went away, or cannot be read: every follower hears why
                    for follower in followers:
                        follower.feed.fail(exc)
                    with _pollers_lock:
                        self._followers.clear()
                        _pollers.pop(self.path, None)
                    return
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            self._tail.close()

    def _tick(self, followers: list[_StoreFollower]) -> None:
        tail = self._tail
        tail.check_file()
        for follower in followers:
            if follower.feed.resync_wanted.is_set():
                follower.feed.resync_wanted.clear()
                follower.has_history = False
        unsettled = [f for f in followers if not f.has_history]
        if not tail.open():
            self._expire(unsettled, "there is no store file yet")
            return
        look_for_lost = self._lost_check_due()
        if not tail.changed() and not unsettled and not look_for_lost:
            return
        with tail.snapshot() as connection:
            resolved: dict[Target, str | None] = {}  # followers of one run look it up once
            for follower in unsettled:
                if follower.trace_id is None:
                    if follower.target not in resolved:
                        resolved[follower.target] = self._resolve(connection, follower.target)
                    follower.trace_id = resolved[follower.target]
            traced = sorted({f.trace_id for f in followers if f.trace_id is not None and f.has_history})
            spans = tail.new_spans(connection, traced)
            events = tail.new_events(connection, traced)
            ended = {
                trace_id: tail.ended_spans(connection, trace_id, self._traces[trace_id].open_spans)
                for trace_id in traced
                if trace_id in self._traces and self._traces[trace_id].open_spans
            }
            if look_for_lost:  # a process that died writes nothing more: its runs are looked at
                for trace_id, seen_ending in ended.items():
                    seen_ending += tail.lost_spans(connection, trace_id, self._traces[trace_id].open_spans)
            histories = {
                trace_id: tail.trace(connection, trace_id)
                for trace_id in {f.trace_id for f in unsettled if f.trace_id is not None}
            }
        updates = self._updates(spans, events, ended)
        batches: dict[tuple[str, bool], tuple[Any, ...]] = {}  # one history batch per trace, shared
        for follower in followers:
            if follower.trace_id is None:
                continue
            if not follower.has_history:
                key = (follower.trace_id, follower.emit_history)
                if key not in batches:
                    history_spans, history_events = histories[follower.trace_id]
                    state = self._traces.setdefault(follower.trace_id, _TraceState())
                    for span in history_spans:
                        state.learn(span)
                    batches[key] = history_batch(history_spans, history_events, follower.emit_history)
                follower.feed.put(batches[key])
                follower.has_history = True
                follower.emit_history = True  # a history sent again (a resync) is news the follower missed
            elif follower.trace_id in updates:
                runs, found = updates[follower.trace_id]
                follower.feed.put((BATCH, runs, found, True))
        self._expire([f for f in unsettled if f.trace_id is None], "")
        live = {f.trace_id for f in followers if f.trace_id is not None}
        for trace_id in list(self._traces):
            if trace_id not in live:
                del self._traces[trace_id]

    def _lost_check_due(self) -> bool:
        """Once a second while runs are open: whether their processes are still there."""
        if not any(state.open_spans for state in self._traces.values()):
            return False
        now = time.monotonic()
        if now < self._next_lost_check:
            return False
        self._next_lost_check = now + LOST_CHECK_INTERVAL
        return True

    def _resolve(self, connection: Any, target: Target) -> str | None:
        if target.run_id is not None:
            return self._tail.trace_of_run(connection, target.run_id)
        assert target.trace_id is not None
        return target.trace_id if self._tail.has_trace(connection, target.trace_id) else None

    def _updates(
        self,
        spans: list[SpanRecord],
        events: list[tuple[str, str, EventRecord]],
        ended: dict[str, list[SpanRecord]],
    ) -> dict[str, tuple[list[RecordedRun], list[RecordedEvent]]]:
        updates: dict[str, tuple[list[RecordedRun], list[RecordedEvent]]] = {}
        for span in [*spans, *(span for found in ended.values() for span in found)]:
            state = self._traces.get(span.trace_id)
            if state is None:
                continue
            run = state.learn(span)
            if run is not None:
                updates.setdefault(span.trace_id, ([], []))[0].append(run)
        for trace_id, span_id, event in events:
            state = self._traces.get(trace_id)
            run_id = None if state is None else state.run_of_span.get(span_id)
            if run_id is None:
                continue
            recorded = event_from_record(run_id, event)
            if recorded is not None:
                updates.setdefault(trace_id, ([], []))[1].append(recorded)
        return updates

    def _expire(self, waiting: list[_StoreFollower], why: str) -> None:
        now = time.monotonic()
        for follower in waiting:
            if follower.trace_id is None and now >= follower.deadline:
                detail = f" ({why})" if why else ""
                follower.feed.fail(
                    RunNotFoundError(f"no {follower.target.describe()} in the store {self.path}{detail}")
                )


def _reset_after_fork() -> None:
    global _pollers_lock
    _pollers.clear()
    _pollers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
