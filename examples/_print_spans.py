"""A tracer provider that prints each span on one line as it ends (children
before their parent): how the service examples show what was traced."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor


def one_line(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    status = "ERROR" if not span.status.is_ok else "ok"
    return (
        f"span {span.name:<20} {attributes.get('openinference.span.kind')!s:<6} {status:<5} "
        f"input={attributes.get('input.value')}\n"
    )


def printing_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    return provider
