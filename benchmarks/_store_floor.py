"""The cheapest store that keeps what the embedded store keeps, to price it against.

``JsonLinesFloor`` appends one JSON line per ended span (ids, parent, name,
times, status, attributes) and one per custom event (heard on the run bus, as
the store hears them) to a file, from a thread woken only by ``force_flush``.
It has none of the store's guarantees: no row while a run is going, no
bounds, no counts, no index, no heartbeat, no retention. Whatever it costs,
any store written in Python that keeps a run's content costs at least that.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import AttributeValue

from otel_runnables import _bridge as bridge

__all__ = ["JsonLinesFloor"]

_encode = json.JSONEncoder(
    ensure_ascii=False, check_circular=False, separators=(",", ":"), default=str
).encode
_EVENT, _SPAN = "e", "s"


class JsonLinesFloor(SpanProcessor):
    def __init__(self, path: str) -> None:
        self._file = open(path, "ab")  # noqa: SIM115 - closed by shutdown
        self._queue: deque[tuple[Any, ...]] = deque()
        self._flushes = threading.Condition()
        self._asked = self._done = 0  # flushes asked for, and written
        self._listener = bridge.RunListener(event=self._on_event)
        bridge.add_listener(self._listener)
        threading.Thread(target=self._write_forever, name="store-floor", daemon=True).start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def _on_event(
        self, run: bridge.RecordedRun, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]
    ) -> None:
        self._queue.append((_EVENT, run.span.get_span_context(), name, time_ns, attributes))

    def on_end(self, span: ReadableSpan) -> None:
        parent, status = span.parent, span.status
        self._queue.append(
            (
                _SPAN,
                span.context,
                None if parent is None else f"{parent.span_id:016x}",
                span.name,
                span.start_time,
                span.end_time,
                status.status_code.name,
                status.description,
                span.attributes,
            )
        )

    def _write_forever(self) -> None:
        queue = self._queue
        while True:
            with self._flushes:
                self._flushes.wait_for(lambda: self._asked > self._done)
                asked = self._asked
            lines = []
            while queue:
                kind, context, *rest = queue.popleft()
                rest[-1] = dict(rest[-1])  # attributes
                lines.append(_encode([kind, f"{context.trace_id:032x}", f"{context.span_id:016x}", *rest]))
            lines.append("")
            self._file.write("\n".join(lines).encode())
            self._file.flush()
            with self._flushes:
                self._done = asked
                self._flushes.notify_all()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._flushes:
            self._asked += 1
            asked = self._asked
            self._flushes.notify_all()
            return self._flushes.wait_for(lambda: self._done >= asked, timeout_millis / 1000)

    def shutdown(self) -> None:
        self.force_flush()
        bridge.remove_listener(self._listener)
        self._file.close()
