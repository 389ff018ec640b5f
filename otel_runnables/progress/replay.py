"""``Replayer``: a run's record, as it grows, turned into v2 dictionaries.

Each update hands it what the record holds now (or what is new: repeats are
harmless); it yields each run start, custom event and run end once, in time
order, for the subtree of one run (or every root of a trace), with
``parent_ids`` counted from that run. A run's end comes after its events and
its children's ends; an event or run whose place in the tree is not known yet
waits until it is. A failed run has no end event (as in v2); when the
followed run ends, ``finished`` is set and ``raise_outcome()`` raises what a
failed or lost end means.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from otel_runnables import _event_dicts as event_dicts
from otel_runnables._bridge import ALL_EVENTS, EventFilter
from otel_runnables._errors import RunFailedError, RunLostError
from otel_runnables._sentinel import MISSING
from otel_runnables.progress.facts import FINAL_STATUSES, RecordedEvent, RecordedRun, event_tags, key_text

__all__ = ["Replayer"]

_START, _EVENT, _END = 0, 1, 2  # the order of a start, an event and an end at the same instant


@dataclass
class _Run:
    record: RecordedRun
    started: bool = False
    ended: bool = False
    seen: set[Any] = field(default_factory=set)  # keys of its events already taken
    waiting: list[tuple[int, RecordedEvent]] = field(default_factory=list)  # (arrival, event)
    kept: list[RecordedEvent] = field(default_factory=list)  # with keep_events: every event taken


class Replayer:
    """The v2 events of ``run_id``'s subtree (None: of every root in the trace)."""

    def __init__(
        self, run_id: str | None, event_filter: EventFilter = ALL_EVENTS, *, keep_events: bool = False
    ) -> None:
        self.root = run_id
        self.keep_events = keep_events  # for tree(): what a run tree shows needs every event
        self.filter = event_filter
        self._accepts_all = event_filter == ALL_EVENTS
        self._runs: dict[str, _Run] = {}
        self._early: dict[str, list[RecordedEvent]] = {}  # events of runs not seen yet
        self._arrival = itertools.count()
        self._outcome: RecordedRun | None = None
        self._taken: set[str] = set()
        self.finished = False

    # -- what the record says --------------------------------------------------

    def knows(self, run_id: str) -> bool:
        return run_id in self._runs

    def update(
        self, runs: Iterable[RecordedRun], events: Iterable[RecordedEvent], *, emit: bool = True
    ) -> list[tuple[str, dict[str, Any], int]]:
        """The new v2 events as (id, event, recorded time in ns); none with
        ``emit=False`` (history taken as already seen). An event's id is the same
        in every replay."""
        if self.finished:
            return []
        for record in runs:
            state = self._runs.get(record.run_id)
            if state is None:
                state = self._runs[record.run_id] = _Run(record)
                for event in self._early.pop(record.run_id, ()):
                    self._add_event(state, event)
            elif state.record.status == "running" or record.status in FINAL_STATUSES:
                state.record = _merged(state.record, record)
        for event in events:
            found = self._runs.get(event.run_id)
            if found is None:
                self._early.setdefault(event.run_id, []).append(event)
            else:
                self._add_event(found, event)
        return self._emit(emit)

    def _add_event(self, state: _Run, event: RecordedEvent) -> None:
        if event.key not in state.seen:
            state.seen.add(event.key)
            state.waiting.append((next(self._arrival), event))

    # -- the tree ----------------------------------------------------------------

    def _chain(self, run_id: str) -> list[str] | None:
        """Ancestors of a run in scope, root of the scope first; None when the run
        is outside the scope or its place is not known yet."""
        chain: list[str] = []
        current = self._runs[run_id].record
        while True:
            if current.run_id == self.root:
                chain.reverse()
                return chain
            parent = current.parent_run_id
            if parent is None:
                if self.root is None:
                    chain.reverse()
                    return chain
                return None  # another root: not in this subtree
            found = self._runs.get(parent)
            if found is None:
                return None  # its parent has not been seen yet
            chain.append(parent)
            current = found.record
            if len(chain) > 100_000:  # a cycle in a malformed record
                return None

    def _emit(self, emit: bool) -> list[tuple[str, dict[str, Any], int]]:
        steps: list[tuple[int, int, int, int, str, Any]] = []
        chains: dict[str, list[str]] = {}
        for run_id, state in self._runs.items():
            if state.ended:
                continue
            chain = self._chain(run_id)
            if chain is None:
                continue
            chains[run_id] = chain
            record, depth = state.record, len(chain)
            if not state.started:
                steps.append((record.start_ns, _START, depth, next(self._arrival), run_id, None))
            for arrival, event in state.waiting:
                steps.append((event.time_ns, _EVENT, 0, arrival, run_id, event))
            state.waiting = []
            if record.status in FINAL_STATUSES:
                end_ns = record.end_ns if record.end_ns is not None else record.start_ns
                steps.append((end_ns, _END, -depth, next(self._arrival), run_id, None))
        steps.sort(key=lambda step: step[:4])
        produced: list[tuple[str, dict[str, Any], int]] = []
        for time_ns, phase, _, _, run_id, event in steps:
            state = self._runs[run_id]
            chain = chains[run_id]
            made: dict[str, Any] | None
            if phase == _START:
                state.started = True
                made, made_id = self._run_event("start", state.record, chain), f"{run_id}/start"
            elif phase == _EVENT:
                if self.keep_events:
                    state.kept.append(event)
                made, made_id = (
                    self._custom_event(state.record, event, chain),
                    f"{run_id}/{key_text(event.key)}",
                )
            else:
                state.ended = True
                made = self._run_event("end", state.record, chain) if state.record.status == "ok" else None
                made_id = f"{run_id}/end"
            self._taken.add(made_id)
            if emit and made is not None:
                produced.append((made_id, made, time_ns))
            if phase == _END and self._ends_the_follow(state.record):
                break
        return produced

    def _ends_the_follow(self, record: RecordedRun) -> bool:
        if self.root is not None:
            if record.run_id != self.root:
                return False
            self._outcome = record
            self.finished = True
            return True
        if record.parent_run_id is not None:
            return False
        if record.status != "ok" and self._outcome is None:
            self._outcome = record  # the first root that failed
        roots = [state for state in self._runs.values() if state.record.parent_run_id is None]
        if all(state.ended for state in roots):
            self.finished = True
            if self._outcome is None:
                self._outcome = record
            return True
        return False

    @property
    def taken_count(self) -> int:
        """How many events were taken so far: it grows while the record does."""
        return len(self._taken)

    def taken_ids(self) -> set[str]:
        """The ids of every event taken so far, yielded or not (filtered, or history skipped)."""
        return set(self._taken)

    def status_of_root(self) -> str | None:
        """The followed run's status in the record (for a trace: ``running`` until
        every root has ended), or None while the record does not know it."""
        if self.root is not None:
            state = self._runs.get(self.root)
            return None if state is None else state.record.status
        if not self._runs:
            return None
        if not self.finished:
            return "running"
        return "ok" if self._outcome is None else self._outcome.status

    def runs_in_scope(self) -> list[tuple[RecordedRun, list[RecordedEvent]]]:
        """Each run taken so far (started), with its events (``keep_events``), in start order."""
        found = [(state.record, state.kept) for state in self._runs.values() if state.started]
        return sorted(found, key=lambda pair: (pair[0].start_ns, pair[0].run_id))

    def raise_outcome(self) -> None:
        """Raise ``RunFailedError`` / ``RunLostError`` when the followed run ended so."""
        record = self._outcome
        if record is None or record.status == "ok":
            return
        if record.status == "lost":
            raise RunLostError(record.run_id, record.status_message)
        error_type, sep, message = record.status_message.partition(": ")
        if not sep or " " in error_type:
            error_type, message = "", record.status_message
        raise RunFailedError(record.run_id, error_type, message)

    # -- dictionaries --------------------------------------------------------------

    def _run_event(self, kind: str, record: RecordedRun, chain: list[str]) -> dict[str, Any] | None:
        if not (self._accepts_all or self.filter.accepts(record.name, record.run_type, record.tags)):
            return None
        if kind == "start":
            data = event_dicts.start_data(record.inputs)
        else:
            data = event_dicts.end_data(record.outputs, MISSING, record.inputs)
        metadata = dict(record.metadata)
        return event_dicts.run_event(
            kind, record.run_type, record.name, record.run_id, record.tags, metadata, list(chain), data
        )

    def _custom_event(
        self, record: RecordedRun, event: RecordedEvent, chain: list[str]
    ) -> dict[str, Any] | None:
        tags = event_tags(record.tags)
        if not (self._accepts_all or self.filter.accepts(event.name, event.name, tags)):
            return None
        return event_dicts.custom_event(
            event.name, record.run_id, tags, dict(record.metadata), event.data, list(chain)
        )


def _merged(known: RecordedRun, newer: RecordedRun) -> RecordedRun:
    """The newer record, keeping what only the earlier one held: a pending span's
    input, and the start (a run's end heard on the bus carries the time it was
    heard, not when the run started)."""
    start_ns = min(known.start_ns, newer.start_ns)
    inputs = known.inputs if newer.inputs is MISSING else newer.inputs
    if start_ns == newer.start_ns and inputs is newer.inputs:
        return newer
    return replace(newer, start_ns=start_ns, inputs=inputs)
