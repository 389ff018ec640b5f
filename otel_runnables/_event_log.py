"""What the bus hands to subscriptions: one shared, bounded log per subtree.

The bus appends each event of a subtree (or trace) once, as a small tuple, to
one ``EventLog`` per distinct filter; every subscription sharing that log
reads it with its own cursor and builds the v2 dictionaries itself, on its
own thread. So a publisher pays for the logs, not for the readers: a reader
that never reads costs the run nothing per event, however many there are.

A reader keeps at most ``max_buffer`` undelivered events: when it falls
further behind, the oldest ones it has not read are skipped and counted in
``dropped`` (it catches up on the newest state). The log itself keeps no more
than its most patient reader could still read.

Appends happen under the log's lock on the publisher's thread, in order;
the end mark is one more step in that order, so a reader sees every event
published before the end, whichever thread published it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from otel_runnables._sentinel import MISSING

__all__ = ["END", "EventLog", "LogReader"]

END = object()
"""What a reader gets after the last entry of a closed log."""

Entry = tuple[Any, ...]
"""``(kind, run, a, b)``: kind is one of the bus's entry kinds (see bridge)."""

_TRIM_SLACK = 64  # entries past capacity before trimming: trimming is amortised
_NO_READERS: weakref.WeakSet[Any] = weakref.WeakSet()  # never added to


class EventLog:
    """The entries of one subtree (or trace) accepted by one filter."""

    __slots__ = (
        "__weakref__",
        "_base",
        "_capacity",
        "_closed",
        "_entries",
        "_lock",
        "_readers",
        "_sized_for",
        "_waiters",
        "ends_with_root",
        "filter_key",
        "shared",
    )

    def __init__(self, filter_key: Any, *, ends_with_root: bool, shared: bool) -> None:
        self.filter_key = filter_key
        self.ends_with_root = ends_with_root
        self.shared = shared  # later subscriptions with the same filter may join it
        self._entries: list[Entry] = []
        self._base = 0  # the position of _entries[0] since the log began
        self._capacity: int | None = 0  # entries kept for readers; None: unbounded
        self._sized_for = 0  # how many readers _capacity was worked out for
        self._closed = False
        self._lock = threading.Lock()
        self._waiters: list[Callable[[], None]] = []
        # a shared log counts its readers (a dropped one stops counting); an unshared one has one
        self._readers: weakref.WeakSet[LogReader] = weakref.WeakSet() if shared else _NO_READERS

    @property
    def closed(self) -> bool:
        return self._closed

    def readers(self) -> int:
        return len(self._readers)

    def append(self, entry: Entry) -> None:
        """From any thread; never waits for a reader."""
        with self._lock:
            if self._closed:
                return
            entries = self._entries
            entries.append(entry)
            capacity = self._capacity
            if capacity is not None and len(entries) > capacity + _TRIM_SLACK:
                if self.shared and len(self._readers) != self._sized_for:
                    self._resize()  # readers that were garbage-collected no longer count
                    capacity = self._capacity
                if capacity is not None and len(entries) > capacity:
                    cut = len(entries) - capacity
                    del entries[:cut]
                    self._base += cut
            waiters = self._waiters
            if waiters:
                self._waiters = []
        if waiters:
            for wake in waiters:
                wake()

    def close(self) -> None:
        """No more entries: readers get ``END`` once they have read the rest."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()

    def _join(self, reader: LogReader) -> int:
        """The reader's first position: the next entry to be appended."""
        if not self.shared:
            # its only reader, which joins before the log is registered, so before any
            # append: no lock, and no set of readers to keep (astream_events opens one per call)
            self._capacity = reader.max_buffer or None
            return self._base + len(self._entries)
        with self._lock:
            self._readers.add(reader)
            self._resize()
            return self._base + len(self._entries)

    def _leave(self, reader: LogReader) -> bool:
        """True when no reader is left."""
        if not self.shared:
            return True
        with self._lock:
            self._readers.discard(reader)
            self._resize()
            return not self._readers

    def _resize(self) -> None:
        sizes = [reader.max_buffer for reader in self._readers]
        self._capacity = None if 0 in sizes else max(sizes, default=0)
        self._sized_for = len(sizes)

    def _next(self, reader: LogReader, waiter: Callable[[], None] | None) -> Any:
        """The reader's next entry, ``END``, or ``MISSING`` (then ``waiter`` is
        called once something changes)."""
        with self._lock:
            base = self._base
            end = base + len(self._entries)
            cursor = reader.cursor
            limit = reader.max_buffer
            if limit and end - cursor > limit:
                reader.skipped += end - cursor - limit
                cursor = end - limit
            if cursor < base:  # cannot happen while the reader is counted; kept exact anyway
                reader.skipped += base - cursor
                cursor = base
            if cursor < end:
                reader.cursor = cursor + 1
                return self._entries[cursor - base]
            reader.cursor = cursor
            if self._closed:
                return END
            if waiter is not None:
                self._waiters.append(waiter)
            return MISSING

    def pending(self, reader: LogReader) -> tuple[int, int]:
        """(undelivered entries, entries already skipped or about to be) for ``reader``."""
        with self._lock:
            end = self._base + len(self._entries)
            waiting = end - reader.cursor
            limit = reader.max_buffer
            over = waiting - limit if limit and waiting > limit else 0
            return waiting - over, reader.skipped + over


def _wake_future(
    future: asyncio.Future[None], loop: asyncio.AbstractEventLoop, thread: int
) -> Callable[[], None]:
    def wake() -> None:
        if threading.get_ident() == thread:
            if not future.done():
                future.set_result(None)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, future)

    return wake


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LogReader:
    """One reader's position in an ``EventLog``."""

    __slots__ = ("__weakref__", "_event", "cursor", "log", "max_buffer", "skipped")

    def __init__(self, log: EventLog, max_buffer: int) -> None:
        self.log = log
        self.max_buffer = max_buffer  # 0: unbounded
        self.skipped = 0
        self._event: threading.Event | None = None
        self.cursor = log._join(self)

    def leave(self) -> bool:
        """Stop counting this reader in the log's bound; True when it was the last."""
        return self.log._leave(self)

    @property
    def dropped(self) -> int:
        return self.log.pending(self)[1]

    def poll(self) -> Any:
        """The next entry, ``END``, or ``MISSING`` without waiting."""
        log = self.log
        if log._capacity is None and not log.shared:
            # a log only this reader reads, never trimmed: its entries stay where they are
            # and appends only add to the end, so reading needs no lock. The end mark is
            # read first: every entry appended before it is then already in the list.
            closed = log._closed
            cursor = self.cursor
            entries = log._entries
            if cursor < len(entries):
                self.cursor = cursor + 1
                return entries[cursor]
            return END if closed else MISSING
        return log._next(self, None)

    async def get(self) -> Any:
        """The next entry or ``END``, waiting on the running loop."""
        entry = self.poll()
        if entry is not MISSING:
            return entry
        return await self.wait()

    async def wait(self) -> Any:
        """``get`` for a reader whose ``poll()`` just found nothing."""
        loop = asyncio.get_running_loop()
        thread = threading.get_ident()
        while True:
            future: asyncio.Future[None] = loop.create_future()
            entry = self.log._next(self, _wake_future(future, loop, thread))
            if entry is not MISSING:
                return entry
            await future

    def get_sync(self, timeout: float | None) -> Any:
        """The next entry or ``END``, waiting at most ``timeout`` seconds
        (``MISSING`` when that passed)."""
        event = self._event
        if event is None:
            event = self._event = threading.Event()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event.clear()
            entry = self.log._next(self, event.set)
            if entry is not MISSING:
                return entry
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return MISSING
            event.wait(remaining)
