"""The run bus: the one path from a run's lifecycle to every in-process consumer.

Runs report start, custom event, stream chunk, end and error here. The bus
calls the run's callback handlers and hands langchain_core's `astream_events`
v2 dictionaries to the subscriptions scoped to a run subtree (or a trace).
With no subscription, that part costs one dict-emptiness check.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otel_runnables._sentinel import MISSING
from otel_runnables.callbacks import anotify, listening, notify

if TYPE_CHECKING:
    from otel_runnables.runs import Run

__all__ = [
    "END",
    "EventFilter",
    "LoopQueue",
    "Subscription",
    "achunk",
    "acustom_event",
    "aended",
    "afailed",
    "astarted",
    "chunk",
    "custom_event",
    "discarded",
    "ended",
    "failed",
    "live_run",
    "live_runs_in_trace",
    "started",
    "subscribe_subtree",
    "subscribe_trace",
    "unsubscribe",
]

_STREAM_START_MARKER = {"input": ""}

END = object()
"""The last item a subscription's queue receives."""


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


ALL_EVENTS = EventFilter()


class LoopQueue:
    """A queue on one event loop: a deque, and futures only for readers that
    wait. Lighter than asyncio.Queue, which a stream of small events pays for
    on every put and get."""

    __slots__ = ("_items", "_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._loop = loop
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def pop(self) -> Any:
        """The next item, or ``MISSING`` without waiting."""
        return self._items.popleft() if self._items else MISSING

    async def get(self) -> Any:
        while not self._items:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if not waiter.cancelled() and self._items:
                    self._wake_one()  # it was woken for an item it will not take: pass it on
                raise
        return self._items.popleft()


class Subscription:
    """The v2 events of one run subtree (``root_id``) or one trace
    (``trace_id``), delivered to an asyncio queue on ``loop`` or, without a
    loop, to a thread-safe queue. Past ``max_buffer`` undelivered events new
    ones are dropped and counted: the publisher never waits for a reader."""

    def __init__(
        self,
        *,
        root_id: uuid.UUID | None = None,
        trace_id: int | None = None,
        event_filter: EventFilter = ALL_EVENTS,
        loop: asyncio.AbstractEventLoop | None = None,
        max_buffer: int = 0,
        ends_with_root: bool = False,
    ) -> None:
        self.root_id = root_id
        self.root_key = None if root_id is None else str(root_id)  # runs are looked up by id text
        self.trace_id = trace_id
        self.filter = event_filter
        self.loop = loop
        self.max_buffer = max_buffer
        self.ends_with_root = ends_with_root
        self.dropped = 0
        self.closed = False
        self.queue: LoopQueue | queue.SimpleQueue[Any]
        self.queue = LoopQueue(loop) if loop is not None else queue.SimpleQueue()
        self._loop_thread = threading.get_ident() if loop is not None else None
        self._accepts_all = event_filter == ALL_EVENTS

    def parent_ids(self, run: Run) -> list[str]:
        """Ancestors seen by this subscription, root first."""
        ids: list[str] = []
        root = self.root_key
        if run.id_text == root:
            return ids
        ancestor = run.parent
        while ancestor is not None:
            ids.append(ancestor.id_text)
            if ancestor.id_text == root:
                break
            ancestor = ancestor.parent
        ids.reverse()
        return ids

    def _enqueue(self, item: Any) -> None:
        if self.closed:
            return
        if item is END:
            self.closed = True
        elif self.max_buffer and self.queue.qsize() >= self.max_buffer:
            self.dropped += 1
            return
        self.queue.put_nowait(item)

    def put(self, item: Any) -> None:
        if self.loop is None or threading.get_ident() == self._loop_thread:
            self._enqueue(item)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                self.loop.call_soon_threadsafe(self._enqueue, item)

    def offer(self, event: dict[str, Any], event_type: str) -> None:
        if self._accepts_all or self.filter.accepts(event["name"], event_type, event["tags"]):
            self.put(event)

    def close(self) -> None:
        self.put(END)


# subscriptions by the run id (or trace id) they are rooted at; live runs by id
_by_run: dict[str, list[Subscription]] = {}  # by the root run's id text
_by_trace: dict[int, list[Subscription]] = {}
_live: dict[str, Run] = {}  # by run id text, which every run has from its start
_lock = threading.Lock()


def live_run(run_id: uuid.UUID) -> Run | None:
    return _live.get(str(run_id))


def live_runs_in_trace(trace_id: int) -> list[Run]:
    return [run for run in list(_live.values()) if run.span.get_span_context().trace_id == trace_id]


def subscribe_subtree(subscription: Subscription) -> None:
    assert subscription.root_key is not None
    with _lock:
        _by_run.setdefault(subscription.root_key, []).append(subscription)


def subscribe_trace(subscription: Subscription) -> None:
    assert subscription.trace_id is not None
    with _lock:
        _by_trace.setdefault(subscription.trace_id, []).append(subscription)


def unsubscribe(subscription: Subscription) -> None:
    with _lock:
        if subscription.root_key is not None:
            _discard(_by_run, subscription.root_key, subscription)
        if subscription.trace_id is not None:
            _discard(_by_trace, subscription.trace_id, subscription)


def _discard(registry: dict[Any, list[Subscription]], key: Any, subscription: Subscription) -> None:
    subs = registry.get(key)
    if subs is not None and subscription in subs:
        subs.remove(subscription)
        if not subs:
            del registry[key]


def _listeners(run: Run) -> list[Subscription]:
    found: list[Subscription] = []
    if _by_run:
        current: Run | None = run
        while current is not None:
            subs = _by_run.get(current.id_text)
            if subs:
                found.extend(subs)
            current = current.parent
    if _by_trace:
        subs = _by_trace.get(run.span.get_span_context().trace_id)
        if subs:
            found.extend(subs)
    return found


def _run_event(kind: str, run: Run, sub: Subscription, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": f"on_{run.run_type}_{kind}",
        "data": data,
        "name": run.name,
        "tags": list(run.tags),
        "run_id": run.id_text,
        "metadata": dict(run.metadata),
        "parent_ids": sub.parent_ids(run),
    }


def _is_stream_start_marker(value: Any) -> bool:
    try:
        return bool(value == _STREAM_START_MARKER)
    except Exception:  # a value whose __eq__ raises is not the marker
        return False


def _falsy(value: Any) -> bool:
    try:
        return not value
    except Exception:
        return False


# -- subscriptions -----------------------------------------------------------


def _offer_start(run: Run) -> None:
    for sub in _listeners(run):
        data = {} if _is_stream_start_marker(run.inputs) else {"input": run.inputs}
        sub.offer(_run_event("start", run, sub, data), run.run_type)


def _offer_end(run: Run, outputs: Any, inputs: Any) -> None:
    listeners = _listeners(run)
    if not listeners:
        return
    # langchain_core: the end inputs, else the start inputs, else {}
    if inputs is MISSING or _falsy(inputs):
        inputs = MISSING if _is_stream_start_marker(run.inputs) else run.inputs
    if inputs is MISSING or _falsy(inputs):
        inputs = {}
    for sub in listeners:
        sub.offer(_run_event("end", run, sub, {"output": outputs, "input": inputs}), run.run_type)


def _close_finished(run: Run) -> None:
    """Subscriptions that end with a run (attached ones) end after its last event."""
    for sub in _by_run.get(run.id_text, ()):
        if sub.ends_with_root:
            sub.close()
    if _by_trace and run.parent is None:
        trace_id = run.span.get_span_context().trace_id
        subs = _by_trace.get(trace_id)
        if subs and not live_runs_in_trace(trace_id):
            for sub in subs:
                sub.close()


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
        _offer_start(run)


def _unregister(run: Run, outputs: Any, inputs: Any, *, failed: bool) -> None:
    _live.pop(run.id_text, None)
    if _by_run or _by_trace:
        if not failed:
            _offer_end(run, outputs, inputs)
        _close_finished(run)


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
        for sub in _listeners(run):
            sub.offer(_run_event("stream", run, sub, {"chunk": value}), run.run_type)


achunk = chunk  # no handler callback for chunks: nothing to await


def ended(run: Run, outputs: Any, inputs: Any = MISSING) -> None:
    _unregister(run, outputs, inputs, failed=False)
    if run.handlers and (hearing := listening(run.handlers, "on_chain_end")):
        notify(hearing, "on_chain_end", (outputs,), _end_kwargs(run, inputs))


async def aended(run: Run, outputs: Any, inputs: Any = MISSING) -> None:
    _unregister(run, outputs, inputs, failed=False)
    if run.handlers and (hearing := listening(run.handlers, "on_chain_end")):
        await anotify(hearing, "on_chain_end", (outputs,), _end_kwargs(run, inputs))


def discarded(run: Run) -> None:
    """A run whose start a handler refused: gone, without an error callback."""
    _unregister(run, None, MISSING, failed=True)


def failed(run: Run, error: BaseException, inputs: Any = MISSING) -> None:
    # v2 has no error event: subscribers see the stream stop
    _unregister(run, None, inputs, failed=True)
    if run.handlers and (hearing := listening(run.handlers, "on_chain_error")):
        notify(hearing, "on_chain_error", (error,), _end_kwargs(run, inputs))


async def afailed(run: Run, error: BaseException, inputs: Any = MISSING) -> None:
    _unregister(run, None, inputs, failed=True)
    if run.handlers and (hearing := listening(run.handlers, "on_chain_error")):
        await anotify(hearing, "on_chain_error", (error,), _end_kwargs(run, inputs))


def _offer_custom(run: Run, name: str, data: Any, tags: list[str], metadata: dict[str, Any]) -> None:
    for sub in _listeners(run):
        event = {
            "event": "on_custom_event",
            "run_id": run.id_text,
            "name": name,
            "tags": list(tags),
            "metadata": dict(metadata),
            "data": data,
            "parent_ids": sub.parent_ids(run),
        }
        sub.offer(event, name)


def custom_event(
    run: Run, name: str, data: Any, tags: list[str], metadata: dict[str, Any], handlers: Sequence[Any]
) -> None:
    """``handlers``: those ``listening`` to on_custom_event (may be empty)."""
    if _by_run or _by_trace:
        _offer_custom(run, name, data, tags, metadata)
    if handlers:
        notify(
            handlers, "on_custom_event", (name, data), {"run_id": run.id, "tags": tags, "metadata": metadata}
        )


async def acustom_event(
    run: Run, name: str, data: Any, tags: list[str], metadata: dict[str, Any], handlers: Sequence[Any]
) -> None:
    """``handlers``: those ``listening`` to on_custom_event (may be empty)."""
    if _by_run or _by_trace:
        _offer_custom(run, name, data, tags, metadata)
    if handlers:
        await anotify(
            handlers, "on_custom_event", (name, data), {"run_id": run.id, "tags": tags, "metadata": metadata}
        )


def has_listeners() -> bool:
    return bool(_by_run or _by_trace)
