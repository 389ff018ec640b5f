"""Export that never blocks and never floods the log.

``DropCountingBatchSpanProcessor`` is the SDK's BatchSpanProcessor with one
difference: when its queue is full it drops the *new* span, counts it exactly
(``dropped``), logs the first drop once and the total at shutdown — where the
SDK would log every single drop. ``CountingExporter`` counts the spans an
exporter failed to deliver (an error result or an exception), logged the
same way. The user's call never waits on either: spans only go onto a
bounded queue on the caller's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["CountingExporter", "DropCountingBatchSpanProcessor"]

logger = logging.getLogger(__name__)


class CountingExporter(SpanExporter):
    """Wraps an exporter; ``failed`` counts the spans it did not deliver."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.failed = 0
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception as exc:
            self._lost(len(spans), f"{type(exc).__name__}: {exc}")
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._lost(len(spans), "the exporter reported a failure")
        return result

    def _lost(self, count: int, why: str) -> None:
        self.failed += count
        if not self._warned:
            self._warned = True
            logger.warning(
                "%s could not export %d spans (%s); further failures are counted and reported at shutdown",
                type(self.exporter).__name__,
                count,
                why,
            )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()
        if self.failed:
            logger.warning("%s failed to export %d spans in all", type(self.exporter).__name__, self.failed)


class DropCountingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor that drops new spans past its queue bound, counted and logged once."""

    def __init__(self, exporter: SpanExporter, **kwargs: float | int | None) -> None:
        super().__init__(exporter, **kwargs)  # type: ignore[arg-type]
        self.exporter = exporter
        self.dropped = 0
        self._warned = False
        self._lock = threading.Lock()
        inner = getattr(self, "_batch_processor", None)
        # the SDK keeps its queue private: without it, its own drop-oldest behaviour applies
        self._queue = getattr(inner, "_queue", None)
        self._bound: int = getattr(inner, "_max_queue_size", 0)

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        queue = self._queue
        if queue is None:
            super().on_end(span)
            return
        with self._lock:
            if len(queue) >= self._bound:
                self.dropped += 1
                if not self._warned:
                    self._warned = True
                    logger.warning(
                        "the span export queue is full (%d spans; OTEL_BSP_MAX_QUEUE_SIZE): dropping new "
                        "spans, counted and reported at shutdown",
                        self._bound,
                    )
                return
            super().on_end(span)

    def shutdown(self) -> None:
        super().shutdown()  # type: ignore[no-untyped-call]
        if self.dropped:
            logger.warning("%d spans were dropped because the export queue was full", self.dropped)
