"""Making live runs visible before they end.

OTLP exports a span only when it ends, so a long run is invisible in Jaeger or
Tempo until it is over. A run still going after a short delay
(``OTEL_RUNNABLES_LIVENESS_AFTER``, 1 s by default; 0 for every run at once)
therefore announces itself through the application's tracer:

- a zero-duration *pending* span: parent = the run's span, the run's name and
  attributes, ``otel_runnables.span_type = "pending"``;
- a zero-duration *event mirror* span per custom event (those before the
  announcement too, at their own timestamps): named after the event, parent =
  the run's span, the event's attributes, ``otel_runnables.span_type = "event"``.

Each has its own span id, so no span id is ever exported twice; the span event
on the run's span stays the source of truth. Short runs, the vast majority,
cost nothing here beyond a dict entry. ``OTEL_RUNNABLES_LIVENESS_SPANS=false``
(or ``configure(liveness_spans=False)``) switches it off.

In-process listeners (the embedded store) hear every custom event at once
through ``add_event_listener``, whatever the delay. When custom events go
to logs only (``OTEL_RUNNABLES_EVENTS=log``), the run's span holds none, so
the latest events of a run not announced yet are kept here for its mirrors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from otel_runnables import _settings, conventions
from otel_runnables.event_logs import routing
from otel_runnables.telemetry import get_tracer

__all__ = [
    "EventListener",
    "LiveRun",
    "add_event_listener",
    "announce_now",
    "configure_liveness",
    "event_recorded",
    "liveness_delay",
    "remove_event_listener",
    "run_ended",
    "run_started",
]

logger = logging.getLogger(__name__)

EventListener = Callable[[Span, str, int, Mapping[str, AttributeValue]], None]
"""``listener(run_span, event_name, time_ns, attributes)``: called on the run's thread; must be quick."""


class LiveRun(Protocol):
    """What liveness needs of a run: ours (``runs.Run``) or one traced by an integration."""

    span: Span
    name: str
    announced: bool
    ended: bool

    @property
    def id(self) -> uuid.UUID: ...


_INTERNAL = SpanKind.INTERNAL
# as many of a run's events as its span keeps by default (OTEL_SPAN_EVENT_COUNT_LIMIT)
_EARLY_EVENTS_KEPT = 128


def _delay_from_settings() -> float | None:
    """Seconds before a live run is announced; None when liveness spans are off."""
    return _settings.LIVENESS_AFTER.value if _settings.LIVENESS_SPANS.value else None


_delay: float | None = _delay_from_settings()
_listeners: tuple[EventListener, ...] = ()
_listeners_lock = threading.Lock()


def liveness_delay() -> float | None:
    """The current delay in seconds, or None when liveness spans are off."""
    return _delay


def configure_liveness(enabled: bool | None = True, after: float | None = None) -> None:
    """Switch liveness spans on or off, and set the delay before a run is announced;
    None takes the ``OTEL_RUNNABLES_LIVENESS_*`` setting."""
    global _delay
    if after is not None and (not isinstance(after, (int, float)) or isinstance(after, bool) or after < 0):
        raise ValueError(f"liveness delay must be a number of seconds >= 0, got {after!r}")
    if enabled is None:
        enabled = _settings.LIVENESS_SPANS.value
    if not enabled:
        _delay = None
        return
    _delay = float(after) if after is not None else _settings.LIVENESS_AFTER.value


def add_event_listener(listener: EventListener) -> None:
    global _listeners
    with _listeners_lock:
        if listener not in _listeners:
            _listeners = (*_listeners, listener)


def remove_event_listener(listener: EventListener) -> None:
    global _listeners
    with _listeners_lock:
        _listeners = tuple(item for item in _listeners if item != listener)


# -- the run side: called by runs.py -------------------------------------------


def run_started(run: LiveRun) -> None:
    """A recording run began: announce it now, or once it outlives the delay."""
    delay = _delay
    if delay is None:
        return
    if delay == 0:
        announce_now(run)
    else:
        _watch.add(run, delay)


def run_ended(run: LiveRun) -> None:
    if not run.announced:
        _watch.discard(run)
    _watch.early_events.pop(run, None)


def event_recorded(run: LiveRun, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]) -> None:
    """A custom event was written on the run's span at ``time_ns``."""
    for listener in _listeners:
        try:
            listener(run.span, name, time_ns, attributes)
        except Exception:
            logger.exception("span event listener %r failed; the run goes on", listener)
    if run.announced:
        _mirror(run, name, time_ns, attributes)
    elif not routing.span and _delay is not None:  # no span event to mirror from later
        early = _watch.early_events.get(run)
        if early is None:
            early = _watch.early_events[run] = deque(maxlen=_EARLY_EVENTS_KEPT)
        early.append((name, time_ns, attributes))


def announce_now(run: LiveRun) -> None:
    """Emit the pending span, and mirrors of the events so far. Once per run."""
    if run.announced:
        return
    run.announced = True
    span = run.span
    try:
        attributes = dict(getattr(span, "attributes", None) or {})
        for key in (conventions.OUTPUT_VALUE, conventions.OUTPUT_MIME_TYPE, conventions.RUN_STREAM_CHUNKS):
            attributes.pop(key, None)
        attributes[conventions.SPAN_TYPE] = conventions.SPAN_TYPE_PENDING
        attributes[conventions.RUN_NAME] = run.name
        started = getattr(span, "start_time", None) or time.time_ns()
        pending = get_tracer().start_span(
            run.name,
            context=trace.set_span_in_context(span),
            kind=_INTERNAL,
            attributes=attributes,
            start_time=started,
        )
        pending.end(end_time=started)
        for name, time_ns, event_attributes in _watch.early_events.pop(run, ()):
            _mirror(run, name, time_ns, event_attributes)
        for event in tuple(getattr(span, "events", ())):
            event_attributes = event.attributes or {}
            if event_attributes.get(conventions.EVENT_KIND) == conventions.EVENT_KIND_CUSTOM:
                _mirror(run, event.name, event.timestamp, event_attributes)
    except Exception:
        logger.exception("could not announce live run %s; its span is unaffected", run.id)


def _mirror(run: LiveRun, name: str, time_ns: int, attributes: Mapping[str, Any]) -> None:
    mirror_attributes = dict(attributes)
    mirror_attributes[conventions.SPAN_TYPE] = conventions.SPAN_TYPE_EVENT
    mirror_attributes[conventions.RUN_ID] = str(run.id)
    mirror_attributes[conventions.RUN_NAME] = run.name
    try:
        mirror = get_tracer().start_span(
            name,
            context=trace.set_span_in_context(run.span),
            kind=_INTERNAL,
            attributes=mirror_attributes,
            start_time=time_ns,
        )
        mirror.end(end_time=time_ns)
    except Exception:
        logger.exception("could not mirror event %r of run %s; the span event stands", name, run.id)


class _Watch:
    """Runs waiting to outlive the delay; one daemon thread announces them."""

    def __init__(self) -> None:
        self._due: dict[LiveRun, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.early_events: dict[LiveRun, deque[tuple[str, int, Mapping[str, Any]]]] = {}
        """Events of runs not announced yet, when their spans hold none."""

    def add(self, run: LiveRun, delay: float) -> None:
        # one dict store, atomic under the GIL: no lock on the run's path
        self._due[run] = time.monotonic() + delay
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
        self._due = {}
        self._lock = threading.Lock()
        self._thread = None
        self.early_events = {}

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
            time.sleep(max(0.01, min(0.5, pending - time.monotonic())))


_watch = _Watch()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watch.reset_in_child)
