"""The run bus: the one path from a run's lifecycle to every in-process consumer.

Runs report start, custom event, stream chunk, end and error here. The bus
calls the run's callback handlers and appends each event once to the logs
of the subscriptions scoped to a run subtree (or a trace); each subscription
builds langchain_core's ``astream_events`` v2 dictionaries from that log when
it reads (``event_log``). With no subscription, that part costs one
dict-emptiness check.

Record keepers (liveness, the embedded store) listen too, through
``add_listener``: they hear the runs whose span records — start, each custom
event with the attributes written on the span, end or failure — synchronously
on the run's thread, so a listener must be quick and never wait. A listener
that raises is logged once and skipped for that message; the run goes on.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from otel_runnables import _event_dicts as event_dicts
from otel_runnables._dispatch import anotify, listening, notify
from otel_runnables._event_log import END, EventLog, LogReader
from otel_runnables._fork_safe import renew_in_child
from otel_runnables._sentinel import MISSING

if TYPE_CHECKING:
    from otel_runnables._runs import Run
    from otel_runnables.callbacks import BaseCallbackHandler

__all__ = [
    "CUSTOM",
    "END",
    "FAILED",
    "FINISH",
    "START",
    "STREAM",
    "EventFilter",
    "RecordedRun",
    "RunListener",
    "Subscription",
    "add_listener",
    "achunk",
    "acustom_event",
    "aended",
    "astarted",
    "chunk",
    "custom_event",
    "discarded",
    "ended",
    "filter_of",
    "has_listeners",
    "live_run",
    "live_runs_in_trace",
    "record_ended",
    "record_event",
    "record_failed",
    "record_started",
    "remove_listener",
    "started",
    "subscribe_subtree",
    "subscribe_trace",
    "unsubscribe",
]

logger = logging.getLogger(__name__)

# what the bus appends to a subtree's logs: (kind, run, a, b)
START = "start"  # a, b unused: the run holds its inputs
STREAM = "stream"  # a: the chunk
FINISH = "end"  # a: the outputs, b: the inputs given at the end (or MISSING)
CUSTOM = "custom"  # a: (name, data, tags, metadata), b: (recorded timestamp, number in its run) or None
FAILED = "failed"  # a: the exception; v2 has no event for it, readers that end with the run use it


@dataclass(frozen=True, slots=True)
class EventFilter:
    """langchain_core's include/exclude rules; a custom event's type is its name."""

    include_names: Sequence[str] | None = None
    include_types: Sequence[str] | None = None
    include_tags: Sequence[str] | None = None
    exclude_names: Sequence[str] | None = None
    exclude_types: Sequence[str] | None = None
    exclude_tags: Sequence[str] | None = None

    def accepts(self, name: str, event_type: str, tags: Sequence[str]) -> bool:
        include = self.include_names is None and self.include_types is None and self.include_tags is None
        if self.include_names is not None:
            include = include or name in self.include_names
        if self.include_types is not None:
            include = include or event_type in self.include_types
        if self.include_tags is not None:
            include = include or any(tag in self.include_tags for tag in tags)
        if self.exclude_names is not None:
            include = include and name not in self.exclude_names
        if self.exclude_types is not None:
            include = include and event_type not in self.exclude_types
        if self.exclude_tags is not None:
            include = include and all(tag not in self.exclude_tags for tag in tags)
        return include

    def key(self) -> tuple[tuple[str, ...] | None, ...]:
        """The same rules as a hashable value: subscriptions with equal keys share a log."""
        return tuple(
            None if rule is None else tuple(rule)
            for rule in (
                self.include_names,
                self.include_types,
                self.include_tags,
                self.exclude_names,
                self.exclude_types,
                self.exclude_tags,
            )
        )


ALL_EVENTS = EventFilter()
_NO_RULES = (None,) * 6


def filter_of(*rules: Sequence[str] | None) -> EventFilter:
    """``EventFilter(*rules)``, or ``ALL_EVENTS`` itself when every rule is None (the
    usual astream_events call: a frozen dataclass costs 10.8k instructions to make)."""
    if rules == _NO_RULES:
        return ALL_EVENTS
    return EventFilter(*rules)


class FilteredLog(EventLog):
    """An event log that takes the entries its filter accepts."""

    __slots__ = ("accepts_all", "filter")

    def __init__(self, event_filter: EventFilter, *, ends_with_root: bool, shared: bool) -> None:
        # only a shared log is looked up by its filter
        super().__init__(event_filter.key() if shared else None, ends_with_root=ends_with_root, shared=shared)
        self.filter = event_filter
        self.accepts_all = event_filter is ALL_EVENTS or event_filter == ALL_EVENTS

    def offer(self, entry: tuple[Any, ...], name: str, event_type: str, tags: Sequence[str]) -> None:
        if self.accepts_all or self.filter.accepts(name, event_type, tags):
            self.append(entry)


@dataclass(eq=False, kw_only=True)
class Subscription:
    """A reader of the v2 events of one run subtree (``root_id``) or one trace
    (``trace_id``). It reads a log it may share with other subscriptions of the
    same scope and filter, and builds each dictionary when it reads it.
    ``max_buffer`` (0: unbounded) bounds its undelivered events; past it the
    oldest are skipped and counted in ``dropped``: the publisher never waits."""

    root_id: uuid.UUID | None = None
    root_key: str | None = None
    """root_id's text, by which runs are looked up: given when the caller has it
    (str() of a UUID costs 8.3k instructions), else made from root_id."""
    trace_id: int | None = None
    event_filter: EventFilter = ALL_EVENTS
    max_buffer: int = 0
    ends_with_root: bool = False
    shared: bool = False
    sees_root_parent: bool = False
    own_chunks_only: bool = False  # stream events of the root run only
    reader: LogReader | None = field(default=None, init=False)
    _finalizer: weakref.finalize[Any, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.root_key is None and self.root_id is not None:
            self.root_key = str(self.root_id)

    @property
    def dropped(self) -> int:
        return 0 if self.reader is None else self.reader.dropped

    @property
    def log(self) -> FilteredLog:
        assert self.reader is not None, "not subscribed"
        log = self.reader.log
        assert isinstance(log, FilteredLog)
        return log

    def parent_ids(self, run: Run) -> list[str]:
        """Ancestors seen by this subscription, root first. With
        ``sees_root_parent`` (astream_events) the root's own parent counts
        too: langchain_core's stream learns it from the root's start."""
        root = self.root_key
        if run.id_text == root:
            parent = run.parent
            return [parent.id_text] if self.sees_root_parent and parent is not None else []
        ancestors = run.ancestor_ids()  # worked out once per run, not per event
        if root is None or root not in ancestors:
            return list(ancestors)
        start = ancestors.index(root)
        if self.sees_root_parent and start > 0:
            start -= 1
        return list(ancestors[start:])

    def render(self, entry: tuple[Any, ...]) -> dict[str, Any] | None:
        """The v2 dictionary of one log entry (None for a failure, which has
        none, and for a chunk this subscription does not show)."""
        kind, run, a, b = entry
        if kind is CUSTOM:
            name, data, tags, metadata = a
            return event_dicts.custom_event(name, run.id_text, tags, metadata, data, self.parent_ids(run))
        if kind is START:
            data = event_dicts.start_data(run.inputs)
        elif kind is STREAM:
            if self.own_chunks_only and run.id_text != self.root_key:
                return None
            data = {"chunk": a}
        elif kind is FINISH:
            data = event_dicts.end_data(a, b, run.inputs)
        else:
            return None
        return event_dicts.run_event(
            kind, run.run_type, run.name, run.id_text, run.tags, run.metadata, self.parent_ids(run), data
        )

    def finish(self) -> None:
        """End the stream: the reader gets END after the entries already there."""
        if self.reader is not None:
            self.reader.log.close()


# logs by the run id (or trace id) they are rooted at, copied on write (publishers
# iterate them without the lock); live runs by id
_by_run: dict[str, tuple[FilteredLog, ...]] = {}  # by the root run's id text
_by_trace: dict[int, tuple[FilteredLog, ...]] = {}
_live: dict[str, Run] = {}  # by run id text, which every run has from its start
_lock = threading.Lock()
renew_in_child(globals(), "_lock")
# logs a garbage-collected reader left behind: looked at again at the next chance
_orphaned: list[weakref.ref[FilteredLog]] = []


def live_run(run_id: uuid.UUID) -> Run | None:
    return _live.get(str(run_id))


def live_runs_in_trace(trace_id: int) -> list[Run]:
    return [run for run in list(_live.values()) if run.span.get_span_context().trace_id == trace_id]


def _attach(registry: dict[Any, tuple[FilteredLog, ...]], key: Any, subscription: Subscription) -> None:
    if not subscription.shared:  # its own log, read until it unsubscribes (astream_events)
        own = FilteredLog(subscription.event_filter, ends_with_root=subscription.ends_with_root, shared=False)
        subscription.reader = LogReader(own, subscription.max_buffer)
        with _lock:
            registry[key] = (*registry.get(key, ()), own)
        return
    with _lock:
        _sweep_locked()
        logs = registry.get(key, ())
        filter_key = subscription.event_filter.key()
        log = next(
            (
                candidate
                for candidate in logs
                if candidate.shared
                and not candidate.closed
                and candidate.filter_key == filter_key
                and candidate.ends_with_root == subscription.ends_with_root
            ),
            None,
        )
        if log is None:
            log = FilteredLog(
                subscription.event_filter, ends_with_root=subscription.ends_with_root, shared=True
            )
            registry[key] = (*logs, log)
        subscription.reader = LogReader(log, subscription.max_buffer)
    # dropped without unsubscribing: the log is looked at again (never from here: a
    # finalizer may run while this thread holds a lock)
    subscription._finalizer = weakref.finalize(subscription, _orphaned.append, weakref.ref(log))


def subscribe_subtree(subscription: Subscription) -> None:
    assert subscription.root_key is not None
    _attach(_by_run, subscription.root_key, subscription)


def subscribe_trace(subscription: Subscription) -> None:
    assert subscription.trace_id is not None
    _attach(_by_trace, subscription.trace_id, subscription)


def unsubscribe(subscription: Subscription) -> None:
    """Stop reading; the log goes when its last reader does."""
    reader, subscription.reader = subscription.reader, None
    if subscription._finalizer is not None:
        subscription._finalizer.detach()
        subscription._finalizer = None
    if reader is None:
        return
    last = reader.leave()
    if last:
        log = reader.log
        assert isinstance(log, FilteredLog)
        with _lock:
            if subscription.root_key is not None:
                _remove_at(_by_run, subscription.root_key, log)
            if subscription.trace_id is not None:
                _remove_at(_by_trace, subscription.trace_id, log)


def _remove_locked(log: FilteredLog) -> None:
    _remove_from(_by_run, log)
    _remove_from(_by_trace, log)


def _remove_at(registry: dict[Any, tuple[FilteredLog, ...]], key: Any, log: FilteredLog) -> None:
    logs = registry.get(key)
    if logs is not None and log in logs:
        _keep_others(registry, key, logs, log)


def _remove_from(registry: dict[Any, tuple[FilteredLog, ...]], log: FilteredLog) -> None:
    for key, logs in list(registry.items()):
        if log in logs:
            _keep_others(registry, key, logs, log)


def _keep_others(
    registry: dict[Any, tuple[FilteredLog, ...]], key: Any, logs: tuple[FilteredLog, ...], log: FilteredLog
) -> None:
    """``registry[key]`` without ``log`` (which it holds once), or no entry when that leaves none."""
    if len(logs) == 1:
        del registry[key]
    else:
        at = logs.index(log)
        registry[key] = logs[:at] + logs[at + 1 :]


def _sweep_locked() -> None:
    while _orphaned:
        log = _orphaned.pop()()
        if log is not None and not log.readers():
            _remove_locked(log)


def _sweep() -> None:
    with _lock:
        _sweep_locked()


def _publish(run: Run, entry: tuple[Any, ...], name: str, event_type: str, tags: Sequence[str]) -> None:
    """Append ``entry`` to every log whose subtree or trace holds ``run``."""
    if _orphaned:
        _sweep()
    if _by_run:
        current: Run | None = run
        while current is not None:
            logs = _by_run.get(current.id_text)
            if logs:
                for log in logs:
                    if log.accepts_all or log.filter.accepts(name, event_type, tags):
                        log.append(entry)
            current = current.parent
    if _by_trace:
        logs = _by_trace.get(run.span.get_span_context().trace_id)
        if logs:
            for log in logs:
                if log.accepts_all or log.filter.accepts(name, event_type, tags):
                    log.append(entry)


def _publish_failure(run: Run, error: BaseException) -> None:
    """A run's failure reaches every log that ends with that run, whatever its filter."""
    entry = (FAILED, run, error, MISSING)
    for log in _by_run.get(run.id_text, ()):
        log.append(entry)
    if _by_trace and run.parent is None:
        for log in _by_trace.get(run.span.get_span_context().trace_id, ()):
            log.append(entry)


def _close_finished(run: Run) -> None:
    """Logs that end with a run (attached subscriptions) end after its last event."""
    closing = [log for log in _by_run.get(run.id_text, ()) if log.ends_with_root]
    if _by_trace and run.parent is None:
        trace_id = run.span.get_span_context().trace_id
        logs = _by_trace.get(trace_id)
        if logs and not live_runs_in_trace(trace_id):
            closing += [log for log in logs if log.ends_with_root]
    if closing:
        with _lock:
            for log in closing:
                log.close()
                _remove_locked(log)  # the readers keep what they have not read yet


# -- the lifecycle entry points (sync and async twins) -------------------------


def _start_kwargs(run: Run, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "run_id": run.id,
        "parent_run_id": run.parent_id,
        "tags": list(run.tags),
        "metadata": dict(run.metadata),
        "name": run.name,
    }
    if extra:
        kwargs.update(extra)
    return kwargs


def _end_kwargs(run: Run, inputs: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"run_id": run.id, "parent_run_id": run.parent_id, "tags": list(run.tags)}
    if inputs is not MISSING:
        kwargs["inputs"] = inputs
    return kwargs


def _register(run: Run) -> None:
    _live[run.id_text] = run
    if _by_run or _by_trace:
        _publish(run, (START, run, MISSING, MISSING), run.name, run.run_type, run.tags)


def _unregister(
    run: Run, outputs: Any, inputs: Any, error: BaseException | None
) -> Sequence[BaseCallbackHandler]:
    """Take the run off the bus, its end (or failure) told to the logs; the
    handlers that hear it (on_chain_end, or on_chain_error)."""
    _live.pop(run.id_text, None)
    if _by_run or _by_trace:
        if error is None:
            _publish(run, (FINISH, run, outputs, inputs), run.name, run.run_type, run.tags)
        else:
            _publish_failure(run, error)
        _close_finished(run)
    if not run.handlers:
        return ()
    return listening(run.handlers, "on_chain_end" if error is None else "on_chain_error")


def _end_call(
    run: Run, outputs: Any, inputs: Any, error: BaseException | None
) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The handlers' callback for the run's end or failure: its name and arguments."""
    if error is None:
        return "on_chain_end", (outputs,), _end_kwargs(run, inputs)
    return "on_chain_error", (error,), _end_kwargs(run, inputs)


def started(run: Run, handler_extra: Mapping[str, Any] | None = None) -> None:
    _register(run)
    if run.handlers and (hearing := listening(run.handlers, "on_chain_start")):
        notify(hearing, "on_chain_start", (None, run.inputs), _start_kwargs(run, handler_extra))


async def astarted(run: Run, handler_extra: Mapping[str, Any] | None = None) -> None:
    _register(run)
    if run.handlers and (hearing := listening(run.handlers, "on_chain_start")):
        await anotify(hearing, "on_chain_start", (None, run.inputs), _start_kwargs(run, handler_extra))


def chunk(run: Run, value: Any) -> None:
    if _by_run or _by_trace:
        _publish(run, (STREAM, run, value, MISSING), run.name, run.run_type, run.tags)


achunk = chunk  # no handler callback for chunks: nothing to await


def ended(run: Run, outputs: Any, inputs: Any = MISSING, error: BaseException | None = None) -> None:
    """The run returned ``outputs``, or raised ``error``: v2 has no error event,
    subscribers see the stream stop."""
    if hearing := _unregister(run, outputs, inputs, error):
        notify(hearing, *_end_call(run, outputs, inputs, error))


async def aended(run: Run, outputs: Any, inputs: Any = MISSING, error: BaseException | None = None) -> None:
    if hearing := _unregister(run, outputs, inputs, error):
        await anotify(hearing, *_end_call(run, outputs, inputs, error))


def discarded(run: Run) -> None:
    """A run whose start a handler refused: gone, and its handlers hear no error."""
    refused = RuntimeError(f"a callback handler refused the start of run {run.id_text}")
    _unregister(run, None, MISSING, refused)


def _offer_custom(
    run: Run,
    name: str,
    data: Any,
    tags: list[str],
    metadata: dict[str, Any],
    recorded_at: tuple[int, int] | None,
) -> None:
    _publish(run, (CUSTOM, run, (name, data, tags, metadata), recorded_at), name, name, tags)


def custom_event(
    run: Run,
    name: str,
    data: Any,
    tags: list[str],
    metadata: dict[str, Any],
    handlers: Sequence[Any],
    recorded_at: tuple[int, int] | None = None,
) -> None:
    """``handlers``: those ``listening`` to on_custom_event (may be empty);
    ``recorded_at``: the event's (timestamp, number) in the run's record."""
    if _by_run or _by_trace:
        _offer_custom(run, name, data, tags, metadata, recorded_at)
    if handlers:
        notify(
            handlers, "on_custom_event", (name, data), {"run_id": run.id, "tags": tags, "metadata": metadata}
        )


async def acustom_event(
    run: Run,
    name: str,
    data: Any,
    tags: list[str],
    metadata: dict[str, Any],
    handlers: Sequence[Any],
    recorded_at: tuple[int, int] | None = None,
) -> None:
    """As ``custom_event``, awaiting async handlers."""
    if _by_run or _by_trace:
        _offer_custom(run, name, data, tags, metadata, recorded_at)
    if handlers:
        await anotify(
            handlers, "on_custom_event", (name, data), {"run_id": run.id, "tags": tags, "metadata": metadata}
        )


def has_listeners() -> bool:
    return bool(_by_run or _by_trace)


# -- listeners: the record keepers ----------------------------------------------------


class RecordedRun(Protocol):
    """A run whose span records: ours (``runs.Run``) or one an integration traces."""

    span: Span
    name: str
    announced: bool  # liveness: its pending span was emitted
    ended: bool

    @property
    def id(self) -> uuid.UUID: ...


@dataclass(frozen=True, eq=False)
class RunListener:
    """What a record keeper hears; each callback optional. ``event`` gets the
    event's name, its timestamp and the attributes written on the span."""

    started: Callable[[RecordedRun], None] | None = None
    event: Callable[[RecordedRun, str, int, Mapping[str, AttributeValue]], None] | None = None
    ended: Callable[[RecordedRun], None] | None = None
    failed: Callable[[RecordedRun, BaseException], None] | None = None


_run_listeners: tuple[RunListener, ...] = ()
# one tuple per message, of the callbacks that want it: a message nobody hears costs a loop over ()
_on_started: tuple[Callable[[RecordedRun], None], ...] = ()
_on_event: tuple[Callable[[RecordedRun, str, int, Mapping[str, AttributeValue]], None], ...] = ()
_on_ended: tuple[Callable[[RecordedRun], None], ...] = ()
_on_failed: tuple[Callable[[RecordedRun, BaseException], None], ...] = ()
_failed_run_listeners: set[int] = set()  # ids of callbacks already logged as raising


def _rebuild(listeners: tuple[RunListener, ...]) -> None:
    global _run_listeners, _on_started, _on_event, _on_ended, _on_failed
    _run_listeners = listeners
    _on_started = tuple(item.started for item in listeners if item.started is not None)
    _on_event = tuple(item.event for item in listeners if item.event is not None)
    _on_ended = tuple(item.ended for item in listeners if item.ended is not None)
    _on_failed = tuple(item.failed for item in listeners if item.failed is not None)


def add_listener(listener: RunListener) -> None:
    with _lock:
        if listener not in _run_listeners:
            _rebuild((*_run_listeners, listener))


def remove_listener(listener: RunListener) -> None:
    with _lock:
        _rebuild(tuple(item for item in _run_listeners if item is not listener))


def _listener_raised(callback: object) -> None:
    if id(callback) not in _failed_run_listeners:
        _failed_run_listeners.add(id(callback))
        logger.exception("run listener %r raised; the run goes on (logged once)", callback)


def record_started(run: RecordedRun) -> None:
    for callback in _on_started:
        try:
            callback(run)
        except Exception:
            _listener_raised(callback)


def record_event(run: RecordedRun, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]) -> None:
    for callback in _on_event:
        try:
            callback(run, name, time_ns, attributes)
        except Exception:
            _listener_raised(callback)


def record_ended(run: RecordedRun) -> None:
    for callback in _on_ended:
        try:
            callback(run)
        except Exception:
            _listener_raised(callback)


def record_failed(run: RecordedRun, error: BaseException) -> None:
    for callback in _on_failed:
        try:
            callback(run, error)
        except Exception:
            _listener_raised(callback)
