"""Export that never blocks, never floods the log, and never outlives its timeout.

``BoundedBatchSpanProcessor`` batches spans to an exporter on one worker thread,
like the SDK's BatchSpanProcessor, with what that one lacks:

- a full queue drops the *new* span, counted exactly (``dropped``) and logged
  once (the SDK logs every drop and evicts the oldest span);
- ``force_flush(timeout_millis)`` waits at most its timeout and returns False
  unless everything queued before the call was delivered; the SDK's exports on
  the caller's thread, as long as the exporter takes, and returns True;
- ``shutdown(timeout_millis)`` gives the queue at most the export timeout (the
  OTLP timeout, ``OTEL_EXPORTER_OTLP_TIMEOUT``) to drain, then gives up on the
  rest, counts it (``unexported``) and returns False: a process exits on time
  with a dead, black-holed or dripping collector.

An export in flight cannot be interrupted (a dripping server keeps it going
until its socket gives up); the worker is a daemon thread, so it never holds
the process. ``CountingExporter`` counts the spans an exporter failed to
deliver (an error result or an exception), logged the same way
(``CountedExport``, which counts log records too). The user's call
never waits on either: spans only go onto a bounded queue on the caller's thread.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence, Sized
from typing import Generic, Protocol, TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["BoundedBatchSpanProcessor", "CountedExport", "CountingExporter", "call_within"]

logger = logging.getLogger(__name__)

Batch = TypeVar("Batch", bound=Sized)
Result = TypeVar("Result")
Batch_contra = TypeVar("Batch_contra", contravariant=True)
Result_co = TypeVar("Result_co", covariant=True)


class _Exporter(Protocol[Batch_contra, Result_co]):
    """What the SDK's span and log record exporters share."""

    def export(self, batch: Batch_contra, /) -> Result_co: ...

    def force_flush(self, timeout_millis: int = 30_000) -> bool: ...

    def shutdown(self) -> None: ...


class CountedExport(Generic[Batch, Result]):
    """Wraps an exporter; ``failed`` counts the items it did not deliver (an error
    result or an exception): the first failure is logged at once, the total at
    shutdown. Spans and log records are counted the same way."""

    def __init__(
        self,
        exporter: _Exporter[Batch, Result],
        items: str,
        success: Result,
        failure: Result,
        log: logging.Logger,
    ) -> None:
        self.exporter = exporter
        self.exported = 0  # items whose export returned: delivered, or counted in ``failed``
        self.failed = 0
        self._items = items
        self._success = success
        self._failure = failure
        self._log = log
        self._warned = False

    def export(self, batch: Batch) -> Result:
        try:
            result = self.exporter.export(batch)
        except Exception as exc:
            self._lost(len(batch), f"{type(exc).__name__}: {exc}")
            return self._failure
        finally:
            self.exported += len(batch)  # one export at a time: the batch processor's worker
        if result is not self._success:
            self._lost(len(batch), "the exporter reported a failure")
        return result

    def _lost(self, count: int, why: str) -> None:
        self.failed += count
        if not self._warned:
            self._warned = True
            self._log.warning(
                "%s could not export %d %s (%s); further failures are counted and reported at shutdown",
                type(self.exporter).__name__,
                count,
                self._items,
                why,
            )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()
        if self.failed:
            self._log.warning(
                "%s failed to export %d %s in all", type(self.exporter).__name__, self.failed, self._items
            )


class CountingExporter(CountedExport[Sequence[ReadableSpan], SpanExportResult], SpanExporter):
    """Wraps a span exporter; ``failed`` counts the spans it did not deliver."""

    def __init__(self, exporter: SpanExporter) -> None:
        super().__init__(exporter, "spans", SpanExportResult.SUCCESS, SpanExportResult.FAILURE, logger)


def call_within(function: Callable[[], object], seconds: float, what: str) -> bool:
    """Call ``function`` on a daemon thread and wait at most ``seconds``: False if it
    did not return in time (it is left to finish on its own) or raised."""
    outcome: list[bool] = []

    def call() -> None:
        try:
            function()
            outcome.append(True)
        except Exception:
            logger.exception("%s failed", what)
            outcome.append(False)

    try:
        thread = threading.Thread(target=call, name=f"otel_runnables-{what}", daemon=True)
        thread.start()
    except RuntimeError:  # no new threads while the interpreter finalises: call it here
        call()
        return outcome == [True]
    thread.join(max(0.0, seconds))
    if thread.is_alive():
        logger.warning("%s did not finish within %.3g s; not waiting for it", what, seconds)
        return False
    return outcome == [True]


class BoundedBatchSpanProcessor(SpanProcessor):
    """Batches sampled spans to ``exporter`` from one daemon thread (see the module doc).

    ``export_timeout`` (seconds) bounds ``shutdown()`` and a ``force_flush()`` called
    without a timeout; ``schedule_delay`` (seconds) is the longest a span waits for
    its batch; at most ``max_queue_size`` spans wait, ``max_export_batch_size`` go
    in one export call."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        export_timeout: float = 30.0,
        schedule_delay: float = 5.0,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
    ) -> None:
        self.exporter = exporter
        self.export_timeout = export_timeout
        self.schedule_delay = schedule_delay
        self.max_queue_size = max_queue_size
        self.max_export_batch_size = min(max_export_batch_size, max_queue_size)
        self.dropped = 0  # refused: the queue was full
        self.unexported = 0  # given up on at shutdown, still queued or in an export that overran
        self._warned = False
        self._closing = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            me = weakref.ref(self)

            def after_fork_in_child() -> None:
                processor = me()
                if processor is not None:
                    processor._reset()  # the parent's spans are the parent's to export

            os.register_at_fork(after_in_child=after_fork_in_child)

    def _reset(self) -> None:
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._changed = threading.Condition(threading.Lock())
        self._queued = 0  # spans accepted so far: the last one's number
        self._settled = 0  # spans whose export returned (delivered or failed), in queue order
        self._last_failed = 0  # the number of the last span of the last batch that failed
        self._flush_to = 0  # a flush or shutdown wants spans up to this number exported now
        self._stopping = False
        self._closed: bool | None = None  # shut down: whether everything was delivered
        self._worker: threading.Thread | None = None

    # -- the caller's side: never waits ---------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        with self._changed:
            if self._stopping or len(self._queue) >= self.max_queue_size:
                self.dropped += 1
                warn = not self._warned
                self._warned = True
            else:
                self._queue.append(span)
                self._queued += 1
                if len(self._queue) == self.max_export_batch_size:
                    self._changed.notify_all()
                warn = False
            if self._worker is None:
                self._start_worker()
        if warn:
            logger.warning(
                "the span export queue is full (%d spans; OTEL_BSP_MAX_QUEUE_SIZE) or shut down: "
                "dropping new spans, counted and reported at shutdown",
                self.max_queue_size,
            )

    def _start_worker(self) -> None:
        worker = threading.Thread(target=self._work, name="otel_runnables-span-export", daemon=True)
        self._worker = worker
        worker.start()

    # -- the worker ---------------------------------------------------------------------

    def _due(self) -> bool:
        return bool(self._queue) and (
            self._stopping or self._flush_to > self._settled or len(self._queue) >= self.max_export_batch_size
        )

    def _work(self) -> None:
        changed = self._changed  # a fork gives the child a new one, and a new worker
        while True:
            with changed:
                if not self._due():
                    changed.wait_for(self._due, timeout=self.schedule_delay)
                if self._stopping and not self._queue:
                    return
                count = min(len(self._queue), self.max_export_batch_size)
                batch = [self._queue.popleft() for _ in range(count)]
            if not batch:
                continue
            try:
                delivered = self.exporter.export(batch) is SpanExportResult.SUCCESS
            except Exception:  # an exporter that is not a CountingExporter
                logger.exception("exporting %d spans failed", len(batch))
                delivered = False
            with changed:
                self._settled += len(batch)
                if not delivered:
                    self._last_failed = self._settled
                changed.notify_all()

    # -- flush and shutdown: bounded by their timeout ---------------------------------------

    def request_flush(self) -> tuple[int, int]:
        """Ask the worker to export everything queued so far now; returns the numbers
        of the last span queued and the last settled, to wait on."""
        with self._changed:
            target, already = self._queued, self._settled
            if target > already:
                self._flush_to = max(self._flush_to, target)
                self._changed.notify_all()
            return target, already

    def _wait(self, target: int, already: int, seconds: float) -> bool:
        """True once spans up to ``target`` settled within ``seconds``, none after ``already`` failed."""
        with self._changed:
            settled = self._changed.wait_for(lambda: self._settled >= target, timeout=max(0.0, seconds))
            return settled and self._last_failed <= already

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Export what was queued before the call; False if some of it was not delivered
        within ``timeout_millis`` (default: the export timeout) or failed."""
        seconds = self.export_timeout if timeout_millis is None else timeout_millis / 1000
        return self._wait(*self.request_flush(), seconds)

    def stop_accepting(self) -> None:
        """The start of a shutdown: new spans are refused (counted), the queue goes now."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def shutdown(self) -> None:
        self.shutdown_within()

    def shutdown_within(self, timeout_millis: int | None = None) -> bool:
        """Export what is queued within ``timeout_millis`` (default: the export timeout),
        then stop; what is left is counted in ``unexported``. False unless all was delivered."""
        with self._closing:  # a second caller waits for the first, then has its answer
            if self._closed is None:
                self._closed = self._close(timeout_millis)
            return self._closed

    def _close(self, timeout_millis: int | None) -> bool:
        started = time.monotonic()
        seconds = self.export_timeout if timeout_millis is None else timeout_millis / 1000
        self.stop_accepting()
        delivered = self._wait(*self.request_flush(), seconds)
        with self._changed:
            left = self._queued - self._settled
            self.unexported += left
            self._queue.clear()
            self._settled = self._queued  # given up on: nothing waits for them any more
            self._changed.notify_all()
        if left:
            logger.warning(
                "%d spans were not exported: %s did not finish within %.3g s (the export timeout)",
                left,
                type(getattr(self.exporter, "exporter", self.exporter)).__name__,
                seconds,
            )
        if self.dropped:
            logger.warning("%d spans were dropped because the export queue was full", self.dropped)
        remaining = seconds - (time.monotonic() - started)
        closed = call_within(self.exporter.shutdown, max(remaining, 0.1), "span exporter shutdown")
        return delivered and left == 0 and closed
