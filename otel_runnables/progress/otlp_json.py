"""OTLP/JSON trace data as Jaeger and Tempo answer it, into span records.

Tolerant of both encodings in the wild: hex ids (Jaeger, protojson) or base64
ids (Tempo, gogo-jsonpb); enums as numbers or names; 64-bit ints as strings;
``resourceSpans`` or ``batches``, ``scopeSpans`` or ``instrumentationLibrarySpans``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from otel_runnables.progress.backend import MalformedResponseError
from otel_runnables.progress.records import EventRecord, SpanRecord, SpanStatus

__all__ = ["hex_id", "parse_resource_spans", "value_of"]

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_STATUS: dict[object, SpanStatus] = {
    0: "unset",
    1: "ok",
    2: "error",
    "STATUS_CODE_UNSET": "unset",
    "STATUS_CODE_OK": "ok",
    "STATUS_CODE_ERROR": "error",
}


def hex_id(value: Any, width: int) -> str | None:
    """A trace (width 32) or span (16) id as lowercase hex, from hex or base64."""
    if not isinstance(value, str) or not value:
        return None
    if _HEX.match(value) and len(value) <= width:
        return value.lower().rjust(width, "0")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    text = raw.hex()
    return text.rjust(width, "0") if raw and len(text) <= width and int(text, 16) else None


def value_of(any_value: Any) -> Any:
    """An OTLP AnyValue as a plain Python value."""
    if not isinstance(any_value, Mapping):
        return None
    if "stringValue" in any_value:
        return any_value["stringValue"]
    if "boolValue" in any_value:
        return bool(any_value["boolValue"])
    if "intValue" in any_value:
        try:
            return int(any_value["intValue"])
        except (TypeError, ValueError):
            return None
    if "doubleValue" in any_value:
        try:
            return float(any_value["doubleValue"])
        except (TypeError, ValueError):
            return None
    if "arrayValue" in any_value:
        values = (any_value.get("arrayValue") or {}).get("values") or []
        return [value_of(item) for item in values]
    if "kvlistValue" in any_value:
        return attributes_of((any_value.get("kvlistValue") or {}).get("values"))
    if "bytesValue" in any_value:
        return any_value["bytesValue"]
    return None


def attributes_of(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            out[item["key"]] = value_of(item.get("value"))
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _span(span: Mapping[str, Any], service: str | None) -> SpanRecord | None:
    trace_id, span_id = hex_id(span.get("traceId"), 32), hex_id(span.get("spanId"), 16)
    start = _int(span.get("startTimeUnixNano"))
    if trace_id is None or span_id is None or start is None:
        return None
    status = span.get("status") or {}
    events = [
        EventRecord(
            name=str(event.get("name", "")),
            time_ns=_int(event.get("timeUnixNano")) or 0,
            attributes=attributes_of(event.get("attributes")),
        )
        for event in span.get("events") or ()
        if isinstance(event, Mapping)
    ]
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=hex_id(span.get("parentSpanId"), 16),
        name=str(span.get("name", "")),
        start_ns=start,
        end_ns=_int(span.get("endTimeUnixNano")) or start,
        status=_STATUS.get(status.get("code", 0), "unset") if isinstance(status, Mapping) else "unset",
        status_message=str(status.get("message", "")) if isinstance(status, Mapping) else "",
        attributes=attributes_of(span.get("attributes")),
        events=tuple(sorted(events, key=lambda event: event.time_ns)),  # backends re-sort them
        service_name=service,
    )


def parse_resource_spans(document: Any, source: str) -> list[SpanRecord]:
    """Every span in an OTLP/JSON ``TracesData``-shaped document."""
    if not isinstance(document, Mapping):
        raise MalformedResponseError(f"{source}: expected a JSON object with resourceSpans")
    resources = document.get("resourceSpans", document.get("batches"))
    if resources is None:
        return []
    if not isinstance(resources, list):
        raise MalformedResponseError(f"{source}: resourceSpans is not a list")
    records: list[SpanRecord] = []
    for resource_spans in resources:
        if not isinstance(resource_spans, Mapping):
            raise MalformedResponseError(f"{source}: a resourceSpans entry is not an object")
        resource = attributes_of((resource_spans.get("resource") or {}).get("attributes"))
        service = resource.get("service.name")
        scopes = resource_spans.get("scopeSpans", resource_spans.get("instrumentationLibrarySpans")) or []
        for scope in scopes:
            for span in (scope or {}).get("spans") or ():
                record = (
                    _span(span, service if isinstance(service, str) else None)
                    if isinstance(span, Mapping)
                    else None
                )
                if record is not None:
                    records.append(record)
    return records
