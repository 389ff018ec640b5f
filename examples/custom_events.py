"""The main demo: LangChain's "How to dispatch custom callback events"
examples with only the imports changed, then a three-step job whose progress
events land on OpenTelemetry spans, printed as a tree when each run ends.

    .venv/bin/python examples/custom_events.py
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from otel_runnables import (
    AsyncCallbackHandler,
    BaseCallbackHandler,
    RunnableConfig,
    RunnableLambda,
    adispatch_custom_event,
    dispatch_custom_event,
)


class SpanTreePrinter(SpanProcessor):
    """Prints every finished trace as an indented tree (the application's
    choice of exporter; the library only creates the spans)."""

    def __init__(self) -> None:
        self._pending: dict[int, list[ReadableSpan]] = {}

    def on_end(self, span: ReadableSpan) -> None:
        spans = self._pending.setdefault(span.context.trace_id, [])
        spans.append(span)
        if span.parent is None:
            self._print(self._pending.pop(span.context.trace_id))

    def _print(self, spans: list[ReadableSpan]) -> None:
        children: dict[int | None, list[ReadableSpan]] = {}
        for span in spans:
            children.setdefault(span.parent.span_id if span.parent else None, []).append(span)

        def show(span: ReadableSpan, depth: int) -> None:
            attributes = span.attributes or {}
            millis = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            run_id = str(attributes.get("otel_runnables.run.id", ""))[-12:]
            status = "error" if span.status.status_code.name == "ERROR" else "ok"
            print(f"  {'  ' * depth}{span.name}  run …{run_id}  {millis:.2f} ms  {status}")
            for event in span.events:
                data = (event.attributes or {}).get("otel_runnables.event.data", "")
                print(f"  {'  ' * depth}  · event {event.name}: {data}")
            for child in sorted(children.get(span.context.span_id, []), key=lambda s: s.start_time or 0):
                show(child, depth + 1)

        for root in children.get(None, []):
            print("\nspans:")
            show(root, 0)


class CustomHandler(BaseCallbackHandler):
    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        print(
            f"Received event {name} with data: {data}, with tags: {tags}, with metadata: {metadata} "
            f"and run_id: {run_id}"
        )


class AsyncCustomCallbackHandler(AsyncCallbackHandler):
    async def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        print(
            f"Received event {name} with data: {data}, with tags: {tags}, with metadata: {metadata} "
            f"and run_id: {run_id}"
        )


@RunnableLambda
def foo(x: int, config: RunnableConfig) -> int:
    dispatch_custom_event("event1", {"x": x})
    dispatch_custom_event("event2", {"x": x})
    return x


@RunnableLambda
async def afoo(x: str) -> str:
    # no config passed on by hand, on any supported Python
    await adispatch_custom_event("event1", {"x": x})
    await adispatch_custom_event("event2", 5)
    return x


def step(number: int, total: int) -> RunnableLambda:
    def run_step(state: dict[str, Any]) -> dict[str, Any]:
        dispatch_custom_event("progress", {"step": number, "total": total})
        return {**state, "done": [*state["done"], number]}

    return RunnableLambda(run_step, name=f"step_{number}")


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SpanTreePrinter())
    trace.set_tracer_provider(provider)  # the application's own provider: the library uses it

    print("1. sync handler, dispatch_custom_event, invoke")
    print("returned", foo.invoke(1, {"callbacks": [CustomHandler()], "tags": ["foo", "bar"]}))

    print("\n2. async handler, adispatch_custom_event, ainvoke")
    print("returned", asyncio.run(afoo.ainvoke("hi", {"callbacks": [AsyncCustomCallbackHandler()]})))

    print("\n3. a three-step job reporting progress")
    job = step(1, 3) | step(2, 3) | step(3, 3)
    result = job.invoke({"done": []}, {"tags": ["demo"], "metadata": {"job": "nightly"}})
    print("returned", json.dumps(result))
    provider.shutdown()


if __name__ == "__main__":
    main()
