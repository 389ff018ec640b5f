"""Attach to a run that is already live, from anywhere in the process.

    async with subscribe(run_id) as events:      # e.g. in an HTTP endpoint
        async for event in events:               # the same v2 dicts as astream_events
            ...

    with subscribe_sync(run_id, timeout=30) as events:   # from a thread
        for event in events:
            ...

A subscription sees the run's subtree from the moment it attaches and ends
after the run's end event (or when the run fails: v2 has no error event).
It keeps at most ``max_buffer`` undelivered events; a reader further behind
skips the oldest, counted in ``dropped``: a slow or absent reader never slows
the run down. Subscriptions with the same filter share one log and build
their dictionaries when they read, so idle ones cost the run next to
nothing; one that is dropped without ``close()`` is released when it is
garbage-collected, and every subscription is released when its run ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any

from otel_runnables import bridge
from otel_runnables._sentinel import MISSING
from otel_runnables.errors import RunNotFoundError

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "RunEvents",
    "RunEventsSync",
    "RunNotFoundError",
    "subscribe",
    "subscribe_sync",
]

DEFAULT_MAX_BUFFER = 10_000


def _parse_run_id(run_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(run_id, uuid.UUID):
        return run_id
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        raise RunNotFoundError(f"not a run id (expected a UUID): {run_id!r}") from None


def _parse_trace_id(trace_id: int | str) -> int:
    if isinstance(trace_id, int) and not isinstance(trace_id, bool):
        return trace_id
    try:
        return int(str(trace_id), 16)
    except ValueError:
        raise RunNotFoundError(f"not a trace id (expected 32 hex digits or an int): {trace_id!r}") from None


def _open(
    run_id: uuid.UUID | str | None,
    trace_id: int | str | None,
    event_filter: bridge.EventFilter,
    max_buffer: int,
) -> bridge.Subscription:
    if (run_id is None) == (trace_id is None):
        raise TypeError("subscribe needs exactly one of run_id or trace_id")
    if max_buffer < 1:
        raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
    if run_id is not None:
        root = _parse_run_id(run_id)
        subscription = bridge.Subscription(
            root_id=root, event_filter=event_filter, max_buffer=max_buffer, ends_with_root=True, shared=True
        )
        bridge.subscribe_subtree(subscription)
        # checked after registering, so a run ending in between is not missed
        if bridge.live_run(root) is None:
            bridge.unsubscribe(subscription)
            raise RunNotFoundError(f"no live run with id {root}")
        return subscription
    assert trace_id is not None
    trace = _parse_trace_id(trace_id)
    subscription = bridge.Subscription(
        trace_id=trace, event_filter=event_filter, max_buffer=max_buffer, ends_with_root=True, shared=True
    )
    bridge.subscribe_trace(subscription)
    if trace == 0 or not bridge.live_runs_in_trace(trace):
        bridge.unsubscribe(subscription)
        raise RunNotFoundError(f"no live run in trace {trace:032x}")
    return subscription


class _Attached:
    """What both forms share: the subscription, its drop count, detaching."""

    def __init__(self, subscription: bridge.Subscription) -> None:
        self._subscription = subscription

    @property
    def dropped(self) -> int:
        """Events lost because the buffer was full."""
        return self._subscription.dropped

    def close(self) -> None:
        """Detach; the run goes on untouched."""
        bridge.unsubscribe(self._subscription)


class RunEvents(_Attached, AsyncIterator[dict[str, Any]]):
    """The events of an attached subscription, for async code."""

    async def __anext__(self) -> dict[str, Any]:
        subscription = self._subscription
        while True:
            reader = subscription.reader
            if reader is None:
                raise StopAsyncIteration
            entry = await reader.get()
            if entry is bridge.END:
                self.close()
                raise StopAsyncIteration
            event = subscription.render(entry)
            if event is not None:
                return event

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> RunEvents:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class RunEventsSync(_Attached, Iterator[dict[str, Any]]):
    """The events of an attached subscription, for threads."""

    def __init__(self, subscription: bridge.Subscription, timeout: float | None) -> None:
        super().__init__(subscription)
        self._timeout = timeout

    def __next__(self) -> dict[str, Any]:
        subscription = self._subscription
        while True:
            reader = subscription.reader
            if reader is None:
                raise StopIteration
            entry = reader.get_sync(self._timeout)
            if entry is MISSING:
                raise TimeoutError(f"no run event within {self._timeout} s")
            if entry is bridge.END:
                self.close()
                raise StopIteration
            event = subscription.render(entry)
            if event is not None:
                return event

    def __enter__(self) -> RunEventsSync:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def subscribe(
    run_id: uuid.UUID | str | None = None,
    *,
    trace_id: int | str | None = None,
    include_names: Sequence[str] | None = None,
    include_types: Sequence[str] | None = None,
    include_tags: Sequence[str] | None = None,
    exclude_names: Sequence[str] | None = None,
    exclude_types: Sequence[str] | None = None,
    exclude_tags: Sequence[str] | None = None,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> RunEvents:
    """Attach to a live run (or trace) from async code; events arrive on the
    running event loop. Raises RunNotFoundError when nothing with that id is live."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "subscribe() needs a running event loop; use subscribe_sync() in threads"
        ) from None
    event_filter = bridge.EventFilter(
        include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
    )
    return RunEvents(_open(run_id, trace_id, event_filter, max_buffer))


def subscribe_sync(
    run_id: uuid.UUID | str | None = None,
    *,
    trace_id: int | str | None = None,
    timeout: float | None = None,
    include_names: Sequence[str] | None = None,
    include_types: Sequence[str] | None = None,
    include_tags: Sequence[str] | None = None,
    exclude_names: Sequence[str] | None = None,
    exclude_types: Sequence[str] | None = None,
    exclude_tags: Sequence[str] | None = None,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> RunEventsSync:
    """Attach to a live run (or trace) from a thread; iterating waits at most
    ``timeout`` seconds for each event (TimeoutError after that)."""
    event_filter = bridge.EventFilter(
        include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
    )
    return RunEventsSync(_open(run_id, trace_id, event_filter, max_buffer), timeout)
