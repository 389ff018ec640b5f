"""Tempo (2.x and later) through its HTTP API.

- a trace: ``GET /api/v2/traces/{trace_id}`` (``{"trace": {...}}``, gogo-jsonpb:
  base64 ids, enum names, 64-bit ints as strings), falling back to
  ``GET /api/traces/{trace_id}`` (``batches``) on servers without v2;
- discovery: ``GET /api/search`` with TraceQL: ``{ span.otel_runnables.run.id = "<uuid>" }``
  finds a run; ``{ span.otel_runnables.span_type = "run" || span.otel_runnables.span_type =
  "pending" }`` finds recent runs, whose traces are read to pick the root runs. Search results
  may show ``<root span not yet received>`` and trace ids without leading zeros.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from otel_runnables._conventions import RUN_ID, SPAN_TYPE, SPAN_TYPE_RUN
from otel_runnables.progress.backend import MalformedResponseError, TraceNotFoundError
from otel_runnables.progress.http import HttpOptions, NotFound, get_json
from otel_runnables.progress.jaeger import is_root_run
from otel_runnables.progress.otlp_json import hex_id, parse_resource_spans
from otel_runnables.progress.records import SpanRecord

__all__ = ["TempoBackend", "run_query"]

_LOOKBACK_S = 7 * 86400
_RECENT_RUNS = '{ span.otel_runnables.span_type = "run" || span.otel_runnables.span_type = "pending" }'


def run_query(run_id: str) -> str:
    return '{ span.otel_runnables.run.id = "' + run_id.replace('"', "") + '" }'


class TempoBackend:
    name = "tempo"

    def __init__(self, options: HttpOptions) -> None:
        self.options = options

    def trace(self, trace_id: str) -> Sequence[SpanRecord]:
        source = f"{self.options.url}/api/v2/traces/{trace_id}"
        try:
            document = get_json(self.options, f"/api/v2/traces/{trace_id}")
            if not isinstance(document, dict):
                raise MalformedResponseError(f'{source}: expected {{"trace": {{...}}}}')
            trace = document.get("trace")
        except NotFound:
            try:  # an older Tempo, or a trace v2 does not have
                trace = get_json(self.options, f"/api/traces/{trace_id}")
                source = f"{self.options.url}/api/traces/{trace_id}"
            except NotFound:
                raise TraceNotFoundError(f"no trace {trace_id} in Tempo at {self.options.url}") from None
        records = parse_resource_spans(trace or {}, source)
        if not records:
            raise TraceNotFoundError(f"no trace {trace_id} in Tempo at {self.options.url}")
        return records

    def _search(self, query: str, limit: int) -> list[str]:
        now = int(time.time())
        params = {"q": query, "limit": str(limit), "start": str(now - _LOOKBACK_S), "end": str(now + 60)}
        try:
            document: Any = get_json(self.options, "/api/search", params)
        except NotFound:
            return []
        traces = document.get("traces") if isinstance(document, dict) else None
        if traces is None:
            return []
        if not isinstance(traces, list):
            raise MalformedResponseError(f"{self.options.url}/api/search: traces is not a list")
        found = []
        for item in traces:
            trace_id = hex_id(item.get("traceID"), 32) if isinstance(item, dict) else None
            if trace_id is not None:
                found.append(trace_id)
        return found

    def trace_id_of_run(self, run_id: str) -> str | None:
        found = self._search(run_query(run_id), 5)
        return found[0] if found else None

    def recent_root_runs(self, last: int) -> Sequence[SpanRecord]:
        roots: dict[str, SpanRecord] = {}
        for trace_id in self._search(_RECENT_RUNS, last):
            try:
                records = self.trace(trace_id)
            except TraceNotFoundError:
                continue  # searched but not yet readable: the next poll sees it
            for record in records:
                if is_root_run(record):
                    run_id = str(record.attributes.get(RUN_ID))
                    if run_id not in roots or record.attributes.get(SPAN_TYPE) == SPAN_TYPE_RUN:
                        roots[run_id] = record
        return sorted(roots.values(), key=lambda record: record.start_ns, reverse=True)[:last]
