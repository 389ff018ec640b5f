"""Jaeger (v2.x) through its API v3: OTLP/JSON traces with hex ids.

- a trace: ``GET /api/v3/traces/{trace_id}``;
- discovery: ``GET /api/v3/traces`` with ``query.service_name`` (every service
  from ``GET /api/v3/services`` unless one is given), ``query.start_time_min`` /
  ``query.start_time_max`` (RFC 3339), ``query.num_traces`` and, to find a run,
  ``query.attributes={"otel_runnables.run.id": "<uuid>"}`` (older 2.x releases
  ignore it, so matches are checked on the spans returned);
- a 404 on a search means "no traces", not an error.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

from otel_runnables._conventions import RUN_ID, RUN_PARENT_ID, SPAN_TYPE, SPAN_TYPE_PENDING, SPAN_TYPE_RUN
from otel_runnables.progress.backend import (
    BackendUnavailableError,
    MalformedResponseError,
    TraceNotFoundError,
)
from otel_runnables.progress.http import HttpOptions, NotFound, get_json
from otel_runnables.progress.otlp_json import parse_resource_spans
from otel_runnables.progress.records import SpanRecord

__all__ = ["JaegerBackend", "is_root_run"]

_LOOKBACK = datetime.timedelta(days=7)


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def is_root_run(record: SpanRecord) -> bool:
    attributes = record.attributes
    return attributes.get(SPAN_TYPE) in (SPAN_TYPE_RUN, SPAN_TYPE_PENDING) and not attributes.get(
        RUN_PARENT_ID
    )


class JaegerBackend:
    name = "jaeger"

    def __init__(self, options: HttpOptions, *, services: Sequence[str] | None = None) -> None:
        self.options = options
        self.services = list(services) if services else None

    def _results(self, document: Any, source: str) -> list[SpanRecord]:
        documents = document if isinstance(document, list) else [document]
        records: list[SpanRecord] = []
        for item in documents:
            if not isinstance(item, dict) or "result" not in item:
                raise MalformedResponseError(f'{source}: expected {{"result": {{"resourceSpans": ...}}}}')
            records += parse_resource_spans(item["result"], source)
        return records

    def trace(self, trace_id: str) -> Sequence[SpanRecord]:
        path = f"/api/v3/traces/{trace_id}"
        try:
            records = self._results(get_json(self.options, path), self.options.url + path)
        except NotFound:
            raise TraceNotFoundError(f"no trace {trace_id} in Jaeger at {self.options.url}") from None
        if not records:
            raise TraceNotFoundError(f"no trace {trace_id} in Jaeger at {self.options.url}")
        return records

    def _services(self) -> list[str]:
        if self.services is not None:
            return self.services
        try:
            document = get_json(self.options, "/api/v3/services")
        except NotFound:
            raise BackendUnavailableError(
                f"{self.options.url} has no Jaeger API v3 (/api/v3/services answered 404)"
            ) from None
        services = document.get("services") if isinstance(document, dict) else None
        if not isinstance(services, list):
            raise MalformedResponseError(
                f'{self.options.url}/api/v3/services: expected {{"services": [...]}}'
            )
        return [str(service) for service in services]

    def _find(self, limit: int, attributes: dict[str, str] | None = None) -> Iterable[SpanRecord]:
        now = datetime.datetime.now(datetime.timezone.utc)
        for service in self._services():
            params = {
                "query.service_name": service,
                "query.start_time_min": _rfc3339(now - _LOOKBACK),
                "query.start_time_max": _rfc3339(now + datetime.timedelta(minutes=1)),
                "query.num_traces": str(limit),
            }
            if attributes:
                params["query.attributes"] = json.dumps(attributes)
            try:
                document = get_json(self.options, "/api/v3/traces", params)
            except NotFound:
                continue  # Jaeger answers an empty search with 404
            yield from self._results(document, f"{self.options.url}/api/v3/traces")

    def trace_id_of_run(self, run_id: str) -> str | None:
        for record in self._find(20, {RUN_ID: run_id}):
            if record.attributes.get(RUN_ID) == run_id:
                return record.trace_id
        return None

    def recent_root_runs(self, last: int) -> Sequence[SpanRecord]:
        roots: dict[str, SpanRecord] = {}
        for record in self._find(max(last, 20)):
            if is_root_run(record):
                run_id = str(record.attributes.get(RUN_ID))
                # the real span wins over the run's pending span
                if run_id not in roots or record.attributes.get(SPAN_TYPE) == SPAN_TYPE_RUN:
                    roots[run_id] = record
        # keep the pending spans of the chosen runs too: the model merges them
        return sorted(roots.values(), key=lambda record: record.start_ns, reverse=True)[:last]
