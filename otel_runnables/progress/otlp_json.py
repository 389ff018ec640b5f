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
    """An OTLP AnyValue as a plain Python value (None for anything unrecognised)."""
    if not isinstance(any_value, Mapping):
        return None
    if "stringValue" in any_value:
        return any_value["stringValue"]
    if "boolValue" in any_value:
        return bool(any_value["boolValue"])
    if "intValue" in any_value:
        return _int(any_value["intValue"])
    if "doubleValue" in any_value:
        try:
            return float(any_value["doubleValue"])
        except (TypeError, ValueError):
            return None
    if "arrayValue" in any_value:
        array = any_value.get("arrayValue")
        values = array.get("values") if isinstance(array, Mapping) else None
        return [value_of(item) for item in values] if isinstance(values, list) else []
    if "kvlistValue" in any_value:
        kvlist = any_value.get("kvlistValue")
        return attributes_of(kvlist.get("values") if isinstance(kvlist, Mapping) else None)
    if "bytesValue" in any_value:
        return any_value["bytesValue"]
    return None


def attributes_of(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            out[item["key"]] = value_of(item.get("value"))
    return out


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity
        return None


def _objects(value: Any, what: str, source: str) -> list[Mapping[str, Any]]:
    """A list of JSON objects; a missing one is empty."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise MalformedResponseError(f"{source}: {what} is not a list of objects")
    return value


def _status(span: Mapping[str, Any]) -> tuple[SpanStatus, str]:
    status = span.get("status")
    if not isinstance(status, Mapping):
        return "unset", ""
    code = status.get("code", 0)
    known = _STATUS.get(code, "unset") if isinstance(code, (int, str)) else "unset"
    message = status.get("message", "")
    return known, message if isinstance(message, str) else str(message)


def _span(span: Mapping[str, Any], service: str | None, source: str) -> SpanRecord | None:
    trace_id, span_id = hex_id(span.get("traceId"), 32), hex_id(span.get("spanId"), 16)
    start = _int(span.get("startTimeUnixNano"))
    if trace_id is None or span_id is None or start is None:
        return None
    status, message = _status(span)
    events = [
        EventRecord(
            name=str(event.get("name", "")),
            time_ns=_int(event.get("timeUnixNano")) or 0,
            attributes=attributes_of(event.get("attributes")),
        )
        for event in _objects(span.get("events"), "a span's events", source)
    ]
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=hex_id(span.get("parentSpanId"), 16),
        name=str(span.get("name", "")),
        start_ns=start,
        end_ns=_int(span.get("endTimeUnixNano")) or start,
        status=status,
        status_message=message,
        attributes=attributes_of(span.get("attributes")),
        events=tuple(sorted(events, key=lambda event: event.time_ns)),  # backends re-sort them
        service_name=service,
    )


def parse_resource_spans(document: Any, source: str) -> list[SpanRecord]:
    """Every span in an OTLP/JSON ``TracesData``-shaped document; any other shape
    raises ``MalformedResponseError`` naming ``source``."""
    if not isinstance(document, Mapping):
        raise MalformedResponseError(f"{source}: expected a JSON object with resourceSpans")
    try:
        return _resource_spans(document, source)
    except RecursionError:  # attribute values nested thousands deep
        raise MalformedResponseError(f"{source}: values nested too deeply to read") from None


def _resource_spans(document: Mapping[str, Any], source: str) -> list[SpanRecord]:
    records: list[SpanRecord] = []
    resources = document.get("resourceSpans", document.get("batches"))
    for resource_spans in _objects(resources, "resourceSpans", source):
        resource = resource_spans.get("resource")
        attributes = attributes_of(resource.get("attributes") if isinstance(resource, Mapping) else None)
        service = attributes.get("service.name")
        scopes = resource_spans.get("scopeSpans", resource_spans.get("instrumentationLibrarySpans"))
        for scope in _objects(scopes, "scopeSpans", source):
            for span in _objects(scope.get("spans"), "spans", source):
                record = _span(span, service if isinstance(service, str) else None, source)
                if record is not None:
                    records.append(record)
    return records
