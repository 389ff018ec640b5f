"""``follow()``: a run's ``astream_events(version="v2")`` dictionaries from its
record, replayed and then live, from any process.

    async for event in otel_runnables.follow(run_id):        # the embedded store
        ...
    for event in otel_runnables.follow_sync(run_id, backend="jaeger", url=...):
        ...

It yields the subtree of a run id (or every root of a trace id): what has
already happened (``since="start"``; ``"now"`` skips it), then each run
start, custom event and run end as it is recorded, and it ends after the
followed run's end. A run that failed ends the iteration with
``RunFailedError`` (its error type and message from the record), one whose
process died with ``RunLostError``; an id not known within ``wait`` seconds
raises ``RunNotFoundError``; with ``timeout``, a record that stops growing
before the run ends raises ``FollowTimeoutError`` (from Jaeger or Tempo, the
only way a run whose process was killed ends: they hold no sign of it, see
``feeds.RemoteFeed``). Payloads are the recorded JSON values (bounded,
redacted); stream chunks, which the record does not keep, are not yielded.

From the embedded store, followers of one file in a process share one
poller that reads only new rows; a run live in this process (whose store
this process writes) is followed on the run bus itself, after its history.
Jaeger and Tempo are read every ``interval`` seconds.
"""

from __future__ import annotations

import collections
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any

from otel_runnables import _bridge as bridge
from otel_runnables._bridge import EventFilter
from otel_runnables._errors import FollowTimeoutError
from otel_runnables.progress.backend import Backend
from otel_runnables.progress.feeds import (
    BATCH,
    ERROR,
    HISTORY,
    BusFeed,
    Feed,
    InboxFeed,
    RemoteFeed,
    Target,
    close_quietly,
    live_here,
    store_writer,
)
from otel_runnables.progress.live_tree import tree_of
from otel_runnables.progress.local import LocalBackend
from otel_runnables.progress.model import RunTree
from otel_runnables.progress.query import (
    BACKENDS,
    InvalidIdError,
    UnknownBackendError,
    make_backend,
    parse_id,
)
from otel_runnables.progress.replay import Replayer
from otel_runnables.progress.store_poller import StorePoller

__all__ = ["DEFAULT_WAIT", "Follow", "follow", "follow_sync"]

DEFAULT_WAIT = 30.0
DEFAULT_REMOTE_INTERVAL = 1.0
BUS_BACKLOG = 10_000  # bus events kept for a follower that does not read


class Follow(AsyncIterator[dict[str, Any]], Iterator[dict[str, Any]]):
    """The events of one followed run: iterate it with ``async for`` (``follow``)
    or ``for`` (``follow_sync``); ``close()`` releases its poller or thread."""

    def __init__(
        self,
        feed: Feed,
        replayer: Replayer,
        *,
        timeout: float | None = None,
        what: str = "the followed run",
        source: str = "the record",
        quiet_hint: str = "",
    ) -> None:
        self._feed = feed
        self._replayer = replayer
        self._pending: collections.deque[tuple[str, dict[str, Any], int]] = collections.deque()
        self._timeout = timeout
        self._what = what
        self._source = source
        self._quiet_hint = quiet_hint  # what a quiet record may mean, said by FollowTimeoutError
        self._quiet_since: float | None = None  # monotonic time the record last grew; None: not found yet
        self._taken = 0
        self._closed = False
        self.delivered = 0
        self._batches = 0
        self._resume_after: str | None = None
        self.last_event_id: str | None = None
        """The id of the event last returned: the same event has the same id in
        every follow of the run (an SSE ``id:``, for ``Last-Event-ID``)."""
        self.last_event_time_ns: int | None = None
        """When the event last returned happened, as recorded (ns since the epoch)."""
        self._finalizer = weakref.finalize(self, close_quietly, feed)

    @property
    def dropped(self) -> int:
        """Batches this follower fell too far behind to keep: it re-read the
        record instead, so no event was lost to the reader."""
        return self._feed.dropped

    @property
    def finished(self) -> bool:
        return self._replayer.finished and not self._pending

    def tree(self) -> RunTree:
        """The followed runs as a progress tree, as far as they have been read
        (every event of each run only when opened with ``keep_events``)."""
        return tree_of(self._replayer)

    def _take(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == ERROR:
            self.close()
            raise item[1]
        if kind in (BATCH, HISTORY):
            _, runs, events, emit = item
            self._pending.extend(self._replayer.update(runs, events, emit=emit))
            self._batches += 1
            taken = self._replayer.taken_count
            if taken != self._taken or self._quiet_since is None:
                self._taken, self._quiet_since = taken, time.monotonic()
            if self._batches == 1 and self._resume_after is not None:
                self._skip_through(self._resume_after)

    def resume_after(self, event_id: str) -> None:
        """Skip what the reader had already: the events of the history up to and
        including ``event_id`` (an earlier follow's ``last_event_id``). When the
        history does not hold that id, nothing is skipped. Call before reading."""
        if self._batches:
            raise RuntimeError("resume_after() must come before the first read")
        self._resume_after = event_id

    def _skip_through(self, event_id: str) -> None:
        ids = [made_id for made_id, _, _ in self._pending]
        if event_id in ids:
            for _ in range(ids.index(event_id) + 1):
                self._pending.popleft()

    def _next_ready(self) -> dict[str, Any] | None:
        if self._pending:
            self.delivered += 1
            self.last_event_id, event, self.last_event_time_ns = self._pending.popleft()
            return event
        if self._replayer.finished or self._closed:
            self.close()
            self._replayer.raise_outcome()
            return None
        return None

    def _remaining(self, deadline: float | None) -> float | None:
        """Seconds to wait for the feed: until the caller's deadline or the follow's quiet limit."""
        limits = [] if deadline is None else [deadline]
        if self._timeout is not None and self._quiet_since is not None:
            limits.append(self._quiet_since + self._timeout)
        return max(0.0, min(limits) - time.monotonic()) if limits else None

    def _raise_if_quiet(self) -> None:
        """``FollowTimeoutError`` once the record has not grown for ``timeout`` seconds."""
        if self._timeout is None or self._quiet_since is None:
            return
        if time.monotonic() - self._quiet_since < self._timeout:
            return
        self.close()
        status = self._replayer.status_of_root()
        raise FollowTimeoutError(self._what, self._timeout, status, self._source, self._quiet_hint)

    async def next_event(self, timeout: float | None) -> dict[str, Any] | None:
        """The next event, or None when ``timeout`` seconds passed without one.
        Raises StopAsyncIteration at the end (or the run's failure), and
        ``FollowTimeoutError`` when the follow's own ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = self._next_ready()
            if ready is not None:
                return ready
            if self._closed:
                raise StopAsyncIteration
            self._raise_if_quiet()
            item = await self._feed.next(self._remaining(deadline))
            if item is not None:
                self._take(item)
            elif deadline is not None and time.monotonic() >= deadline:
                return None

    def next_event_sync(self, timeout: float | None) -> dict[str, Any] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = self._next_ready()
            if ready is not None:
                return ready
            if self._closed:
                raise StopIteration
            self._raise_if_quiet()
            item = self._feed.next_sync(self._remaining(deadline))
            if item is not None:
                self._take(item)
            elif deadline is not None and time.monotonic() >= deadline:
                return None

    # -- async iteration -----------------------------------------------------------------

    async def __anext__(self) -> dict[str, Any]:
        event = await self.next_event(None)
        assert event is not None  # without a deadline, only an event or an error ends the wait
        return event

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Follow:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- sync iteration ------------------------------------------------------------------

    def __next__(self) -> dict[str, Any]:
        event = self.next_event_sync(None)
        assert event is not None  # without a deadline, only an event or an error ends the wait
        return event

    def __enter__(self) -> Follow:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop following: the poller, thread or bus subscription is released."""
        if not self._closed:
            self._closed = True
            self._finalizer()


def _target(id: str | uuid.UUID) -> Target:
    if isinstance(id, uuid.UUID):
        return Target(str(id), None)
    if not isinstance(id, str):
        raise InvalidIdError(f"expected a run id (UUID) or a trace id (hex), got {type(id).__name__}")
    run_id, trace_id = parse_id(id)
    return Target(run_id, trace_id)


_LOCAL_QUIET = "its process was still there when last looked at (a run whose process is gone ends as lost)"
_REMOTE_QUIET = (
    "it may be working quietly, or its process may be gone: Jaeger and Tempo hold no sign "
    "of a process that stopped, so there a killed run never ends"
)


def _describe_source(source: Backend) -> str:
    if isinstance(source, LocalBackend):
        return f"the store {source.store.path}"
    url = getattr(getattr(source, "options", None), "url", None)
    return f"{source.name} at {url}" if isinstance(url, str) else str(source.name)


def _check_options(since: str, wait: float, interval: float | None, timeout: float | None = None) -> None:
    if since not in ("start", "now"):
        raise ValueError(f'since must be "start" or "now", got {since!r}')
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
        raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0
    ):
        raise ValueError(f"interval must be a number of seconds > 0, got {interval!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")


def _open(
    id: str | uuid.UUID,
    backend: str | Backend | None,
    url: str | None,
    since: str,
    wait: float,
    interval: float | None,
    event_filter: EventFilter,
    timeout: float | None,
    options: dict[str, Any],
    *,
    keep_events: bool = False,
) -> Follow:
    _check_options(since, wait, interval, timeout)
    target = _target(id)
    if backend is None:
        backend = "local"
    if isinstance(backend, str) and backend not in BACKENDS:
        raise UnknownBackendError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if url is not None:
        options["url"] = url
    source = make_backend(backend, **options) if isinstance(backend, str) else backend
    replayer = Replayer(target.run_id, event_filter, keep_events=keep_events)
    emit_history = since == "start"
    feed: Feed
    what, where, hint = target.describe(), _describe_source(source), _REMOTE_QUIET
    if isinstance(source, LocalBackend):
        path = source.store.path
        hint = _LOCAL_QUIET
        flush = store_writer(path)
        if flush is not None and live_here(target):
            subscription = bridge.Subscription(
                root_id=None if target.run_id is None else uuid.UUID(target.run_id),
                trace_id=None if target.trace_id is None else int(target.trace_id, 16),
                ends_with_root=True,
                max_buffer=BUS_BACKLOG,  # past it, the follower reads the record again (BusFeed)
            )
            if target.run_id is not None:
                bridge.subscribe_subtree(subscription)
            else:
                bridge.subscribe_trace(subscription)
            feed = BusFeed(subscription, path, flush, target, emit_history)
        else:
            inbox = InboxFeed()
            StorePoller.join(path, inbox, target, wait=wait, emit_history=emit_history)
            feed = inbox
    else:
        feed = RemoteFeed(
            source,
            target,
            wait=wait,
            interval=interval if interval is not None else DEFAULT_REMOTE_INTERVAL,
            emit_history=emit_history,
        )
    return Follow(feed, replayer, timeout=timeout, what=what, source=where, quiet_hint=hint)


def follow(
    id: str | uuid.UUID,
    *,
    backend: str | Backend | None = None,
    url: str | None = None,
    since: str = "start",
    wait: float = DEFAULT_WAIT,
    interval: float | None = None,
    timeout: float | None = None,
    request_timeout: float | None = None,
    include_names: Sequence[str] | None = None,
    include_types: Sequence[str] | None = None,
    include_tags: Sequence[str] | None = None,
    exclude_names: Sequence[str] | None = None,
    exclude_types: Sequence[str] | None = None,
    exclude_tags: Sequence[str] | None = None,
    keep_events: bool = False,
    **options: Any,
) -> Follow:
    """Follow a run (its id, a UUID) or a trace (its hex id) from its record;
    ``async for event in follow(...)``, or from a thread ``for event in
    follow_sync(...)`` (the same function). ``backend``: ``"local"`` (default: the
    embedded store; ``path=`` another file), ``"jaeger"`` or ``"tempo"`` with
    ``url`` and the options of ``progress.get`` (``headers``, ``ca_file``,
    ``client_cert``, ``client_key``, ``insecure_skip_verify``; its ``timeout``
    for each request is ``request_timeout`` here).
    ``interval``: seconds between reads of Jaeger/Tempo (default 1).
    ``timeout``: give up with ``FollowTimeoutError`` (a ``TimeoutError``) once
    nothing new was recorded for the followed runs for that many seconds
    (default: follow as long as the run goes on). From Jaeger or Tempo this is
    the only end of a run whose process was killed: they hold no sign of it.
    ``keep_events``: keep every event read, so that ``Follow.tree()`` shows each
    run's events and progress (memory grows with the run's record)."""
    event_filter = EventFilter(
        include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
    )
    if request_timeout is not None:
        options["timeout"] = request_timeout  # what progress.get calls it
    return _open(
        id, backend, url, since, wait, interval, event_filter, timeout, dict(options), keep_events=keep_events
    )


follow_sync = follow
"""``follow`` from a thread: ``for event in follow_sync(...)``. The same call: the
``Follow`` it returns is iterated with ``for`` as well as ``async for``."""
