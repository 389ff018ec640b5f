"""Making live runs visible before they end, at a bounded cost per run.

OTLP exports a span only when it ends, so a long run is invisible in Jaeger or
Tempo until it is over. A run still going after a short delay
(``OTEL_RUNNABLES_LIVENESS_AFTER``, 1 s by default; 0 for every run at once)
therefore announces itself through the application's tracer:

- one zero-duration *pending* span: parent = the run's span, named
  ``"<run> (started)"`` so a backend's tree tells it from the run, the run's
  attributes and OpenInference kind, ``otel_runnables.span_type = "pending"``;
- zero-duration *event mirror* spans, at most one per
  ``OTEL_RUNNABLES_LIVENESS_INTERVAL`` (1 s) per run: each carries the latest
  custom event (its data, its name in ``otel_runnables.event.name``, its
  timestamp) and in ``otel_runnables.event.count`` how many events it stands
  for since the previous mirror; named ``"<event> (event)"``, parent = the
  run's span, the run's OpenInference kind, ``otel_runnables.span_type =
  "event"``. Events further apart than the interval each get their own mirror;
  a burst gets one when the interval is up (or none, if the run ends first:
  the run's span then holds the events).

A run's spans are thus bounded: its own, one pending, and about one mirror per
interval it lived, however many events it dispatched (README: the table). Each
has its own span id, so no span id is ever exported twice; the span events on
the run's span stay the source of truth. Short runs, the vast majority, cost
nothing here beyond a dict entry. ``OTEL_RUNNABLES_LIVENESS_SPANS=false`` (or
``configure(liveness_spans=False)``) switches it off.

Liveness hears runs from the run bus (``bridge.add_listener``), as the
embedded store does. When custom events go to logs only
(``OTEL_RUNNABLES_EVENTS=log``), the run's span holds none, so
the latest event of a run not announced yet is kept here for its first mirror.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from otel_runnables import _bridge as bridge
from otel_runnables import _conventions as conventions
from otel_runnables import _settings
from otel_runnables._bridge import RecordedRun as LiveRun
from otel_runnables._event_logs import routing
from otel_runnables._telemetry import get_tracer

__all__ = [
    "LiveRun",
    "announce_now",
    "configure_liveness",
    "liveness_delay",
    "liveness_interval",
]

logger = logging.getLogger(__name__)

_INTERNAL = SpanKind.INTERNAL


def _delay_from_settings() -> float | None:
    """Seconds before a live run is announced; None when liveness spans are off."""
    return _settings.LIVENESS_AFTER.value if _settings.LIVENESS_SPANS.value else None


_delay: float | None = _delay_from_settings()
_interval: float = _settings.LIVENESS_INTERVAL.value


def liveness_delay() -> float | None:
    """The current delay in seconds, or None when liveness spans are off."""
    return _delay


def liveness_interval() -> float:
    """The shortest time in seconds between two event mirrors of one run."""
    return _interval


def _check_seconds(what: str, value: float | None) -> None:
    if value is not None and (
        not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or value == math.inf
    ):
        raise ValueError(f"liveness {what} must be a number of seconds >= 0, got {value!r}")


def configure_liveness(
    enabled: bool | None = True, after: float | None = None, interval: float | None = None
) -> None:
    """Switch liveness spans on or off, set the delay before a run is announced and
    the interval between two event mirrors of a run; None takes the
    ``OTEL_RUNNABLES_LIVENESS_*`` setting."""
    global _delay, _interval
    _check_seconds("delay", after)
    _check_seconds("interval", interval)
    _interval = float(interval) if interval is not None else _settings.LIVENESS_INTERVAL.value
    if enabled is None:
        enabled = _settings.LIVENESS_SPANS.value
    if not enabled:
        _delay = None
        return
    _delay = float(after) if after is not None else _settings.LIVENESS_AFTER.value


# -- what liveness hears on the run bus ------------------------------------------


def _run_started(run: LiveRun) -> None:
    """A recording run began: announce it now, or once it outlives the delay."""
    delay = _delay
    if delay is None:
        return
    if delay == 0:
        announce_now(run)
    else:
        _watch.add(run, delay)


def _run_failed(run: LiveRun, error: BaseException) -> None:
    _run_ended(run)


def _run_ended(run: LiveRun) -> None:
    if run.announced:
        with _mirrors_lock:  # the liveness thread walks the table under it
            _mirrors.pop(run, None)  # a mirror still held: the run's span holds its event
    else:
        _watch.discard(run)
    _watch.early_events.pop(run, None)


def _event_recorded(run: LiveRun, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]) -> None:
    """A custom event was recorded on the run at ``time_ns``."""
    if run.announced:
        _offer(run, (name, time_ns, attributes), 1)
    elif not routing.span and _delay is not None:  # no span event to find at the announcement
        _watch.early_events[run] = (name, time_ns, attributes)  # the latest is all it mirrors


# -- event mirrors: at most one per interval per run -----------------------------


@dataclass
class _Mirrors:
    """An announced run's mirror state: when the last mirror went, and the latest
    event since (with how many events it stands for)."""

    kind: str  # the run's OpenInference span kind
    last: float = -math.inf  # monotonic time of the last mirror
    held: tuple[str, int, Mapping[str, Any]] | None = None
    held_count: int = 0


_mirrors: dict[LiveRun, _Mirrors] = {}
_mirrors_lock = threading.Lock()


def _offer(run: LiveRun, event: tuple[str, int, Mapping[str, Any]], count: int) -> None:
    """Hold ``event`` as the run's latest; mirror it now if the interval is up."""
    now = time.monotonic()
    with _mirrors_lock:
        state = _mirrors.get(run)
        if state is None:  # ended, or announced by another thread a moment ago
            return
        state.held = event
        state.held_count += count
        due = _take_due(state, now)
    if due is not None:
        _mirror(run, state.kind, *due)
    else:
        _watch.start()  # it mirrors the held event once the interval is up


def _take_due(state: _Mirrors, now: float) -> tuple[str, int, Mapping[str, Any], int] | None:
    """The held event and its count, if the interval since the last mirror is up (under the lock)."""
    held = state.held
    if held is None or now - state.last < _interval:
        return None
    state.held, count, state.last = None, state.held_count, now
    state.held_count = 0
    return (*held, count)


def _flush_due_mirrors() -> float:
    """Mirror every held event whose interval is up; the monotonic time of the next one due."""
    now = time.monotonic()
    due: list[tuple[LiveRun, str, tuple[str, int, Mapping[str, Any], int]]] = []
    upcoming = math.inf
    with _mirrors_lock:
        for run, state in _mirrors.items():
            taken = _take_due(state, now)
            if taken is not None:
                due.append((run, state.kind, taken))
            elif state.held is not None:
                upcoming = min(upcoming, state.last + _interval)
    for run, kind, taken in due:
        if not run.ended:
            _mirror(run, kind, *taken)
    return upcoming


def _kind_of(attributes: Mapping[str, Any]) -> str:
    kind = attributes.get(conventions.OPENINFERENCE_SPAN_KIND)
    if isinstance(kind, str):
        return kind
    run_type = attributes.get(conventions.RUN_TYPE)
    return conventions.openinference_kind(run_type if isinstance(run_type, str) else "chain")


def announce_now(run: LiveRun) -> None:
    """Emit the pending span, and one mirror of the latest event so far. Once per run."""
    if run.announced:
        return
    span = run.span
    try:
        attributes = dict(getattr(span, "attributes", None) or {})
        state = _Mirrors(kind=_kind_of(attributes))
        with _mirrors_lock:
            _mirrors[run] = state
        run.announced = True  # from here on, the run's events are offered as mirrors
        for key in (conventions.OUTPUT_VALUE, conventions.OUTPUT_MIME_TYPE, conventions.RUN_STREAM_CHUNKS):
            attributes.pop(key, None)
        attributes[conventions.SPAN_TYPE] = conventions.SPAN_TYPE_PENDING
        attributes[conventions.RUN_NAME] = run.name
        attributes[conventions.OPENINFERENCE_SPAN_KIND] = state.kind
        started = getattr(span, "start_time", None) or time.time_ns()
        pending = get_tracer().start_span(
            conventions.pending_span_name(run.name),
            context=trace.set_span_in_context(span),
            kind=_INTERNAL,
            attributes=attributes,
            start_time=started,
        )
        pending.end(end_time=started)
        _offer_earlier_events(run, span)
    except Exception:
        logger.exception("could not announce live run %s; its span is unaffected", run.id)


def _offer_earlier_events(run: LiveRun, span: Span) -> None:
    """The latest custom event before the announcement, standing for all of them."""
    earlier = [
        (event.name, event.timestamp, event.attributes or {})
        for event in tuple(getattr(span, "events", ()))
        if (event.attributes or {}).get(conventions.EVENT_KIND) == conventions.EVENT_KIND_CUSTOM
    ]
    early = _watch.early_events.pop(run, None)  # events go to logs only: the span holds none
    if early is not None:
        earlier.append(early)
    if not earlier:
        return
    counted = getattr(run, "custom_events", None)  # the span keeps only the last OTEL_SPAN_EVENT_COUNT_LIMIT
    count = counted if isinstance(counted, int) and counted >= len(earlier) else len(earlier)
    with _mirrors_lock:
        state = _mirrors.get(run)
        if state is None or state.held is not None or state.last != -math.inf:
            return  # the run's own thread already offered a newer event
    _offer(run, earlier[-1], count)


def _mirror(
    run: LiveRun, kind: str, name: str, time_ns: int, attributes: Mapping[str, Any], count: int
) -> None:
    mirror_attributes = dict(attributes)
    mirror_attributes[conventions.SPAN_TYPE] = conventions.SPAN_TYPE_EVENT
    mirror_attributes[conventions.RUN_ID] = str(run.id)
    mirror_attributes[conventions.RUN_NAME] = run.name
    mirror_attributes[conventions.EVENT_NAME] = name
    mirror_attributes[conventions.EVENT_COUNT] = count
    mirror_attributes[conventions.OPENINFERENCE_SPAN_KIND] = kind
    try:
        mirror = get_tracer().start_span(
            conventions.mirror_span_name(name),
            context=trace.set_span_in_context(run.span),
            kind=_INTERNAL,
            attributes=mirror_attributes,
            start_time=time_ns,
        )
        mirror.end(end_time=time_ns)
    except Exception:
        logger.exception("could not mirror event %r of run %s; the span event stands", name, run.id)


class _Watch:
    """Runs waiting to outlive the delay; one daemon thread announces them, and
    mirrors the events held back by the interval once it is up."""

    def __init__(self) -> None:
        self._due: dict[LiveRun, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.early_events: dict[LiveRun, tuple[str, int, Mapping[str, Any]]] = {}
        """The latest event of each run not announced yet, when spans hold no events."""

    def add(self, run: LiveRun, delay: float) -> None:
        # one dict store, atomic under the GIL: no lock on the run's path
        self._due[run] = time.monotonic() + delay
        self.start()

    def start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="otel_runnables-liveness", daemon=True
                    )
                    self._thread.start()

    def discard(self, run: LiveRun) -> None:
        self._due.pop(run, None)

    def reset_in_child(self) -> None:
        """After fork: the parent's thread and lock state did not come along, and
        its live runs are the parent's to announce."""
        global _mirrors_lock
        self._due = {}
        self._lock = threading.Lock()
        self._thread = None
        self.early_events = {}
        _mirrors.clear()
        _mirrors_lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            # dict.copy() allocates nothing per entry, so no collection (and no
            # other thread) can run mid-copy while runs add and remove
            due = self._due.copy()
            ready = [run for run, deadline in due.items() if deadline <= now]
            for run in ready:
                self._due.pop(run, None)
            pending = min((deadline for deadline in due.values() if deadline > now), default=now + 0.5)
            for run in ready:
                if not run.ended:
                    announce_now(run)
            try:
                pending = min(pending, _flush_due_mirrors())
            except Exception:  # never let the thread die: later runs still need announcing
                logger.exception("mirroring held events failed; they stay on their runs' spans")
            time.sleep(max(0.01, min(0.5, pending - time.monotonic())))


_watch = _Watch()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watch.reset_in_child)

bridge.add_listener(
    bridge.RunListener(started=_run_started, event=_event_recorded, ended=_run_ended, failed=_run_failed)
)
