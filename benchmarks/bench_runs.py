"""Cost per run of otel_runnables next to a bare OpenTelemetry span with 3
attributes (otel_raw) and next to langchain_core, measured side by side.

    .venv/bin/python -m benchmarks.bench_runs
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

os.environ.pop("LANGCHAIN_TRACING_V2", None)

import langchain_core.callbacks as lc_callbacks
import langchain_core.callbacks.manager as lc_manager
import langchain_core.runnables as lc_runnables

import otel_runnables as ours
from benchmarks._harness import acompare, batch_provider, compare, report

provider = batch_provider()
ours.telemetry.set_tracer_provider(provider)
tracer = provider.get_tracer("bench")
ATTRS = {"run.id": "x", "run.type": "chain", "input.value": "1"}


def raw(x: int) -> int:
    with tracer.start_as_current_span("raw", attributes=ATTRS):
        return x


def raw_events(x: int) -> int:
    with tracer.start_as_current_span("raw", attributes=ATTRS) as span:
        for step in range(3):
            span.add_event("progress", {"step": step})
        return x


async def araw_events(x: int) -> int:
    with tracer.start_as_current_span("raw", attributes=ATTRS) as span:
        for step in range(3):
            span.add_event("progress", {"step": step})
        return x


class CountingHandler(ours.BaseCallbackHandler):
    def __init__(self) -> None:
        self.count = 0

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.count += 1


class LcCountingHandler(lc_callbacks.BaseCallbackHandler):
    def __init__(self) -> None:
        self.count = 0

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.count += 1


def build(lib: Any, dispatch: Any, adispatch: Any) -> dict[str, Any]:
    trivial = lib.RunnableLambda(lambda x: x)

    def three_events(x: int) -> int:
        for step in range(3):
            dispatch("progress", {"step": step})
        return x

    async def athree_events(x: int) -> int:
        for step in range(3):
            await adispatch("progress", {"step": step})
        return x

    leaf = lib.RunnableLambda(lambda x: x)
    mid = lib.RunnableLambda(lambda x: leaf.invoke(x))
    top = lib.RunnableLambda(lambda x: mid.invoke(x))
    sequence = lib.RunnableLambda(lambda x: x)
    for _ in range(9):
        sequence = sequence | lib.RunnableLambda(lambda x: x)
    return {
        "trivial": trivial,
        "events": lib.RunnableLambda(three_events),
        "aevents": lib.RunnableLambda(athree_events),
        "nested": top,
        "sequence": sequence,
    }


def main() -> None:
    mine = build(ours, ours.dispatch_custom_event, ours.adispatch_custom_event)
    ref = build(lc_runnables, lc_manager.dispatch_custom_event, lc_manager.adispatch_custom_event)
    handler, lc_handler = CountingHandler(), LcCountingHandler()

    report(
        "invoke of a trivial lambda",
        compare(
            {
                "otel_raw": lambda: raw(1),
                "otel_runnables": lambda: mine["trivial"].invoke(1),
                "langchain_core": lambda: ref["trivial"].invoke(1),
            }
        ),
        "otel_raw",
    )
    report(
        "invoke + 3 custom events (one sync handler)",
        compare(
            {
                "otel_raw": lambda: raw_events(1),
                "otel_runnables": lambda: mine["events"].invoke(1, {"callbacks": [handler]}),
                "langchain_core": lambda: ref["events"].invoke(1, {"callbacks": [lc_handler]}),
            }
        ),
        "otel_raw",
    )
    report(
        "ainvoke + 3 async custom events, sync handler",
        acompare(
            {
                "otel_raw": lambda: araw_events(1),
                "otel_runnables": lambda: mine["aevents"].ainvoke(1, {"callbacks": [handler]}),
                "langchain_core": lambda: ref["aevents"].ainvoke(1, {"callbacks": [lc_handler]}),
            }
        ),
        "otel_raw",
    )
    nested = compare(
        {
            "otel_raw x3": lambda: raw(raw(raw(1))),
            "otel_runnables": lambda: mine["nested"].invoke(1),
            "langchain_core": lambda: ref["nested"].invoke(1),
        }
    )
    report("3-level nesting (3 runs)", nested, "otel_raw x3")
    steps = compare(
        {
            "otel_raw x11": lambda: [raw(1) for _ in range(11)],
            "otel_runnables": lambda: mine["sequence"].invoke(1),
            "langchain_core": lambda: ref["sequence"].invoke(1),
        },
        per_round=50,
    )
    report("10-step sequence (11 runs)", steps, "otel_raw x11")
    inputs = list(range(100))
    batch = compare(
        {
            "otel_raw x100": lambda: [raw(i) for i in inputs],
            "otel_runnables": lambda: mine["trivial"].batch(inputs),
            "langchain_core": lambda: ref["trivial"].batch(inputs),
        },
        per_round=5,
        rounds=15,
    )
    report("batch of 100", batch, "otel_raw x100")
    asyncio.run(asyncio.sleep(0))
    provider.shutdown()


if __name__ == "__main__":
    main()
