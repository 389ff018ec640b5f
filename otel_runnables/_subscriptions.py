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
import collections
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any

from otel_runnables import _bridge as bridge
from otel_runnables._errors import RunNotFoundError
from otel_runnables._sentinel import MISSING

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "RunEvents",
    "RunEventsSync",
    "RunNotFoundError",
    "subscribe",
    "subscribe_sync",
]

DEFAULT_MAX_BUFFER = 10_000
DEFAULT_WAIT = 30.0


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
    since: str,
    wait: float,
) -> tuple[bridge.Subscription, bool]:
    """The subscription, registered before anything is looked at (so nothing
    published from now on is missed), and whether its run was live then."""
    if (run_id is None) == (trace_id is None):
        raise TypeError("subscribe needs exactly one of run_id or trace_id")
    if max_buffer < 1:
        raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
    if since not in ("start", "now"):
        raise ValueError(f'since must be "start" or "now", got {since!r}')
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
        raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
    if run_id is not None:
        root = _parse_run_id(run_id)
        subscription = bridge.Subscription(
            root_id=root, event_filter=event_filter, max_buffer=max_buffer, ends_with_root=True, shared=True
        )
        bridge.subscribe_subtree(subscription)
        return subscription, bridge.live_run(root) is not None
    assert trace_id is not None
    trace = _parse_trace_id(trace_id)
    if trace == 0:
        raise RunNotFoundError("0 is not a trace id")
    subscription = bridge.Subscription(
        trace_id=trace, event_filter=event_filter, max_buffer=max_buffer, ends_with_root=True, shared=True
    )
    bridge.subscribe_trace(subscription)
    return subscription, bool(bridge.live_runs_in_trace(trace))


class _Attached:
    """What both forms share: the subscription, the history replayed before it,
    what to skip of the bus because the history had it, and detaching.

    On the first read the subscription finds where its run is: live when it
    attached (``since="start"``: its record so far is replayed first), started
    since (everything is in the log), ended (its record, then the end), or not
    started yet (waited for up to ``wait`` seconds)."""

    def __init__(self, subscription: bridge.Subscription, live: bool, since: str, wait: float) -> None:
        self._subscription = subscription
        self._live_at_start = live
        self._since = since
        self._wait = wait
        self._prepared = False
        self._history: collections.deque[dict[str, Any]] = collections.deque()
        self._replayed: set[str] = set()
        self._lookahead: Any = MISSING
        self._ended = False
        self.error: BaseException | None = None
        """The exception the run ended with, when it failed in this process."""

    @property
    def dropped(self) -> int:
        """Events skipped because this reader fell more than ``max_buffer`` behind."""
        return self._subscription.dropped

    def close(self) -> None:
        """Detach; the run goes on untouched."""
        bridge.unsubscribe(self._subscription)

    def _describe(self) -> str:
        subscription = self._subscription
        if subscription.root_key is not None:
            return f"run {subscription.root_key}"
        return f"trace {subscription.trace_id:032x}"

    # -- finding the run (blocking steps run in a thread for async readers) -------------

    def _target(self) -> Any:
        from otel_runnables.progress.feeds import Target

        subscription = self._subscription
        trace = None if subscription.trace_id is None else f"{subscription.trace_id:032x}"
        return Target(subscription.root_key, trace)

    def _record(self, emit: bool) -> tuple[list[dict[str, Any]], set[str], str | None]:
        """(history events, their ids, the run's status in the record or None when
        the record does not know it), from the store this process writes."""
        from otel_runnables.progress.feeds import read_history, this_process_store
        from otel_runnables.progress.replay import Replayer

        store = this_process_store()
        if store is None:
            if self._since == "start":
                raise RunNotFoundError(
                    f'since="start" replays the record of {self._describe()} from the embedded store, '
                    "which this process does not write (OTEL_RUNNABLES_STORE is off, or the tracer "
                    'provider has no store); use since="now"'
                )
            return [], set(), None
        path, flush = store
        flush()
        _, runs, events, _ = read_history(path, self._target(), emit)
        replayer = Replayer(self._subscription.root_key, self._subscription.event_filter)
        replayed = replayer.update(runs, events, emit=emit)
        taken = replayer.taken_ids() if emit else set()  # the bus then skips what was yielded
        status = replayer.status_of_root()
        return [event for _, event, _ in replayed], taken, status

    def _after_record(self, record: tuple[list[dict[str, Any]], set[str], str | None]) -> bool:
        """Take what the record says; True when settled (no waiting for a start)."""
        history, taken, status = record
        self._history.extend(history)
        self._replayed = taken
        if self._live_at_start:
            return True
        reader = self._subscription.reader
        if self._lookahead is MISSING and reader is not None:
            self._lookahead = reader.poll()
        if self._lookahead is not MISSING:
            return True  # it started after we attached: the log has the rest
        if status is None:
            return False  # not known yet: wait for it to start
        if status == "running":
            if self._is_live_now():
                return True
            raise RunNotFoundError(
                f"{self._describe()} is running in another process: otel_runnables.follow() "
                "follows it from its record"
            )
        self._ended = True  # it ended before we attached: its history is all there is
        self.close()
        return True

    def _is_live_now(self) -> bool:
        subscription = self._subscription
        if subscription.root_id is not None:
            return bridge.live_run(subscription.root_id) is not None
        assert subscription.trace_id is not None
        return bool(bridge.live_runs_in_trace(subscription.trace_id))

    def _first_steps(self) -> bool:
        """The checks that need no waiting; True when settled."""
        self._prepared = True
        reader = self._subscription.reader
        if reader is not None and not self._live_at_start:
            self._lookahead = reader.poll()
            if self._lookahead is not MISSING:
                return True  # it started after we attached: the log has all of it
        return self._live_at_start and self._since == "now"

    def _not_found(self) -> RunNotFoundError:
        return RunNotFoundError(f"no {self._describe()} started within {self._wait:g} s")

    def _prepare_sync(self) -> None:
        if self._first_steps() or self._after_record(self._record(self._since == "start")):
            return
        reader = self._subscription.reader
        assert reader is not None
        self._lookahead = reader.get_sync(self._wait)
        if self._lookahead is MISSING:
            self.close()
            raise self._not_found()

    async def _prepare(self) -> None:
        if self._first_steps():
            return
        if self._after_record(await asyncio.to_thread(self._record, self._since == "start")):
            return
        reader = self._subscription.reader
        assert reader is not None
        try:
            self._lookahead = await asyncio.wait_for(reader.get(), self._wait)
        except asyncio.TimeoutError:
            self.close()
            raise self._not_found() from None

    # -- reading ---------------------------------------------------------------------------

    def _take(self, entry: Any) -> tuple[bool, dict[str, Any] | None]:
        """(the stream ended, the event of this entry or None to read on)."""
        if entry is bridge.END:
            self.close()
            return True, None
        if entry[0] is bridge.FAILED and entry[1].id_text == self._subscription.root_key:
            self.error = entry[2]
        if self._replayed:
            from otel_runnables.progress.facts import entry_id

            if entry_id(entry) in self._replayed:
                return False, None  # the history had it
        return False, self._subscription.render(entry)

    def _next_entry_ready(self) -> Any:
        entry, self._lookahead = self._lookahead, MISSING
        return entry


class RunEvents(_Attached, AsyncIterator[dict[str, Any]]):
    """The events of a subscription, for async code."""

    async def __anext__(self) -> dict[str, Any]:
        if not self._prepared:
            await self._prepare()
        if self._history:
            return self._history.popleft()
        subscription = self._subscription
        while True:
            if self._ended:
                raise StopAsyncIteration
            entry = self._next_entry_ready()
            if entry is MISSING:
                reader = subscription.reader
                if reader is None:
                    raise StopAsyncIteration
                entry = await reader.get()
            ended, event = self._take(entry)
            if ended:
                self._ended = True
                raise StopAsyncIteration
            if event is not None:
                return event

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> RunEvents:
        if not self._prepared:
            await self._prepare()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class RunEventsSync(_Attached, Iterator[dict[str, Any]]):
    """The events of a subscription, for threads."""

    def __init__(
        self, subscription: bridge.Subscription, live: bool, since: str, wait: float, timeout: float | None
    ) -> None:
        super().__init__(subscription, live, since, wait)
        self._timeout = timeout

    def __next__(self) -> dict[str, Any]:
        if not self._prepared:
            self._prepare_sync()
        if self._history:
            return self._history.popleft()
        subscription = self._subscription
        while True:
            if self._ended:
                raise StopIteration
            entry = self._next_entry_ready()
            if entry is MISSING:
                reader = subscription.reader
                if reader is None:
                    raise StopIteration
                entry = reader.get_sync(self._timeout)
                if entry is MISSING:
                    raise TimeoutError(f"no run event within {self._timeout} s")
            ended, event = self._take(entry)
            if ended:
                self._ended = True
                raise StopIteration
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
    since: str = "now",
    wait: float = DEFAULT_WAIT,
    include_names: Sequence[str] | None = None,
    include_types: Sequence[str] | None = None,
    include_tags: Sequence[str] | None = None,
    exclude_names: Sequence[str] | None = None,
    exclude_types: Sequence[str] | None = None,
    exclude_tags: Sequence[str] | None = None,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> RunEvents:
    """Attach to a run (or trace) of this process from async code; events arrive
    on the running event loop. ``since="start"`` replays what the run did
    before (from the embedded store); a run not started yet is waited for up
    to ``wait`` seconds (then ``RunNotFoundError``, raised by the first read);
    a run that has ended gives its history (``since="start"``) and ends."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "subscribe() needs a running event loop; use subscribe_sync() in threads"
        ) from None
    event_filter = bridge.EventFilter(
        include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
    )
    subscription, live = _open(run_id, trace_id, event_filter, max_buffer, since, wait)
    return RunEvents(subscription, live, since, wait)


def subscribe_sync(
    run_id: uuid.UUID | str | None = None,
    *,
    trace_id: int | str | None = None,
    since: str = "now",
    wait: float = DEFAULT_WAIT,
    timeout: float | None = None,
    include_names: Sequence[str] | None = None,
    include_types: Sequence[str] | None = None,
    include_tags: Sequence[str] | None = None,
    exclude_names: Sequence[str] | None = None,
    exclude_types: Sequence[str] | None = None,
    exclude_tags: Sequence[str] | None = None,
    max_buffer: int = DEFAULT_MAX_BUFFER,
) -> RunEventsSync:
    """``subscribe`` from a thread; after the first event, iterating waits at most
    ``timeout`` seconds for each next one (TimeoutError after that)."""
    event_filter = bridge.EventFilter(
        include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
    )
    subscription, live = _open(run_id, trace_id, event_filter, max_buffer, since, wait)
    return RunEventsSync(subscription, live, since, wait, timeout)
